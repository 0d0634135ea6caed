"""Frames/s of the stage-2 frame sources (datasets/frames.py) and of tools/make_h5.py.

    python benchmarks/data.py                                  # tests/data/videos excerpt, workers 1 2
    python benchmarks/data.py --video /data/UCF/Normal_Videos020_x264.mp4 --workers 1 2 4 --copies 8

Rows (frames decoded per second, single process unless stated):
  h5 random 2-seg        FrameSource(h5).read_segments(name, c, 2) at random c: the training read (§3.6: keys
                         c and c+1 -> 32 frames, then a 16-frame jitter window)
  h5 sequential          FrameSource(h5).iter_segments(name, batch): the test read
  video random 2-seg     FrameSource(video).read_segments at random c: seek (decode from the keyframe) + 32 frames
  video sequential       FrameSource(video).iter_segments: one decode pass, no seek
  make_h5 workers=N      decode + JPEG encode + write of --copies copies of the video (one video per worker;
                         workers > 1 includes starting the spawn pool, ~0.5-1 s)
  augment                h5 random 2-seg reads followed by augment_fn (run(..., augment_fn=f); the hook is
                         None until the stage-2 transforms exist)
Read rows are the best of --repeats passes (the machine may be shared); make_h5 rows are one run.
The h5 is written to a temp dir and read back right away, so h5 rows are with the file in the page cache.
"""
import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from datasets.frames import open_frames  # noqa: E402
from tools.make_h5 import make_h5  # noqa: E402

DEFAULT_VIDEO = ROOT / "tests" / "data" / "videos" / "Normal_Videos020_x264_head100.mp4"


def _timed(fn, repeats=1):
    """-> (frames returned by fn(), seconds of the fastest of `repeats` calls: the least disturbed run)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        frames = fn()
        best = min(best, time.perf_counter() - start)
    return frames, best


def bench_random(source, name, starts, repeats, augment_fn=None):
    """read_segments(name, c, 2) (+ augment_fn on the uint8 (32, H, W, 3) BGR clip) for c in starts
    -> (frames, seconds)."""
    def one(c):
        frames = source.read_segments(name, int(c), 2)
        if augment_fn is not None:
            augment_fn(frames)
        return len(frames)
    return _timed(lambda: sum(one(c) for c in starts), repeats)


def bench_sequential(source, name, batch, repeats):
    """One iter_segments pass -> (frames, seconds)."""
    return _timed(lambda: sum(len(frames) for _, frames in source.iter_segments(name, batch)), repeats)


def bench_make_h5(video, copies, workers, tmp):
    """make_h5 over `copies` copies of `video` -> (frames, seconds, MB)."""
    folder = tmp / f"copies{copies}"
    if not folder.exists():
        folder.mkdir()
        for i in range(copies):
            shutil.copy(video, folder / f"{Path(video).stem}_{i}{Path(video).suffix}")
    report = make_h5(folder, tmp / f"w{workers}.h5", workers=workers, progress=False, force=True)
    return report["frames"], report["seconds"], report["mb"]


def run(video, workers, copies, reads, batch, repeats=3, augment_fn=None, seed=0):
    """-> list of (row name, frames, seconds) for the table."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in workers:
            frames, seconds, mb = bench_make_h5(video, copies, n, tmp)
            rows.append((f"make_h5 workers={n} ({copies} videos, {mb} MB)", frames, seconds))
        h5, vid = open_frames(tmp / f"w{workers[0]}.h5"), open_frames(video, kind="video")
        h5_name, vid_name = f"{Path(video).stem}_0", vid.names[0]
        starts = np.random.default_rng(seed).integers(0, vid.num_segments(vid_name) - 1, reads)
        rows.append(("h5 random 2-seg", *bench_random(h5, h5_name, starts, repeats)))
        rows.append((f"h5 sequential (batch {batch})", *bench_sequential(h5, h5_name, batch, repeats)))
        rows.append(("video random 2-seg", *bench_random(vid, vid_name, starts, repeats)))
        rows.append((f"video sequential (batch {batch})", *bench_sequential(vid, vid_name, batch, repeats)))
        if augment_fn is None:
            rows.append(("augment: no augment_fn hooked yet", 0, float("nan")))
        else:
            rows.append(("h5 random 2-seg + augment_fn", *bench_random(h5, h5_name, starts, repeats, augment_fn)))
        h5.close()
    return rows


def print_table(rows):
    print(f"{'method':<46} {'frames':>8} {'seconds':>9} {'frames/s':>10}")
    for name, frames, seconds in rows:
        rate = frames / seconds if frames and seconds > 0 else float("nan")
        print(f"{name:<46} {frames:>8d} {seconds:>9.3f} {rate:>10.1f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(DEFAULT_VIDEO), help="video to benchmark")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="make_h5 worker counts")
    parser.add_argument("--copies", type=int, default=4, help="copies of the video converted by make_h5")
    parser.add_argument("--reads", type=int, default=20, help="random 2-segment reads per source")
    parser.add_argument("--batch", type=int, default=10, help="segments per iter_segments batch")
    parser.add_argument("--repeats", type=int, default=3, help="read benchmarks: best of this many passes")
    args = parser.parse_args(argv)
    print(f"video: {args.video}")
    print_table(run(args.video, args.workers, args.copies, args.reads, args.batch, args.repeats))


if __name__ == "__main__":
    main()
