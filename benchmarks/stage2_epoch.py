"""A real stage-2 epoch and a real test run, timed: clips/s and peak GPU memory (issue 3 §7, issue 4 target 4).

    python benchmarks/stage2_epoch.py                          # GPU: full MIST-I3D, train 224x224 bf16, test 240x320
    python benchmarks/stage2_epoch.py --amp off fp16 --workers 8 --videos 16
    python benchmarks/stage2_epoch.py --device cpu --tiny      # a small CPU check that every step runs

Generates surveillance-like videos at 240x320 (datasets/demo_videos.py; ShanghaiTech's frame size), writes the
frames h5 with tools/make_h5.py and pseudo-labels from the true anomaly masks, then runs tools/train_stage2.py
(1 epoch, MODEL.WIDTH 1 = the full I3D, random init: no weights can be downloaded here; the FLOPs are the
same) and tools/test.py on its checkpoint, once per --amp. Train clips/s and peak memory come from the
epoch's metrics.jsonl record (train_stage2 times its loop, data loading included); test clips/s is the
test.py call's wall time (model load and metrics included) over its clips, peak memory from CUDA's counter.
Frames/s = clips/s x 16. --tiny: 1/8-width I3D on 72x96 frames (train 48x48, test 72x96) for the CPU.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.stage1 import describe_machine  # noqa: E402
from datasets.demo_videos import make_demo_videos  # noqa: E402
from datasets.splits import read_split  # noqa: E402
from tools import test as test_tool  # noqa: E402
from tools import train_stage2  # noqa: E402
from tools.make_h5 import make_h5  # noqa: E402
from utils.pseudo_labels import save_pseudo_labels  # noqa: E402

CLIP = 16


def make_data(out, videos, size, workers):
    """videos per class and split at `size` -> (overrides pointing the tools at them, n train, n test videos)."""
    made = make_demo_videos(out / "videos", videos, videos, videos, videos, size=tuple(size))
    make_h5(made["video_list"], out / "frames.h5", workers=workers, progress=False)
    masks = {p.stem: np.load(p) for p in Path(made["mask_dir"]).glob("*.npy")}
    pseudo = {}
    for name in (v.name for v in read_split(made["train_split"], "shanghaitech")):  # a perfect stage 1: each segment's anomalous fraction; normal videos 0
        n = len(masks[name]) // CLIP if name in masks else None
        pseudo[name] = masks[name][:n * CLIP].reshape(n, CLIP).mean(1) if n else np.zeros(1)
    save_pseudo_labels(out / "pseudo_labels", pseudo)
    opts = ["DATA.DATASET", "shanghaitech", "DATA.FRAMES", str(out / "frames.h5"),
            "DATA.PSEUDO_LABELS", str(out / "pseudo_labels.npz"), "DATA.TRAIN_SPLIT", made["train_split"],
            "DATA.TEST_SPLIT", made["test_split"], "DATA.TEST_MASK_DIR", made["mask_dir"],
            "DATA.TRAIN_MASK_DIR", made["mask_dir"]]
    return opts, 2 * videos, 2 * videos


def run(out, amp, args, data_opts):
    """One training epoch and one test run -> row dict."""
    tiny = ["MODEL.WIDTH", "0.125", "DATA.TRAIN_SIZE", "[64, 85, 48]", "DATA.TEST_SIZE", "[72, 96, 48]"] if args.tiny \
        else []
    opts = data_opts + tiny + ["MODEL.PRETRAINED", "", "DEVICE", args.device, "DATA.NUM_WORKERS", str(args.workers), "STAGE2.AMP", amp,
                               "STAGE2.BATCH_SIZE", str(args.batch), "STAGE2.EPOCHS", "1", "STAGE2.FREEZE_EPOCHS", "0",
                               "STAGE2.CHANNELS_LAST", str(args.channels_last)] + args.opts
    train_dir, test_dir = out / f"train_{amp}", out / f"test_{amp}"
    train_stage2.main(["--cfg", str(ROOT / "configs" / "shanghaitech" / "i3d_stage2.yaml"), "OUTPUT_DIR",
                       str(train_dir)] + opts)
    epoch = json.loads((train_dir / "metrics.jsonl").read_text().splitlines()[-1])
    cuda = torch.cuda.is_available() and args.device != "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = test_tool.main(["--cfg", str(ROOT / "configs" / "shanghaitech" / "i3d_stage2.yaml"), "OUTPUT_DIR",
                             str(test_dir), "TEST.CHECKPOINT", str(train_dir / "checkpoints" / "last.pth")] + opts)
    seconds = time.perf_counter() - start
    test_clips = result["n_clips"]
    return {"amp": amp, "train_clips_per_s": epoch["train/clips_per_s"],
            "train_peak_gib": epoch.get("train/peak_memory_gib"), "test_clips": test_clips,
            "test_seconds": seconds, "test_clips_per_s": test_clips / seconds,
            "test_peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", nargs="+", default=["bf16"], choices=["off", "bf16", "fp16"])
    parser.add_argument("--videos", type=int, default=8, help="videos per class and split (x4 in all)")
    parser.add_argument("--batch", type=int, default=8, help="STAGE2.BATCH_SIZE (normal + abnormal videos each)")
    parser.add_argument("--workers", type=int, default=8, help="DATA.NUM_WORKERS")
    parser.add_argument("--channels-last", action="store_true", help="STAGE2.CHANNELS_LAST True")
    parser.add_argument("--tiny", action="store_true", help="1/8-width I3D on 72x96 frames (CPU check)")
    parser.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    parser.add_argument("opts", nargs="*", help="more KEY VALUE overrides for both tools")
    args = parser.parse_args(argv)
    print("\n".join(describe_machine()))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        out = Path(tmp)
        size = (72, 96) if args.tiny else (240, 320)
        start = time.perf_counter()
        data_opts, n_train, n_test = make_data(out, args.videos, size, max(1, args.workers))
        print(f"data: {n_train} train / {n_test} test videos at {size[0]}x{size[1]} in "
              f"{time.perf_counter() - start:.0f} s")
        rows = [run(out, amp, args, data_opts) for amp in args.amp]
    print(f"\n{'amp':<5} {'train clips/s':>13} {'frames/s':>9} {'peak GiB':>9} | {'test clips':>10} {'clips/s':>8} "
          f"{'frames/s':>9} {'peak GiB':>9}")
    for r in rows:
        peak = (lambda v: "-" if v is None else f"{v:.2f}")
        print(f"{r['amp']:<5} {r['train_clips_per_s']:>13.1f} {r['train_clips_per_s'] * CLIP:>9.0f} "
              f"{peak(r['train_peak_gib']):>9} | {r['test_clips']:>10d} {r['test_clips_per_s']:>8.1f} "
              f"{r['test_clips_per_s'] * CLIP:>9.0f} {peak(r['test_peak_gib']):>9}")
    return rows


if __name__ == "__main__":
    main()
