"""Stage-2 training speed on the real training step, and a real test run (issue 11 §6, issue 12).

    python benchmarks/stage2_epoch.py                      # GPU: full MIST-I3D, AMP off bf16 fp16
    python benchmarks/stage2_epoch.py --amp bf16 --iters 40 --workers 12 --json
    python benchmarks/stage2_epoch.py --device cpu --tiny  # a small CPU check that every step runs
    torchrun --nproc_per_node 8 benchmarks/stage2_epoch.py --amp bf16   # DDP: clips/s of all ranks

Data: surveillance-like videos at 240x320 (datasets/demo_videos.py; ShanghaiTech's frame size), a
frames h5 written by tools/make_h5.py, pseudo-labels from the true anomaly masks (a perfect
stage 1). --dir keeps them (and the checkpoints) there and reuses the data next time; --data-only
stops there.

Training: the model, loader and Trainer of engine/stage2.py, Trainer.step being the step timed
(MODEL.WIDTH 1 = the full I3D, random init: no weights can be downloaded here, the FLOPs are the
same), the recipe's STAGE2 keys (BATCH_SIZE from --batch, ACCUMULATE 3, GRAD_CLIP ...), one epoch
after the other as in a run (sampler and dataset epochs, freeze phase, scheduler). Per --amp:
--warmup iterations (worker start, first CUDA calls, cudnn autotuning), rounded up to whole
ACCUMULATE windows so that the timed ones start a window, then --iters timed iterations, timed
with torch.cuda.synchronize + perf_counter on CUDA (perf_counter on the CPU). Printed: ms per
iteration (median, mean), clips/s of all ranks and frames/s = 16 x clips/s, the data wait (time
blocked on the loader / total), peak GPU memory of the timed iterations, the loss of the first and
last timed iteration (Trainer.step raises on a non-finite one), the optimizer steps taken (a hook on
optimizer.step: fp16 steps that the GradScaler skips do not count) against the accumulation windows
closed, and the GradScaler's scale.
Test row (one process only): the trained weights saved as a stage-2 checkpoint and tools/test.py run
on it; its clips/s is the call's wall time (model load and metrics included) over its clips.
--tiny: 1/8-width I3D on 72x96 frames (train 48x48, test 72x96) for the CPU. --json: the last line
printed is one JSON object of every figure. Console lines come from rank 0 only.
"""

import argparse
import itertools
import json
import re
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import torch

from benchmarks.stage1 import describe_machine
from datasets.build import load_splits, open_frame_source, stage2_train_dataset, stage2_transforms
from datasets.demo_videos import make_demo_videos
from datasets.splits import read_split
from engine import evaluate
from engine import stage2
from engine.fit import Best, payload
from engine.frames_h5 import make_h5
from utils import cli
from utils import distributed as dist
from utils.checkpoint import save_checkpoint
from utils.config import load_cfg
from utils.errors import ExistsError
from utils.logger import setup_logger
from utils.pseudo_labels import save_pseudo_labels

CLIP = 16
CFG = ROOT / "configs" / "shanghaitech" / "i3d_stage2.yaml"
SCHEDULER_WARNING = "Detected call of `lr_scheduler.step()`"
TINY = ["MODEL.WIDTH", "0.125", "DATA.TRAIN_SIZE", "[64, 85, 48]", "DATA.TEST_SIZE", "[72, 96, 48]"]


def make_data(out, videos, size, workers, test_videos=None):
    """`videos` per class to train on (`test_videos` to test on, default as many) at `size` ->
    overrides pointing the tools at them (also written to out/opts.json)."""
    tests = videos if test_videos is None else test_videos
    made = make_demo_videos(out / "videos", videos, videos, tests, tests, size=tuple(size))
    make_h5(made["video_list"], out / "frames.h5", workers=workers, progress=False)
    masks = {p.stem: np.load(p) for p in Path(made["mask_dir"]).glob("*.npy")}
    pseudo = {}
    # a perfect stage 1: each segment's anomalous fraction; normal videos 0
    for name in (v.name for v in read_split(made["train_split"], "shanghaitech")):
        n = len(masks[name]) // CLIP if name in masks else None
        pseudo[name] = masks[name][: n * CLIP].reshape(n, CLIP).mean(1) if n else np.zeros(1)
    save_pseudo_labels(out / "pseudo_labels", pseudo)
    opts = [
        "DATA.DATASET",
        "shanghaitech",
        "DATA.FRAMES",
        str(out / "frames.h5"),
        "DATA.PSEUDO_LABELS",
        str(out / "pseudo_labels.npz"),
        "DATA.TRAIN_SPLIT",
        made["train_split"],
        "DATA.TEST_SPLIT",
        made["test_split"],
        "DATA.TEST_MASK_DIR",
        made["mask_dir"],
        "DATA.TRAIN_MASK_DIR",
        made["mask_dir"],
    ]
    made = {"videos": [videos, tests], "size": list(size), "opts": opts}
    (out / "opts.json").write_text(json.dumps(made))
    return opts


def prepare_data(folder, videos, test_videos, size, workers):
    """The data of an earlier call in `folder` if it has these sizes, else new data -> overrides."""
    made = folder / "opts.json"
    if not made.exists():
        return make_data(folder, videos, size, workers, test_videos)
    old = json.loads(made.read_text())
    if old["videos"] != [videos, test_videos] or old["size"] != list(size):
        raise ExistsError(
            f"{folder} holds data of --videos/--test-videos {old['videos']} at "
            f"{old['size']}: use another --dir"
        )
    return old["opts"]


def build(cfg, rank, world, device, logger):
    """The training pieces of engine.stage2.Stage2Task -> (trainer, loader)."""
    stage2.check_sync_bn(cfg, device)
    torch.manual_seed(cfg.SEED + rank)
    train_videos, _ = load_splits(cfg)
    frames = open_frame_source(cfg, train_videos)
    transform, _ = stage2_transforms(cfg)
    dataset = stage2_train_dataset(cfg, frames, train_videos, transform)
    loader = stage2.build_loader(cfg, dataset, rank, world)
    model = stage2.build_stage2_model(cfg, device)
    return stage2.Trainer(cfg, model, device, world, rank, transform), loader


def batches(trainer, loader):
    """Endless (clips, labels) over consecutive epochs, set up as engine.stage2 does."""
    for epoch in itertools.count():
        loader.batch_sampler.set_epoch(epoch)
        loader.dataset.set_epoch(epoch)
        trainer.set_phase(epoch)
        yield from loader
        # an epoch may end inside an accumulation window, before any step
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=re.escape(SCHEDULER_WARNING))
            trainer.scheduler.step()


def clock(device):
    """perf_counter once the device has finished the work queued so far."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def timed_iterations(trainer, loader, warmup, iters):
    """warmup + iters iterations -> ([{"wait", "seconds", "loss", "clips"} per timed iteration],
    optimizer steps taken in the timed ones)."""
    steps = [0]
    hook = trainer.optimizer.register_step_post_hook(lambda *_: steps.__setitem__(0, steps[0] + 1))
    stream, records, device = batches(trainer, loader), [], trainer.device
    for i in range(warmup + iters):
        if i == warmup:
            steps[0] = 0
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
        start = clock(device)
        clips, labels = next(stream)
        loaded = clock(device)
        loss = trainer.step(clips, labels)["loss"]
        end = clock(device)
        if i >= warmup:  # labels: (videos, clip_num, 2), whatever form the clips take
            records.append(
                {
                    "wait": loaded - start,
                    "seconds": end - start,
                    "loss": loss,
                    "clips": labels.shape[0] * labels.shape[1],
                }
            )
    hook.remove()
    return records, steps[0]


def figures(trainer, records, steps, warmup, world):
    """This rank's per-iteration records -> the row of figures (clips of all ranks)."""
    ms = [1e3 * r["seconds"] for r in records]
    total = sum(r["seconds"] for r in records)
    acc, device = trainer.cfg.STAGE2.ACCUMULATE, trainer.device
    clips_s = dist.all_reduce_mean(sum(r["clips"] for r in records) / total, device) * world
    losses = [r["loss"] for r in records]
    half = max(1, len(losses) // 2)
    cuda = device.type == "cuda"
    return {
        "amp": trainer.cfg.STAGE2.AMP,
        "warmup_iterations": warmup,
        "iterations": len(records),
        "accumulate": acc,
        "windows_closed": len(records) // acc,
        "pending_iterations": len(records) % acc,
        "optimizer_steps": steps,
        "clips_per_iteration": round(dist.all_reduce_mean(records[0]["clips"], device) * world),
        "ms_per_iter_median": statistics.median(ms),
        "ms_per_iter_mean": statistics.fmean(ms),
        "clips_per_s": clips_s,
        "frames_per_s": CLIP * clips_s,
        "data_wait_share": dist.all_reduce_mean(sum(r["wait"] for r in records) / total, device),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "loss_falling": statistics.fmean(losses[-half:]) < statistics.fmean(losses[:half]),
        "scaler_scale": trainer.scaler.get_scale() if trainer.scaler.is_enabled() else None,
        "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
    }


def test_row(opts, trainer, folder):
    """The trained weights as a stage-2 checkpoint -> tools/test.py on it -> the test figures."""
    amp, device = trainer.cfg.STAGE2.AMP, trainer.device
    ckpt = folder / f"train_{amp}" / "last.pth"
    save_checkpoint(ckpt, **payload("stage2", trainer.cfg, 1, Best(), trainer.state()))
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    result = evaluate.test(
        load_cfg(
            CFG, ["OUTPUT_DIR", str(folder / f"test_{amp}"), "TEST.CHECKPOINT", str(ckpt)] + opts
        )
    )
    seconds = time.perf_counter() - start
    return {
        "checkpoint": str(ckpt),
        "test_clips": result["n_clips"],
        "test_seconds": seconds,
        "test_clips_per_s": result["n_clips"] / seconds,
        "test_peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
    }


def run(amp, data_opts, args, folder, rank, world, device, logger):
    """One --amp: build, warm up, time -> row dict (+ the test figures on one process)."""
    opts = (
        data_opts
        + (TINY if args.tiny else [])
        + [
            "MODEL.PRETRAINED",
            "",
            "DEVICE",
            str(device),
            "DATA.NUM_WORKERS",
            str(args.workers),
            "STAGE2.AMP",
            amp,
            "STAGE2.BATCH_SIZE",
            str(args.batch),
            "STAGE2.FREEZE_EPOCHS",
            "0",
            "STAGE2.CHANNELS_LAST",
            str(args.channels_last),
        ]
        + args.opts
    )
    cfg = load_cfg(CFG, opts + ["OUTPUT_DIR", str(folder / f"train_{amp}")])
    trainer, loader = build(cfg, rank, world, device, logger)
    acc = cfg.STAGE2.ACCUMULATE
    warmup = -(-args.warmup // acc) * acc  # whole windows: the timed iterations start a window
    records, steps = timed_iterations(trainer, loader, warmup, args.iters)
    row = figures(trainer, records, steps, warmup, world)
    if not args.no_test and world == 1:
        row.update(test_row(opts, trainer, folder))
    return row


def print_rows(rows, say):
    say(
        f"\n{'amp':<5} {'iters':>5} {'steps':>5} {'ms/iter med':>11} {'mean':>7} {'clips/s':>8} "
        f"{'frames/s':>9} {'wait':>5} {'peak GiB':>8} {'loss first':>10} {'last':>7} "
        f"{'scale':>7} | {'test clips/s':>12}"
    )
    for r in rows:
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
        scale = "-" if r["scaler_scale"] is None else f"{r['scaler_scale']:g}"
        test = f"{r['test_clips_per_s']:12.1f}" if "test_clips_per_s" in r else f"{'-':>12}"
        say(
            f"{r['amp']:<5} {r['iterations']:>5} {r['optimizer_steps']:>5} "
            f"{r['ms_per_iter_median']:>11.1f} {r['ms_per_iter_mean']:>7.1f} "
            f"{r['clips_per_s']:>8.1f} {r['frames_per_s']:>9.0f} "
            f"{100 * r['data_wait_share']:>4.0f}% {peak:>8} {r['loss_first']:>10.4f} "
            f"{r['loss_last']:>7.4f} {scale:>7} | {test}"
        )
    for r in rows:
        if r["pending_iterations"] or r["optimizer_steps"] != r["windows_closed"]:
            say(
                f"{r['amp']}: {r['iterations']} iterations = {r['windows_closed']} ACCUMULATE "
                f"{r['accumulate']} windows ({r['optimizer_steps']} optimizer steps taken) + "
                f"{r['pending_iterations']} iterations of an unfinished window"
            )


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add("--amp", nargs="+", default=["off", "bf16", "fp16"], choices=["off", "bf16", "fp16"])
    add("--warmup", type=int, default=5, help="untimed iterations first (rounded up to windows)")
    add("--iters", type=int, default=20, help="timed iterations (>= 20 for figures)")
    add("--videos", type=int, default=8, help="training videos per class")
    add("--test-videos", type=int, default=None, help="test videos per class (default: --videos)")
    add("--batch", type=int, default=8, help="STAGE2.BATCH_SIZE (normal + abnormal videos each)")
    add("--workers", type=int, default=8, help="DATA.NUM_WORKERS")
    add("--channels-last", action="store_true", help="STAGE2.CHANNELS_LAST True")
    add("--tiny", action="store_true", help="1/8-width I3D on 72x96 frames (CPU check)")
    add("--no-test", action="store_true", help="skip the tools/test.py row")
    add("--dir", default=None, help="work folder, kept (default: a temporary one)")
    add("--data-only", action="store_true", help="make the data in --dir and stop")
    add("--json", action="store_true", help="end with one JSON line of every figure")
    add("opts", nargs="*", help="more KEY VALUE overrides for training and test")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 0 or (args.data_only and not args.dir):
        parser.error("--iters must be >= 1, --warmup >= 0, and --data-only needs --dir")
    return args


def main(argv=None):
    args = parse_args(argv)
    rank, world, device = dist.init_distributed(args.device)
    logger = setup_logger(rank=rank)
    say = print if rank == 0 else (lambda *a, **k: None)
    say("\n".join(describe_machine()))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(dist.broadcast_object(args.dir or tmp))
        size = (72, 96) if args.tiny else (240, 320)
        tests = args.videos if args.test_videos is None else args.test_videos
        start = time.perf_counter()
        made = (
            prepare_data(folder / "data", args.videos, tests, size, max(1, args.workers))
            if rank == 0
            else None
        )
        data_opts = dist.broadcast_object(made)
        say(
            f"data: {2 * args.videos} train / {2 * tests} test videos at {size[0]}x{size[1]} in "
            f"{time.perf_counter() - start:.0f} s"
        )
        if args.data_only:
            return []
        if args.iters < 20:
            say(f"--iters {args.iters}: fewer than 20 timed iterations, a check that it runs")
        if world > 1 and not args.no_test:
            say("the tools/test.py row runs in one process only: not under torchrun")
        rows = [run(amp, data_opts, args, folder, rank, world, device, logger) for amp in args.amp]
    print_rows(rows, say)
    if args.json:
        say(
            json.dumps(
                {
                    "benchmark": "stage2_epoch",
                    "device": str(device),
                    "world_size": world,
                    "rows": rows,
                }
            )
        )
    dist.cleanup()
    return rows


if __name__ == "__main__":
    sys.exit(cli.run(main))
