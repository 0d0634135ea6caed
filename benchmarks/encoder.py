"""MIST-I3D / MIST-C3D (and the torchvision backbones) throughput: inference (clips/s, frames/s)
and stage-2 training steps, CPU or CUDA.

    python benchmarks/encoder.py  # CPU: batch 1, fp32 + bf16, eager
    python benchmarks/encoder.py --device cuda  # GPU: batches 1 8 32 64, off/bf16/fp16,
                                                                   #      channels_last off/on,
                                                                   compile rows
    python benchmarks/encoder.py --models c3d --sizes 112x112 --compile on --amp off  # one compiled
    row
    python benchmarks/encoder.py --models r2plus1d_18 s3d mvit_v2_s swin3d_t --sizes test --amp off
    # the torchvision backbones (README table): 'test' is their training crop (112 or 224)

Sizes: 'test' is the official test resolution (I3D 240x320 on ShanghaiTech, the paper's FPS setting;
C3D 112x112 after the centre crop), and 224x224. Inference runs model.eval() under
torch.inference_mode() (+ torch.autocast for bf16/fp16); a frame is one of the 16 frames of a clip,
so frames/s = 16 x clips/s. Training rows: one Adam step on a batch (forward, both weighted CE
heads, backward, clip, step; the whole network trainable, as after the freeze epochs), I3D at
224x224 and C3D at 112x112 (the training crops), autocast + GradScaler for fp16 as
tools/train_stage2.py. GFLOPs per clip are counted by torch.utils.flop_counter on the meta device (2
FLOPs per multiply-add; the paper's 45.68 G "MACs" for MIST-I3D are the 45.57 GMAC = 91.1 GFLOPs at
240x320). On a GPU the achieved TFLOPS are divided by the device's dense peak for the compute dtype
(table below; TF32 when fp32 matmuls/convolutions may use it). Timings: CUDA events after warm-up;
best of --repeats runs of --iters."""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.stage1 import describe_machine
from models.losses import weighted_soft_ce
from datasets.transforms import SPECS
from models.mist import BACKBONES, MIST

TEST_SIZE = {"i3d": (240, 320), "c3d": (112, 112)}
TRAIN_SIZE = {"i3d": (224, 224), "c3d": (112, 112)}
# the torchvision backbones test and train at their crop (models/tv_video.py)
for _name in set(BACKBONES) - set(TEST_SIZE):
    TEST_SIZE[_name] = TRAIN_SIZE[_name] = (SPECS[_name].crop,) * 2
# dense tensor-core peaks in TFLOPS (NVIDIA data sheets): (bf16/fp16, tf32, fp32)
PEAKS = {
    "H200": (989.4, 494.7, 66.9),
    "H100 NVL": (835.5, 417.5, 60.0),
    "H100 PCIe": (756.0, 378.0, 51.2),
    "H100": (989.4, 494.7, 66.9),
    "A100": (312.0, 156.0, 19.5),
}
AMP = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def peak_tflops(device, amp):
    """-> (peak TFLOPS for this device and compute dtype, label) or (None, '') off the known
    GPUs."""
    if device.type != "cuda":
        return None, ""
    name = torch.cuda.get_device_name(device)
    key = next((k for k in PEAKS if k in name), None)
    if key is None:
        return None, ""
    tf32 = torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32
    index, label = (0, amp) if amp != "off" else ((1, "tf32") if tf32 else (2, "fp32"))
    return PEAKS[key][index], f"{key} {label}"


def flops_per_clip(backbone, size, train=False):
    """FLOPs of one clip's forward (or forward + backward) pass, counted on the meta device."""
    with torch.device("meta"):
        model = MIST(backbone)
        x = torch.empty(1, 3, 16, *size)
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        if train:
            step_loss(out, torch.zeros(1, device="meta")).backward()
    return counter.get_total_flops()


def step_loss(out, target):
    return weighted_soft_ce(out["logits"], target, 1.0, 1.0) + weighted_soft_ce(
        out["guided_logits"], target, 1.0, 1.0
    )


def timed(fn, device, iters, repeats):
    """-> seconds per call of fn: best of `repeats` runs of `iters` calls, after one warm-up
    call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            torch.cuda.synchronize(device)
            best = min(best, start.elapsed_time(end) / 1e3 / iters)
        else:
            begin = time.perf_counter()
            for _ in range(iters):
                fn()
            best = min(best, (time.perf_counter() - begin) / iters)
    return best


def build(backbone, device, channels_last, compiled):
    model = MIST(backbone).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    return torch.compile(model) if compiled else model, model


def clips_for(batch, size, device, channels_last):
    x = torch.randn(batch, 3, 16, *size, device=device)
    return x.contiguous(memory_format=torch.channels_last_3d) if channels_last else x


def bench_inference(backbone, size, batch, amp, channels_last, compiled, device, args):
    model, _ = build(backbone, device, channels_last, compiled)
    model.eval()
    x = clips_for(batch, size, device, channels_last)

    def run():
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=AMP[amp], enabled=amp != "off"),
        ):
            return model(x)["logits"]

    start = time.perf_counter()
    run()  # a compiled model compiles here
    first = time.perf_counter() - start
    return timed(run, device, args.iters, args.repeats), first


def bench_training(backbone, batch, amp, channels_last, compiled, device, args):
    model, plain = build(backbone, device, channels_last, compiled)
    model.train()
    optimizer = torch.optim.Adam(plain.parameters(), lr=1e-4, weight_decay=5e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    x = clips_for(batch, TRAIN_SIZE[backbone], device, channels_last)
    target = torch.rand(batch, device=device)

    def step():
        with torch.autocast(device.type, dtype=AMP[amp], enabled=amp != "off"):
            loss = step_loss(model(x), target)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(plain.parameters(), 20.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    return timed(step, device, args.iters, args.repeats), first


def row(kind, backbone, size, batch, amp, cl, compiled, seconds, first, flops, device):
    clips = batch / seconds
    peak, label = peak_tflops(device, amp)
    tflops = clips * flops / 1e12
    frac = f"{100 * tflops / peak:5.1f}% of {label} {peak:g}" if peak else "-"
    print(
        f"{kind:<5} {backbone:<11} {size[0]}x{size[1]:<4} {batch:>5} {amp:>5}"
        f" {'cl' if cl else '-':>3} {'on' if compiled else 'off':>7} {1e3 * seconds:10.1f}"
        f" {clips:9.1f} {16 * clips:10.0f} {tflops:8.3f}  {frac}   (first call {first:.1f} s)",
        flush=True,
    )


def parse_size(text, backbone):
    return TEST_SIZE[backbone] if text == "test" else tuple(int(v) for v in text.split("x"))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["i3d", "c3d"], choices=list(BACKBONES))
    parser.add_argument("--sizes", nargs="+", default=["test", "224x224"], help="'test' or HxW")
    parser.add_argument(
        "--batches", nargs="+", type=int, help="default: 1 on CPU, 1 8 32 64 on CUDA"
    )
    parser.add_argument(
        "--amp", nargs="+", choices=list(AMP), help="default: off bf16 (CPU), off bf16 fp16 (CUDA)"
    )
    parser.add_argument(
        "--channels-last",
        nargs="+",
        choices=["off", "on"],
        help="default: off (CPU), off on (CUDA)",
    )
    parser.add_argument(
        "--compile",
        nargs="+",
        choices=["off", "on"],
        default=None,
        help="default: off on CPU; on CUDA eager rows + compiled rows at the largest batch, bf16",
    )
    parser.add_argument(
        "--train-batches",
        nargs="*",
        type=int,
        help="training rows (default: 2 on CPU, 16 32 on CUDA)",
    )
    parser.add_argument(
        "--iters", type=int, default=None, help="calls per timing (default 2 CPU, 20 CUDA)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    args.iters = args.iters or (20 if cuda else 2)
    batches = args.batches or ([1, 8, 32, 64] if cuda else [1])
    amps = args.amp or (["off", "bf16", "fp16"] if cuda else ["off", "bf16"])
    layouts = [v == "on" for v in args.channels_last or (["off", "on"] if cuda else ["off"])]
    compiles = [v == "on" for v in args.compile or ["off"]]
    train_batches = (
        args.train_batches if args.train_batches is not None else ([16, 32] if cuda else [2])
    )
    print("\n".join(describe_machine()))
    if cuda:
        torch.backends.cudnn.benchmark = True
        print(
            f"cudnn.benchmark True, TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, TF32 cudnn"
            f" {torch.backends.cudnn.allow_tf32}, {torch.cuda.get_device_name(device)}"
        )
    print(
        f"{'kind':<5} {'net':<11} {'size':<9} {'batch':>5} {'amp':>5} {'fmt':>3} {'compile':>7}"
        f" {'ms/call':>10} {'clips/s':>9} {'frames/s':>10} {'TFLOPS':>8}"
    )
    for backbone in args.models:
        for size in dict.fromkeys(parse_size(s, backbone) for s in args.sizes):
            flops = flops_per_clip(backbone, size)
            params = sum(p.numel() for p in MIST(backbone).parameters())
            print(
                f"# MIST-{backbone.upper()} {size[0]}x{size[1]}: {flops / 1e9:.2f} GFLOPs per clip "
                f"({flops / 2e9:.2f} GMAC) forward, {params / 1e6:.2f} M parameters"
            )
            plan = [
                (b, a, cl, c) for c in compiles for b in batches for a in amps for cl in layouts
            ]
            # compiled rows only where they matter: largest batch, bf16
            if cuda and args.compile is None:
                plan += [(max(batches), "bf16", cl, True) for cl in layouts]
            for batch, amp, cl, compiled in plan:
                row(
                    "infer",
                    backbone,
                    size,
                    batch,
                    amp,
                    cl,
                    compiled,
                    *bench_inference(backbone, size, batch, amp, cl, compiled, device, args),
                    flops,
                    device,
                )
        train_flops = flops_per_clip(backbone, TRAIN_SIZE[backbone], train=True)
        for batch in train_batches:
            for amp in amps:
                for cl in layouts:
                    row(
                        "train",
                        backbone,
                        TRAIN_SIZE[backbone],
                        batch,
                        amp,
                        cl,
                        False,
                        *bench_training(backbone, batch, amp, cl, False, device, args),
                        train_flops,
                        device,
                    )


if __name__ == "__main__":
    main()
