"""Videos -> the official stage-2 frames h5 (docs/REFERENCE.md §4.8), read back by
datasets/frames.py.

tools/make_h5.py is the command line; `convert` is its procedure, `make_h5` the conversion itself.

Input: a folder (searched recursively for utils.video.VIDEO_EXTENSIONS), a list file (one path per
line, relative paths against --root, else the list's folder; paths are used as written: the official
'Normal/' rewrite silently dropped videos, §6.26), or one video. Two videos with the same basename
are an error before any work (their keys would collide). Output: key
'<basename-without-ext>-<idx:06d>' for idx in [0, n // 16) holds the 16 JPEG-encoded BGR frames
16*idx..16*idx+15 as a fixed-length byte-string array (chunks=True); the trailing n % 16 frames are
dropped. n is the number of frames actually decoded, not CAP_PROP_FRAME_COUNT (the official code
trusted the header and crashed on a failed read, §6.8); a header/decoded disagreement is listed in
the report. Videos that cannot be opened, decode no frame or have fewer than 16 frames are skipped
and reported; no key is written for them and the others are still converted. Resumable: the h5 is
written as '<out>.incomplete' and renamed to <out> at the end, so <out> is always complete. Each
video is committed alone (its segments under '<video>.partial', moved to their keys, then flushed),
so a killed run (Ctrl-C, kill -9, a cluster's time limit) leaves its finished videos there and the
same command converts only the others; other --quality / --resize / --segment-len than the killed
run's are refused (--force starts over). Workers die with the main process (Linux). Exit code: 0; 1
if any video was skipped (the h5 is still written) unless --allow-skips, because a silently smaller
h5 is how issue #11 lost all normal test videos; 2 when nothing is written (a usage error such as a
missing file, duplicate names or an existing output, or every video skipped); 130 on Ctrl-C. Size
(measured, benchmarks/RESULTS.md): 21-37 KB per 320x240 frame at quality 95 (fixed-length strings
pad every frame of a key to its largest JPEG), ~27 KB on average: ~375 GB for UCF-Crime's 13.7 M
frames. Memory: each worker returns one whole encoded video, so peak RAM is about (workers + 1) x
the largest encoded video."""

import contextlib
import ctypes
import functools
import logging
import multiprocessing as mp
import os
import signal
import sys
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
from utils.progress import bar as progress_bar

from datasets.frames import SEGMENT_LEN, encode_frame, frame_key, parse_frame_key
from utils.checkpoint import missing_dirs, remove_empty_dirs
from utils.errors import ExistsError, InputError
from datasets.manifest import is_manifest, read_manifest
from utils.video import collect_videos, open_capture, video_name, video_names

logger = logging.getLogger("mist.frames_h5")
INCOMPLETE = ".incomplete"  # suffix of the h5 being written
PARTIAL = ".partial"  # suffix of the group of a video being written
# h5 attrs
OPTIONS = {"segment_len": "--segment-len", "jpeg_quality": "--quality", "resize": "--resize"}
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def encode_video(path, segment_len=SEGMENT_LEN, quality=95, resize=None):
    """Decodes `path` once -> {"segments": [S-array (segment_len,)], "decoded": n, "header": n} or
    {"skip": reason}. Frames are encoded as they are decoded, so raw frames are never all held."""
    try:
        cap = open_capture(path)
    except (OSError, ValueError) as err:
        return {"skip": str(err)}
    try:
        header = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        segments, jpegs = [], []
        ok, frame = cap.read()
        while ok:
            if resize is not None:  # bilinear, as the training/test Resize transforms (§3.6)
                frame = cv2.resize(frame, (resize[1], resize[0]), interpolation=cv2.INTER_LINEAR)
            jpegs.append(encode_frame(frame, quality))
            if len(jpegs) == segment_len:
                segments.append(np.asarray(jpegs))
                jpegs = []
            ok, frame = cap.read()
    except (ValueError, cv2.error) as err:
        return {"skip": f"decoding failed: {err}"}
    finally:
        cap.release()
    decoded = len(segments) * segment_len + len(jpegs)
    if decoded == 0:
        return {"skip": "opens but no frame can be decoded (empty or corrupt stream)"}
    if not segments:
        return {"skip": f"only {decoded} frames, fewer than one {segment_len}-frame segment"}
    return {"segments": segments, "decoded": decoded, "header": header}


def _worker_init(parent):
    cv2.setNumThreads(1)  # one video per process already fills the cores; avoid N x N threads
    _die_with(parent)


def _die_with(parent):
    """Linux: the kernel kills this worker when its parent dies, so a kill -9 of make_h5 leaves no
    orphan decoding on (tests/test_make_h5.py); elsewhere nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(1)


@contextlib.contextmanager
def _results(paths, job, workers):
    """Yields an iterator of job(path) in the order of `paths`: in-process, or from a spawn Pool."""
    if workers == 1 or len(paths) < 2:
        yield map(job, paths)
        return
    # spawn, not fork: a forked child inherits OpenCV/OpenMP thread pools of the parent in an
    # unknown state
    with mp.get_context("spawn").Pool(
        min(workers, len(paths)), initializer=_worker_init, initargs=(os.getpid(),)
    ) as pool:
        yield pool.imap(job, paths, chunksize=1)


def _check_options(out, workers, quality, resize, segment_len, force):
    """Argument errors, raised before any work."""
    if Path(out).exists() and not force:
        raise ExistsError(
            f"output {str(out)!r} already exists; pass --force (force=True) to overwrite it"
        )
    if workers < 1 or segment_len < 1:
        raise InputError(f"--workers {workers} and --segment-len {segment_len} must be >= 1")
    if not 0 <= quality <= 100:
        raise InputError(f"--quality {quality} must be in 0..100 (official: 95)")
    if resize is not None and (len(resize) != 2 or min(resize) < 1):
        raise InputError(f"--resize {resize} must be H W with positive sizes, e.g. 240 320")


def _open_incomplete(path, attrs):
    """Creates `path` or checks a killed run's options against `attrs` and drops its half-written
    video
    -> names of its finished videos."""
    try:
        f = h5py.File(path, "a")
    except OSError as err:
        raise InputError(
            f"{path} cannot be read ({err}); delete it or pass --force to start over"
        ) from None
    with f:
        for key, option in OPTIONS.items():
            if key in f.attrs and f.attrs[key] != attrs[key]:
                raise ExistsError(
                    f"{path} was started with {option} {f.attrs[key]}, not {attrs[key]}: run the "
                    "same command to resume it, or pass --force to start over"
                )
        f.attrs.update(attrs)
        partial = {k[: -len(PARTIAL)] for k in f.keys() if k.endswith(PARTIAL)}
        names = {}
        for key in f.keys():
            if not key.endswith(PARTIAL):
                names.setdefault(parse_frame_key(key)[0], []).append(key)
        for name in partial:  # killed while its segments moved to their keys
            for key in names.pop(name, []) + [name + PARTIAL]:
                del f[key]
    return set(names)


def _commit(f, name, segments):
    """Writes one video's segments under '<name>.partial', then moves them to their keys
    (_open_incomplete drops a video caught half-way)."""
    group = f.create_group(name + PARTIAL)
    for idx, jpegs in enumerate(segments):
        group.create_dataset(str(idx), data=jpegs, chunks=True)
    for idx in range(len(segments)):
        f.move(f"{name}{PARTIAL}/{idx}", frame_key(name, idx))
    del f[name + PARTIAL]
    f.flush()  # what is on disk is now this state: a kill -9 loses at most the next video


def _write(paths, work, job, workers, progress, segment_len):
    """Appends every convertible video of `paths` to `work` -> report dict (without timing)."""
    report = {
        "videos": 0,
        "segments": 0,
        "frames": 0,
        "dropped_tail_frames": 0,
        "skipped": [],
        "count_mismatch": [],
    }
    with h5py.File(work, "a") as f, _results(paths, job, workers) as results:
        bar = progress_bar(zip(paths, results), progress, total=len(paths), unit="video")
        for path, res in bar:
            if "skip" in res:
                report["skipped"].append({"video": str(path), "reason": res["skip"]})
                (logger.warning if bar.disable else bar.write)(f"skipped {path}: {res['skip']}")
                bar.set_postfix(skipped=len(report["skipped"]))
                continue
            _commit(f, video_name(path), res["segments"])
            stored = len(res["segments"]) * segment_len
            report["videos"] += 1
            report["segments"] += len(res["segments"])
            report["frames"] += stored
            report["dropped_tail_frames"] += res["decoded"] - stored
            if res["header"] != res["decoded"]:
                report["count_mismatch"].append(
                    {"video": str(path), "header": res["header"], "decoded": res["decoded"]}
                )
    return report


def make_h5(
    videos,
    out,
    workers=1,
    quality=95,
    resize=None,
    segment_len=SEGMENT_LEN,
    root=None,
    force=False,
    progress=True,
):
    """videos (folder | list file | video | sequence of paths) -> frames h5 at `out` -> report dict:
    out, videos, segments, frames, dropped_tail_frames, skipped [{video, reason}], count_mismatch
    [{video, header, decoded}] (of the videos converted by this call), videos_already_done (by a
    killed run), seconds, mb. All videos skipped -> InputError, no output."""
    _check_options(out, workers, quality, resize, segment_len, force)
    # a dataset manifest (datasets/manifest.py): the videos of its `path` fields
    if not isinstance(videos, (list, tuple)) and is_manifest(videos):
        videos = read_manifest(videos).paths()
    paths = collect_videos(videos, root)
    video_names(paths)  # duplicate basenames -> InputError before any work
    out, start = Path(out), time.time()
    new_dirs = missing_dirs(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.with_name(out.name + INCOMPLETE)
    if force and work.exists():
        work.unlink()
    attrs = {
        "segment_len": segment_len,
        "jpeg_quality": quality,
        # provenance; readers ignore it
        "resize": f"{resize[0]}x{resize[1]}" if resize else "original",
    }
    done = _open_incomplete(work, attrs)
    todo = [p for p in paths if video_name(p) not in done]
    if len(todo) < len(paths):
        logger.info(
            "resuming %s: %d videos done, %d to convert", work, len(paths) - len(todo), len(todo)
        )
    job = functools.partial(
        encode_video,
        segment_len=segment_len,
        quality=quality,
        resize=tuple(resize) if resize else None,
    )
    report = _write(todo, work, job, workers, progress, segment_len)
    report["videos_already_done"] = len(paths) - len(todo)
    if report["videos"] + report["videos_already_done"] == 0:
        work.unlink()
        remove_empty_dirs(new_dirs)
        reasons = [s["reason"] for s in report["skipped"][:3]]
        raise InputError(
            f"none of the {len(paths)} videos could be converted, e.g. {reasons}; nothing written"
        )
    os.replace(work, out)
    report.update(
        out=str(out), seconds=round(time.time() - start, 2), mb=round(out.stat().st_size / 1e6, 2)
    )
    return report


def format_report(report):
    """-> the human-readable summary printed at the end of a run."""
    done = report.get("videos_already_done", 0)
    lines = [
        (
            f"wrote {report['out']}: {report['videos']} videos, {report['segments']} segments, "
            f"{report['frames']} frames ({report['dropped_tail_frames']} trailing frames dropped), "
            f"{report['mb']} MB in {report['seconds']} s"
            + (f"; {done} videos were done before" if done else "")
        ),
        f"skipped {len(report['skipped'])} videos" + (":" if report["skipped"] else ""),
    ]
    lines += [f"  {s['video']}: {s['reason']}" for s in report["skipped"]]
    if report["count_mismatch"]:
        lines.append(
            f"{len(report['count_mismatch'])} videos decode a different frame count than their"
            " header (the decoded count was used; check your annotations' frame counts):"
        )
        lines += [
            f"  {m['video']}: header {m['header']}, decoded {m['decoded']}"
            for m in report["count_mismatch"]
        ]
    return "\n".join(lines)


def convert(
    videos,
    out,
    workers=1,
    quality=95,
    resize=None,
    segment_len=SEGMENT_LEN,
    root=None,
    force=False,
    allow_skips=False,
):
    """tools/make_h5.py: make_h5 with its log on stderr and the summary on stdout -> exit status: 1
    if a video was skipped (unless allow_skips), else 0."""
    logging.basicConfig(level=logging.INFO, format="[make_h5] %(message)s", stream=sys.stderr)
    try:
        report = make_h5(videos, out, workers, quality, resize, segment_len, root, force)
    except KeyboardInterrupt:
        print(
            f"interrupted: the finished videos are in {out}{INCOMPLETE}; run the same command again"
            " to convert the rest",
            file=sys.stderr,
        )
        raise
    print(format_report(report))
    return 1 if report["skipped"] and not allow_skips else 0
