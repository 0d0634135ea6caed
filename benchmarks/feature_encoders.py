"""Feature extractors of tools/extract_features.py (engine/encoders.py): parameters, GFLOPs and
clips/s per 16-frame view, CPU or CUDA.

    python benchmarks/feature_encoders.py                        # every encoder, fp32, batch 1
    python benchmarks/feature_encoders.py --encoders r2plus1d_18 clip_vit_b16 --device cuda \\
        --batch 32 --amp bf16

Each encoder is built with random weights (the speed does not depend on them) and timed on one view
of its test transform: I3D at 240x320 (ShanghaiTech's test size), C3D at 112x112, the torchvision
models at their crop, CLIP at 224x224 (16 frames through the image tower), I3D-ResNet50 at 224x224.
--crops 10 costs 10 views per clip. GFLOPs are counted by torch.utils.flop_counter on one forward (2
FLOPs per multiply-add). Timings: the best of --repeats runs of --iters calls, after one warm-up
call, under torch.inference_mode() (+ autocast for bf16 / fp16)."""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.stage1 import describe_machine
from datasets.transforms import SPECS
from engine.encoders import ENCODERS, PooledI3D, PooledTorchvision
from models.c3d_fc6 import C3DFc6
from models.i3d import I3D
from models.tv_video import TORCHVISION, TorchvisionBackbone
from utils.video_scoring import autocast


def _clip(arch):
    """An open_clip image tower with random weights (no download)."""
    import open_clip

    from models.clip_features import ClipFrames

    return ClipFrames(open_clip.create_model(arch, pretrained=None).visual)


def _i3d_r50():
    from models.i3d_r50 import I3DRes50Features

    return I3DRes50Features()


# --encoders NAME -> (module factory with random weights, (H, W) of the timed view)
FACTORIES = {
    "i3d": (lambda: PooledI3D(I3D()), (240, 320)),
    "c3d": (C3DFc6, (112, 112)),
    **{
        name: (lambda n=name: PooledTorchvision(TorchvisionBackbone(n)), (SPECS[name].crop,) * 2)
        for name in TORCHVISION
    },
    "clip_vit_b16": (lambda: _clip("ViT-B-16-quickgelu"), (224, 224)),
    "clip_vit_l14": (lambda: _clip("ViT-L-14-quickgelu"), (224, 224)),
    "i3d_r50": (_i3d_r50, (224, 224)),
}
AMP = ("off", "bf16", "fp16")


def measure(name, device, batch, amp, iters, repeats):
    """-> (parameters, GFLOPs per view, seconds per call, dim)."""
    factory, size = FACTORIES[name]
    module = factory().eval().to(device)
    params = sum(p.numel() for p in module.parameters())
    x = torch.randn(batch, 3, 16, *size, device=device)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            out = module(x[:1])
        flops = counter.get_total_flops()

        def call():
            with autocast(device, amp):
                module(x)
            if device.type == "cuda":
                torch.cuda.synchronize()

        call()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(iters):
                call()
            best = min(best, (time.perf_counter() - start) / iters)
    return params, flops / 1e9, best, out.shape[-1]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    names = [n for n in ENCODERS if n in FACTORIES]
    parser.add_argument("--encoders", nargs="+", default=names, choices=names)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--amp", default="off", choices=AMP)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    print("\n".join(describe_machine()))
    print(
        f"{'encoder':<13} {'view':<9} {'dim':>5} {'params (M)':>10} {'GFLOPs/view':>11}"
        f" {'batch':>5} {'amp':>4} {'ms/call':>9} {'clips/s':>8}"
    )
    for name in args.encoders:
        params, gflops, seconds, dim = measure(
            name, device, args.batch, args.amp, args.iters, args.repeats
        )
        size = FACTORIES[name][1]
        print(
            f"{name:<13} {size[0]}x{size[1]:<5} {dim:>5} {params / 1e6:>10.2f} {gflops:>11.2f}"
            f" {args.batch:>5} {args.amp:>4} {1e3 * seconds:>9.1f} {args.batch / seconds:>8.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
