"""Frames/s of the stage-2 frame sources (datasets/frames.py) and of tools/make_h5.py.

    python benchmarks/data.py  # tests/data/videos excerpt, workers 1 2
    python benchmarks/data.py --video /data/UCF/Normal_Videos020_x264.mp4 --workers 1 2 4 --copies 8
    python benchmarks/data.py --loader-workers 0 1 2 4 --backbones i3d  # the stage-2 input pipeline
    python benchmarks/data.py --pipeline-only --device cuda  # transform + on-device decode rows

Rows (frames decoded per second, single process unless stated):
  h5 random 2-seg        FrameSource(h5).read_segments(name, c, 2) at random c: the training read
                         (§3.6: keys c and c+1 -> 32 frames, then a 16-frame jitter window)
  h5 clip                FrameSource(h5).read_frames(name, 16c + b, 16) at random c, b: the training
                         read of ClipDataset, which decodes only the clip's 16 JPEGs (frames/s =
                         clip frames/s)
  h5 sequential          FrameSource(h5).iter_segments(name, batch): the test read
  video random 2-seg     FrameSource(video).read_segments at random c: seek (decode from the
                         keyframe) + 32 frames
  video clip             FrameSource(video).read_frames at random c, b: seek + the clip's 16 frames
  video sequential       FrameSource(video).iter_segments: one decode pass, no seek
  make_h5 workers=N      decode + JPEG encode + write of --copies copies of the video (one video per
                         worker; workers > 1 includes starting the spawn pool, ~0.5-1 s)
  h5 clip + augment      the h5 clip reads, then augment_fn on each clip (default: TrainTransform of
                         the first --backbones entry, uint8 out; run(..., augment_fn=f) takes any
                         callable on uint8 frames)
  loader <src> <net> workers=N
                         the stage-2 training input pipeline itself: ClipDataset (datasets/clips.py;
                         clip_num 3, random_perturb positions, 16-frame jitter windows, hard labels)
                         + TrainTransform of <net> through a DataLoader of --loader-batch videos
                         with N worker processes (0 = in the main process), on the h5 and on the raw
                         video, uint8 clips out as tools/train_stage2.py asks by default
                         (STAGE2.UINT8_INPUT; "float32 out": normalised in the loader as before);
                         frames/s counts the 16 output frames of every augmented clip, timed after
                         the first batch (worker start-up excluded). Divide by 16 for clips/s and
                         compare with benchmarks/encoder.py's training clips/s: the ratio is how
                         many times the pipeline outruns (> 1) or starves (< 1) the GPU.
  transform <net> before/after
                         the training transform alone on decoded 16-frame clips, one core (cv2 and
                         torch limited to 1 thread), uint8 out: 'before' is the previous
                         implementation (two full cv2 resizes, numpy flip and transpose; the
                         official pixels), 'after' TrainTransform (window resize + cv2.flip, no
                         transpose: the same pixels, tested)
  loader jpegs <net>     STAGE2.DEVICE_AUGMENT's loader work: ClipDataset reading the clips' stored
                         JPEGs and drawing their crops (no decoding), one process
  device augment <net> <device>
                         DeviceAugment on --device: batched decode_jpeg + resize, crop, resize,
                         flip, gray, normalise of --loader-batch videos x 3 clips, synchronised
                         (frames/s of output)
Read rows are the best of --repeats passes (the machine may be shared); make_h5 rows are one run.
The h5 is written to a temp dir and read back right away, so h5 rows are with the file in the page
cache."""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import torch

from datasets.clips import ClipDataset
from datasets.frames import open_frames
from datasets.splits import Video
from datasets.transforms import TrainTransform
from engine.frames_h5 import make_h5

DEFAULT_VIDEO = ROOT / "tests" / "data" / "videos" / "Normal_Videos020_x264_head100.mp4"


def _timed(fn, repeats=1):
    """-> (frames returned by fn(), seconds of the fastest of `repeats` calls: the least disturbed
    run)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        frames = fn()
        best = min(best, time.perf_counter() - start)
    return frames, best


def bench_random(source, name, starts, repeats):
    """read_segments(name, c, 2) for c in starts -> (frames, seconds)."""
    return _timed(lambda: sum(len(source.read_segments(name, int(c), 2)) for c in starts), repeats)


def bench_clips(source, name, starts, repeats, augment_fn=None):
    """read_frames(name, 16c + b, 16) (+ augment_fn on the uint8 (16, H, W, 3) BGR clip) for (c, b)
    in starts
    -> (frames, seconds)."""
    n = source.segment_len

    def one(c, b):
        frames = source.read_frames(name, int(c) * n + int(b), n)
        if augment_fn is not None:
            augment_fn(frames)
        return len(frames)

    return _timed(lambda: sum(one(c, b) for c, b in starts), repeats)


def bench_sequential(source, name, batch, repeats):
    """One iter_segments pass -> (frames, seconds)."""
    return _timed(
        lambda: sum(len(frames) for _, frames in source.iter_segments(name, batch)), repeats
    )


def bench_make_h5(video, copies, workers, tmp):
    """make_h5 over `copies` copies of `video` -> (frames, seconds, MB)."""
    folder = tmp / f"copies{copies}"
    if not folder.exists():
        folder.mkdir()
        for i in range(copies):
            shutil.copy(video, folder / f"{Path(video).stem}_{i}{Path(video).suffix}")
    report = make_h5(folder, tmp / f"w{workers}.h5", workers=workers, progress=False, force=True)
    return report["frames"], report["seconds"], report["mb"]


def bench_loader(source, transform, workers, batch, batches, seed=0):
    """ClipDataset + transform through a DataLoader -> (augmented frames delivered, seconds), timed
    from the first batch on (start-up of the workers excluded)."""
    videos = [Video(name, i % 2) for i, name in enumerate(source.names)]
    dataset = ClipDataset(source, videos, None, transform, clip_num=3, hard_labels=True, seed=seed)
    sampler = torch.utils.data.RandomSampler(
        dataset,
        replacement=True,
        num_samples=batch * (batches + 1),
        generator=torch.Generator().manual_seed(seed),
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, sampler=sampler, num_workers=workers
    )
    frames, start = 0, None
    for _, labels in loader:
        if start is None:
            start = time.perf_counter()
            continue
        # videos x clip_num x 16 frames
        frames += labels.shape[0] * labels.shape[1] * source.segment_len
    return frames, time.perf_counter() - start


def default_augment(backbone, seed=0):
    """TrainTransform on a 16-frame clip, uint8 out as tools/train_stage2.py asks (the per-clip work
    of ClipDataset)."""
    transform, rng = TrainTransform(backbone, normalise=False), np.random.default_rng(seed)
    return lambda frames: transform(frames, rng)


def run(
    video,
    workers,
    copies,
    reads,
    batch,
    repeats=3,
    augment_fn=None,
    seed=0,
    backbones=("i3d",),
    loader_workers=(0,),
    loader_batch=4,
    loader_batches=8,
):
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
        clips = np.stack(
            [starts, np.random.default_rng(seed + 1).integers(0, vid.segment_len, reads)], axis=1
        )
        rows.append(("h5 random 2-seg", *bench_random(h5, h5_name, starts, repeats)))
        rows.append(("h5 clip (read_frames)", *bench_clips(h5, h5_name, clips, repeats)))
        rows.append(
            (f"h5 sequential (batch {batch})", *bench_sequential(h5, h5_name, batch, repeats))
        )
        rows.append(("video random 2-seg", *bench_random(vid, vid_name, starts, repeats)))
        rows.append(("video clip (read_frames)", *bench_clips(vid, vid_name, clips, repeats)))
        rows.append(
            (f"video sequential (batch {batch})", *bench_sequential(vid, vid_name, batch, repeats))
        )
        augment_fn = augment_fn or default_augment(backbones[0], seed)
        rows.append(("h5 clip + augment_fn", *bench_clips(h5, h5_name, clips, repeats, augment_fn)))
        h5.close()
        for backbone in backbones:
            for src_name, source in (
                ("h5", open_frames(tmp / f"w{workers[0]}.h5")),
                ("video", open_frames(folder_of_copies(tmp, copies), kind="video")),
            ):
                for n in loader_workers:
                    frames, seconds = bench_loader(
                        source,
                        TrainTransform(backbone, normalise=False),
                        n,
                        loader_batch,
                        loader_batches,
                        seed,
                    )
                    rows.append((f"loader {src_name} {backbone} workers={n}", frames, seconds))
                # STAGE2.UINT8_INPUT False: the loader normalises to float32 itself
                if src_name == "h5":
                    frames, seconds = bench_loader(
                        source,
                        TrainTransform(backbone),
                        loader_workers[0],
                        loader_batch,
                        loader_batches,
                        seed,
                    )
                    rows.append(
                        (
                            f"loader h5 {backbone} workers={loader_workers[0]} float32 out",
                            frames,
                            seconds,
                        )
                    )
    return rows


def reference_transform(backbone):
    """The training transform as it was before the window resize (the official pixels, uint8 out):
    two full cv2 resizes, then the flip and the channels-first RGB transpose as numpy copies."""
    from datasets.transforms import resize_clip

    t = TrainTransform(backbone, normalise=False)

    def apply(frames, rng):
        p = t.sample(rng)
        x = resize_clip(frames, t.resize)[:, p.top : p.top + p.height, p.left : p.left + p.width]
        x = resize_clip(x, (t.crop, t.crop))
        x = x[:, :, ::-1] if p.flip else x
        x = x[..., ::-1] if t.spec.rgb else x
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, -4)))

    return apply


def bench_transform(clip, transform, clips, repeats, seed=0):
    """transform(clip, rng) `clips` times on one core -> (frames, seconds)."""
    import cv2

    threads = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(seed)
        transform(clip, rng)  # warm-up: window proofs, allocations

        def one():
            transform(clip, rng)
            return len(clip)

        return _timed(lambda: sum(one() for _ in range(clips)), repeats)
    finally:
        cv2.setNumThreads(threads[0])
        torch.set_num_threads(threads[1])


def bench_device_augment(source, backbone, device, batch, batches, seed=0):
    """ClipDataset of stored JPEGs -> DeviceAugment on `device` -> (loader frames, loader seconds,
    augmented frames, augment seconds): the loader half and the device half timed separately."""
    from datasets.device_augment import DeviceAugment, JpegTrainTransform, collate_jpeg_clips

    device = torch.device(device)
    videos = [Video(name, i % 2) for i, name in enumerate(source.names)]
    transform = JpegTrainTransform(backbone)
    dataset = ClipDataset(source, videos, None, transform, clip_num=3, hard_labels=True, seed=seed)
    augment = DeviceAugment(transform, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    items = [dataset[i % len(dataset)] for i in range(batch)]
    augment(collate_jpeg_clips(items)[0])  # warm-up: nvjpeg handles, kernels
    sync()
    load_s = aug_s = 0.0
    frames = 0
    for b in range(batches):
        start = time.perf_counter()
        items = [dataset[(b * batch + i) % len(dataset)] for i in range(batch)]
        clips = collate_jpeg_clips(items)[0]
        load_s += time.perf_counter() - start
        start = time.perf_counter()
        augment(clips)
        sync()
        aug_s += time.perf_counter() - start
        frames += len(clips.jpegs)
    return frames, load_s, frames, aug_s


def pipeline_rows(video, backbones, device, repeats=3, clips=20, batch=8, batches=4, seed=0):
    """The transform before/after rows and the DEVICE_AUGMENT rows (loader + device) -> rows."""
    rows = []
    source = open_frames(video, kind="video")
    clip = source.read_frames(source.names[0], 0, source.segment_len)
    for backbone in backbones:
        rows.append(
            (
                f"transform {backbone} before (1 core)",
                *bench_transform(clip, reference_transform(backbone), clips, repeats, seed),
            )
        )
        after = TrainTransform(backbone, normalise=False)
        rows.append(
            (
                f"transform {backbone} after (1 core)",
                *bench_transform(clip, after, clips, repeats, seed),
            )
        )
    with tempfile.TemporaryDirectory() as tmp:
        h5 = Path(tmp) / "frames.h5"
        make_h5(video, h5, workers=1, progress=False)
        frames = open_frames(h5)
        for backbone in backbones:
            n, load_s, m, aug_s = bench_device_augment(
                frames, backbone, device, batch, batches, seed
            )
            rows.append((f"loader jpegs {backbone} (no decode, 1 process)", n, load_s))
            rows.append((f"device augment {backbone} {device}", m, aug_s))
        frames.close()
    return rows


def folder_of_copies(tmp, copies):
    return tmp / f"copies{copies}"


def print_table(rows):
    print(f"{'method':<46} {'frames':>8} {'seconds':>9} {'frames/s':>10}")
    for name, frames, seconds in rows:
        rate = frames / seconds if frames and seconds > 0 else float("nan")
        print(f"{name:<46} {frames:>8d} {seconds:>9.3f} {rate:>10.1f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(DEFAULT_VIDEO), help="video to benchmark")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="make_h5 worker counts"
    )
    parser.add_argument(
        "--copies", type=int, default=4, help="copies of the video converted by make_h5"
    )
    parser.add_argument("--reads", type=int, default=20, help="random 2-segment reads per source")
    parser.add_argument("--batch", type=int, default=10, help="segments per iter_segments batch")
    parser.add_argument(
        "--repeats", type=int, default=3, help="read benchmarks: best of this many passes"
    )
    parser.add_argument(
        "--backbones",
        nargs="+",
        default=["i3d", "c3d"],
        choices=["i3d", "c3d"],
        help="TrainTransform of these backbones in the augment and loader rows",
    )
    parser.add_argument(
        "--loader-workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts"
    )
    parser.add_argument(
        "--loader-batch", type=int, default=4, help="videos (x 3 clips) per loader batch"
    )
    parser.add_argument(
        "--loader-batches", type=int, default=8, help="timed loader batches (after one warm-up)"
    )
    parser.add_argument(
        "--pipeline-only",
        action="store_true",
        help="only the transform before/after and the DEVICE_AUGMENT rows",
    )
    parser.add_argument(
        "--device", default="cpu", help="device of the DeviceAugment rows (cuda on a GPU)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer clips and batches (a check that it runs)"
    )
    args = parser.parse_args(argv)
    from benchmarks.stage1 import describe_machine

    print("\n".join(describe_machine()))
    print(f"video: {args.video}")
    if args.pipeline_only:
        sizes = (
            dict(repeats=1, clips=3, batch=2, batches=1)
            if args.quick
            else dict(repeats=args.repeats)
        )
        print_table(pipeline_rows(args.video, tuple(args.backbones), args.device, **sizes))
        return
    print_table(
        pipeline_rows(args.video, tuple(args.backbones), args.device, repeats=args.repeats)
        + run(
            args.video,
            args.workers,
            args.copies,
            args.reads,
            args.batch,
            args.repeats,
            backbones=tuple(args.backbones),
            loader_workers=args.loader_workers,
            loader_batch=args.loader_batch,
            loader_batches=args.loader_batches,
        )
    )


if __name__ == "__main__":
    main()
