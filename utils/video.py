"""OpenCV video reading: probe, random-access frame reads and sequential whole-segment iteration.

Frames are returned exactly as OpenCV decodes them: uint8 (n, H, W, 3) in **BGR** order (colour
conversion belongs to the transforms, docs/REFERENCE.md §3.6).

Frame count rule (`probe_video`): the container header (`CAP_PROP_FRAME_COUNT`) is trusted by
default, as the official make_h5 did (§4.8); it is cheap and exact for the .mp4/.avi files of
UCF-Crime and ShanghaiTech, but it is metadata, not proof (it can be missing, an estimate from
duration x fps, or overcount a truncated file, §6.14). `verify=True` counts by decoding every frame
instead, and a header that reports no count (<= 0) always falls back to decoding. Every read checks
that the frames it asked for came back, so a wrong header surfaces as a ValueError naming the file
and frame index, never as silently missing frames."""

import os
from pathlib import Path

import cv2
import numpy as np
from utils.errors import InputError, NotFoundError

VIDEO_EXTENSIONS = (
    ".mp4",
    ".avi",
    ".mkv",
    ".mov",
    ".m4v",
    ".webm",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".flv",
)


def open_capture(path):
    """-> an opened cv2.VideoCapture; FileNotFoundError if `path` is missing, ValueError if cv2
    can't open it."""
    path = str(path)
    if not os.path.isfile(path):
        raise NotFoundError(f"video file {path!r} does not exist")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        size = os.path.getsize(path)
        raise InputError(
            f"video {path!r} ({size} bytes) cannot be opened by OpenCV/FFmpeg: the file is empty,"
            " corrupt or in an unsupported format (re-encode it, e.g. ffmpeg -i in -c:v libx264"
            " out.mp4)"
        )
    return cap


def _count_by_decoding(cap):
    """Frames left in `cap`, counted with grab() (decodes, but skips the BGR conversion of
    read())."""
    n = 0
    while cap.grab():
        n += 1
    return n


def probe_video(path, verify=False):
    """-> (n_frames, height, width, fps). n_frames: header count, or decoded count if verify / no
    header.

    The first frame is always decoded, so a file that opens but holds no decodable frame is a
    ValueError."""
    cap = open_capture(path)
    try:
        ok, frame = cap.read()
        if not ok:
            raise InputError(
                f"video {str(path)!r} opens but no frame can be decoded (empty or corrupt stream)"
            )
        height, width = frame.shape[:2]
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        n_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if verify or n_frames <= 0:
            n_frames = 1 + _count_by_decoding(cap)
        return n_frames, height, width, fps
    finally:
        cap.release()


def _seek(cap, path, start):
    """Positions `cap` at frame `start` and checks the backend really went there."""
    if start == 0:
        return
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    pos = round(cap.get(cv2.CAP_PROP_POS_FRAMES))
    header = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if pos != start and 0 < header <= start:
        raise InputError(
            f"video {str(path)!r}: frame {start} is past the end (the header says {header} frames)"
        )
    if pos != start:  # a backend that seeks to the nearest keyframe would silently shift every clip
        raise InputError(
            f"video {str(path)!r}: seeking to frame {start} landed on frame {pos}; this file is not"
            " frame-accurately seekable: convert it to a frames h5 with tools/make_h5.py"
        )


def _short_read(cap, path, index, start, stop):
    """-> the ValueError for frame `index` missing while reading frames start..stop-1."""
    header = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    return InputError(
        f"video {str(path)!r}: frame {index} could not be decoded (asked for frames {start}.."
        f"{stop - 1}; the header says {header} frames). The file is truncated/corrupt or its "
        "header overcounts: count its frames with probe_video(path, verify=True)"
    )


def _read_n(cap, path, start, count):
    """-> uint8 (count, H, W, 3) BGR read from the current position; a short read is a
    ValueError."""
    frames = []
    for i in range(count):
        ok, frame = cap.read()
        if not ok:
            raise _short_read(cap, path, start + i, start, start + count)
        frames.append(frame)
    return np.stack(frames)


def read_video_frames(path, start=0, count=None):
    """-> uint8 (count, H, W, 3) BGR frames start..start+count-1; count=None reads to the end of the
    stream.

    Seeks with CAP_PROP_POS_FRAMES (frame-accurate with the FFmpeg backend: it decodes from the
    preceding keyframe), so a random read costs up to one GOP of decoding."""
    if start < 0 or (count is not None and count < 1):
        raise InputError(
            f"video {str(path)!r}: invalid frame range start={start}, count={count} "
            "(need start >= 0 and count >= 1)"
        )
    cap = open_capture(path)
    try:
        _seek(cap, path, start)
        if count is not None:
            return _read_n(cap, path, start, count)
        frames = []
        ok, frame = cap.read()
        while ok:
            frames.append(frame)
            ok, frame = cap.read()
        if not frames:
            raise InputError(
                f"video {str(path)!r}: no frame could be decoded from frame {start} on"
            )
        return np.stack(frames)
    finally:
        cap.release()


def iter_video_segments(path, segment_len=16, batch=1, num_segments=None):
    """Yields (first segment index, uint8 (k * segment_len, H, W, 3) BGR), k <= batch, decoding once
    in order.

    num_segments=None: every whole segment until the stream ends (trailing n % segment_len frames
    dropped, as in the official h5, §4.2). num_segments=n: exactly n segments; a stream that ends
    earlier is a ValueError naming the file and frame, so callers relying on a header count learn it
    was wrong."""
    if segment_len < 1 or batch < 1:
        raise InputError(
            f"iter_video_segments: segment_len={segment_len} and batch={batch} must be >= 1"
        )
    cap = open_capture(path)
    try:
        first, frames = 0, []
        while num_segments is None or first + len(frames) // segment_len < num_segments:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
            if len(frames) == batch * segment_len:
                yield first, np.stack(frames)
                first, frames = first + batch, []
        whole = len(frames) // segment_len
        if num_segments is not None and first + whole < num_segments:
            decoded = first * segment_len + len(frames)
            raise _short_read(cap, path, decoded, 0, num_segments * segment_len)
        if whole:
            yield first, np.stack(frames[: whole * segment_len])
    finally:
        cap.release()


def _resolve(line, base):
    """A path from a list: absolute as written, relative ones against `base` (no rewriting,
    §6.26)."""
    path = Path(line).expanduser()
    return path if path.is_absolute() or base is None else Path(base) / path


def _read_list(list_file, root):
    """-> paths listed one per line in `list_file` ('#' comments and blank lines ignored)."""
    base = Path(root) if root is not None else Path(list_file).resolve().parent
    with open(list_file) as f:
        lines = [line.strip() for line in f]
    return [_resolve(line, base) for line in lines if line and not line.startswith("#")]


def collect_videos(source, root=None):
    """-> list of video Paths from a folder (recursive, VIDEO_EXTENSIONS, sorted), a list file, one
    video file, or a sequence of paths. Relative list entries resolve against `root`, else the
    list's folder (a sequence: against `root`, else the working directory). Missing files ->
    FileNotFoundError."""
    if isinstance(source, (list, tuple)):
        paths = [_resolve(str(p), root) for p in source]
    elif Path(source).is_dir():
        paths = sorted(
            p
            for p in Path(source).rglob("*")
            if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()
        )
        if not paths:
            raise InputError(
                f"no video files ({', '.join(VIDEO_EXTENSIONS)}) found under folder {str(source)!r}"
            )
    elif Path(source).is_file():
        is_video = Path(source).suffix.lower() in VIDEO_EXTENSIONS
        paths = [Path(source)] if is_video else _read_list(source, root)
    else:
        raise NotFoundError(
            f"video source {str(source)!r} is neither a folder, a list file nor a video"
        )
    if not paths:
        raise InputError(f"video list {str(source)!r} names no video")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise NotFoundError(
            f"{len(missing)} of {len(paths)} listed videos do not exist: {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}. Relative paths resolve against "
            f"{str(root) if root is not None else 'the list file folder'}; set root (--root)"
        )
    return paths


def video_name(path):
    """'<dir>/Abuse028_x264.mp4' -> 'Abuse028_x264' (the frame-h5 key prefix, §4.8)."""
    return Path(path).stem


def video_names(paths):
    """-> {name: path}; two videos with the same name would share h5 keys, so that is a
    ValueError."""
    by_name = {}
    for path in paths:
        by_name.setdefault(video_name(path), []).append(str(path))
    dups = {name: ps for name, ps in by_name.items() if len(ps) > 1}
    if dups:
        shown = "; ".join(f"{n!r}: {ps}" for n, ps in list(dups.items())[:5])
        raise InputError(
            f"{len(dups)} video names occur more than once (keys '<name>-<idx>' would collide): "
            f"{shown}. Rename the files or convert the folders into separate h5 files"
        )
    return {name: Path(ps[0]) for name, ps in by_name.items()}
