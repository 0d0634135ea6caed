"""Stage-2 frames from either a frames h5 (official layout) or the raw videos, behind one interface.

Official frames h5 (docs/REFERENCE.md §3.6, §4.8; written by tools/make_h5.py): key
'<video>-<idx:06d>' holds one segment of `segment_len` (16) JPEG-encoded BGR frames as a
fixed-length byte-string array (numpy strips trailing NULs on read; harmless, JPEG data ends with
FFD9). Segment idx covers frames 16*idx .. 16*idx+15; the trailing n % 16 frames of a video are not
stored (§4.2). Raw videos (issue #32: read videos without building the frames h5, ~27 KB per 320x240
frame at JPEG quality 95, so ~375 GB for UCF-Crime: benchmarks/RESULTS.md): a folder (recursive) or
a list file; a video's name is its basename without extension and it has n_frames // 16 whole
segments.

Both sources return frames exactly as stored/decoded: uint8 (n, H, W, 3) **BGR**; colour order,
resizing and normalisation are the transforms' job. An h5 source reads its JPEGs, so its frames
differ from the video's decoded frames by the JPEG error (mean abs ~1-3 levels at quality 95), not
by position.

    src = open_frames("SH_Frames.h5")                  # or a folder / list of videos
    clip = src.read_segments("01_0014", 3, 2)          # uint8 (32, H, W, 3): frames 48..79
    for first, frames in src.iter_segments("01_0014", batch=10): ...
"""

import os
import re
from pathlib import Path

import cv2
import h5py
import numpy as np

from datasets.manifest import is_manifest, read_manifest
from utils.errors import InputError, MissingKeyError, NotFoundError, OutOfRangeError
from utils.video import (
    VIDEO_EXTENSIONS,
    collect_videos,
    iter_video_segments,
    probe_video,
    read_video_frames,
    video_names,
)

SEGMENT_LEN = 16  # frames per h5 key, `dataset_len` of the official code (§3.6)
_KEY = re.compile(r"^(?P<name>.+)-(?P<idx>\d{6,})$")
_SHOWN = 5  # names listed in an error message before "... and N more"


def frame_key(name, idx):
    """-> h5 key of segment idx of video name: 'Abuse028_x264-000012'."""
    return f"{name}-{idx:06d}"


def parse_frame_key(key):
    """'Abuse028_x264-000012' -> ('Abuse028_x264', 12); a key not in that form is an InputError."""
    match = _KEY.match(key)
    if match is None:
        raise InputError(
            f"h5 key {key!r} is not a frame key '<video>-<idx:06d>' (e.g. 'Abuse028_x264-000012');"
            " is this a feature h5 (keys '<video>.npy')? Frame h5 files are written by"
            " tools/make_h5.py"
        )
    return match.group("name"), int(match.group("idx"))


def encode_frame(frame, quality=95):
    """frame: uint8 (H, W, 3) BGR -> JPEG bytes (cv2.imencode, as the official make_h5, §4.8)."""
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InputError(
            f"cv2.imencode failed on a frame of shape {frame.shape}, dtype {frame.dtype}"
        )
    return buf.tobytes()  # not .tostring(): removed in NumPy 2 (§6.7)


def encode_segment(frames, quality=95):
    """frames: uint8 (segment_len, H, W, 3) BGR -> fixed-length byte-string array (segment_len,) of
    JPEGs."""
    return np.asarray([encode_frame(frame, quality) for frame in frames])


def decode_segment(jpegs, where="segment"):
    """jpegs: byte-string array (segment_len,) -> uint8 (segment_len, H, W, 3) BGR; `where` names it
    in errors."""
    frames = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in jpegs]
    bad = [i for i, f in enumerate(frames) if f is None]
    if bad:
        raise InputError(
            f"{where}: frames {bad} are not decodable JPEG data (corrupt h5? rebuild it with "
            "tools/make_h5.py)"
        )
    if len({f.shape for f in frames}) > 1:
        raise InputError(
            f"{where}: frames have different sizes {sorted({f.shape for f in frames})}"
        )
    return np.stack(frames)


def _missing_names_error(missing, available, source, looks_like):
    """-> MissingKeyError listing the first missing names, their count and what available names look
    like."""
    hint = ""
    if any(Path(m).suffix.lower() in VIDEO_EXTENSIONS + (".npy",) for m in missing):
        hint = (
            " Requested names carry an extension: names have none (e.g. 'Abuse028_x264', not"
            " '.mp4'/'.npy')."
        )
    return MissingKeyError(
        f"{len(missing)} requested videos are not in {source}: {missing[:_SHOWN]}"
        f"{f' ... and {len(missing) - _SHOWN} more' if len(missing) > _SHOWN else ''}; "
        f"it has {len(available)} videos, e.g. {available[:3]} ({looks_like}).{hint}"
    )


class FrameSource:
    """Common interface: `names`, `segment_len`, num_segments, read_segments, iter_segments (module
    docstring)."""

    def __init__(self, names, segment_len, source):
        self.names, self.segment_len, self.source = list(names), int(segment_len), source

    def _restrict(self, available, names):
        """-> `names` (requested order) if given, else sorted `available`; missing names ->
        MissingKeyError."""
        if names is None:
            return sorted(available)
        names = list(dict.fromkeys(str(n) for n in names))
        missing = [n for n in names if n not in available]
        if missing:
            raise _missing_names_error(
                missing, sorted(available), self.source, self._looks_like(available)
            )
        return names

    def _check(self, name, start, count):
        """Range check of segments start..start+count-1 of `name`, with errors naming both."""
        n = self.num_segments(name)
        if count < 1 or start < 0 or start + count > n:
            raise OutOfRangeError(
                f"video {name!r} in {self.source} has {n} segments; segments {start}.."
                f"{start + count - 1} (start={start}, count={count}) are out of range"
            )

    def num_segments(self, name):
        """-> number of whole segment_len-frame segments of video `name`."""
        raise NotImplementedError

    def read_segments(self, name, start, count):
        """-> uint8 (count * segment_len, H, W, 3) BGR frames of segments start..start+count-1."""
        raise NotImplementedError

    def read_frames(self, name, first, count):
        """-> uint8 (count, H, W, 3) BGR frames first..first+count-1, which must lie in whole
        segments; only those frames are decoded (a stage-2 clip starting mid-segment needs 16
        frames, not 2 segments)."""
        start, stop = self._frame_span(name, first, count)
        offset = first - start * self.segment_len
        return self.read_segments(name, start, stop - start)[offset : offset + count]

    def read_jpegs(self, name, first, count):
        """-> the stored JPEGs of frames first..first+count-1: only a frames h5 stores them."""
        raise InputError(
            "STAGE2.DEVICE_AUGMENT True decodes the JPEGs stored in a frames h5, but the frames"
            f" come from {self.source}: convert the videos with tools/make_h5.py and set"
            " DATA.FRAMES to the h5, or set STAGE2.DEVICE_AUGMENT False"
        )

    def _frame_span(self, name, first, count):
        """-> (first segment, end segment) holding frames first..first+count-1, range-checked."""
        if count < 1 or first < 0:
            raise OutOfRangeError(
                f"video {name!r} in {self.source}: frames {first}..{first + count - 1} "
                f"(first={first}, count={count}) are out of range"
            )
        start, stop = first // self.segment_len, -(-(first + count) // self.segment_len)
        self._check(name, start, stop - start)
        return start, stop

    def iter_segments(self, name, batch):
        """Yields (first segment index, uint8 (k * segment_len, H, W, 3) BGR), k <= batch, every
        segment in order."""
        if batch < 1:
            raise InputError(f"iter_segments: batch={batch} must be >= 1")
        n = self.num_segments(name)
        for first in range(0, n, batch):
            yield first, self.read_segments(name, first, min(batch, n - first))

    def _looks_like(self, available):
        return "names are video basenames without extension"

    def _unknown(self, name):
        return MissingKeyError(
            f"video {name!r} is not in {self.source} (videos: {self.names[:3]}"
            f"{' ...' if len(self.names) > 3 else ''}, {len(self.names)} in all)"
        )


class H5FrameSource(FrameSource):
    """Frames h5 (official layout). The file handle opens lazily, once per process (DataLoader
    workers)."""

    def __init__(self, path, names=None, segment_len=SEGMENT_LEN):
        super().__init__([], segment_len, f"frames h5 {str(path)!r}")
        self.path = str(path)
        self._file, self._pid = None, None
        self._counts = self._index()
        self.names = self._restrict(self._counts, names)

    def _index(self):
        """-> {video: number of segments}; checks every video's keys are exactly idx 0..n-1."""
        with h5py.File(self.path, "r") as f:
            keys = list(f.keys())
            if not keys:
                raise InputError(f"{self.source} holds no keys; write it with tools/make_h5.py")
            indices = {}
            for key in keys:
                name, idx = parse_frame_key(key)
                indices.setdefault(name, []).append(idx)
            # the official reader takes dataset_len from the first key (§3.6)
            stored = f[keys[0]].shape
        if stored != (self.segment_len,):
            raise InputError(
                f"{self.source}: key {keys[0]!r} holds shape {stored}, expected"
                f" ({self.segment_len},) JPEG frames; pass segment_len={stored[0]} or rebuild"
                " the h5"
            )
        for name, idx in indices.items():
            idx = np.sort(idx)
            if idx[-1] != len(idx) - 1:  # keys are unique, so max == n-1 <=> exactly 0..n-1
                gap = int(np.setdiff1d(np.arange(idx[-1] + 1), idx)[0])
                raise InputError(
                    f"{self.source}: video {name!r} has keys up to {frame_key(name, int(idx[-1]))}"
                    f" but key {frame_key(name, gap)!r} is missing; rebuild the h5 with"
                    " tools/make_h5.py"
                )
        return {name: len(idx) for name, idx in indices.items()}

    def _looks_like(self, available):
        return f"h5 keys look like {frame_key(min(available), 0)!r}"

    def _h5(self):
        """-> this process's open h5py.File (h5py handles must not cross a fork)."""
        if self._pid != os.getpid():
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._file

    def __getstate__(self):  # picklable for spawned DataLoader workers: the handle reopens there
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, None
        return state

    def num_segments(self, name):
        if name not in self._counts:
            raise self._unknown(name)
        return self._counts[name]

    def read_segments(self, name, start, count):
        self._check(name, start, count)
        return self._decode(name, start * self.segment_len, count * self.segment_len)

    def read_frames(self, name, first, count):
        self._frame_span(name, first, count)
        return self._decode(name, first, count)

    def read_jpegs(self, name, first, count):
        """-> the stored JPEG byte strings of frames first..first+count-1, undecoded (decoded on the
        training device with STAGE2.DEVICE_AUGMENT, datasets/device_augment.py)."""
        self._frame_span(name, first, count)
        f, n, jpegs = self._h5(), self.segment_len, []
        for idx in range(first // n, (first + count - 1) // n + 1):
            lo, hi = max(first - idx * n, 0), min(first + count - idx * n, n)
            jpegs.extend(f[frame_key(name, idx)][lo:hi])
        return jpegs

    def _decode(self, name, first, count):
        """Decodes frames first..first+count-1 (range-checked by the caller) from their keys'
        JPEGs."""
        f, n, frames = self._h5(), self.segment_len, []
        for idx in range(first // n, (first + count - 1) // n + 1):
            key = frame_key(name, idx)
            jpegs = f[key][()]
            if jpegs.shape != (n,):
                raise InputError(
                    f"{self.source}: key {key!r} holds shape {jpegs.shape}, expected ({n},) JPEG "
                    "byte strings"
                )
            lo, hi = max(first - idx * n, 0), min(first + count - idx * n, n)
            frames.append(
                decode_segment(jpegs[lo:hi], f"{self.source} key {key!r} (frames {lo}..{hi - 1})")
            )
        return np.concatenate(frames)

    def close(self):
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file, self._pid = None, None


class VideoFrameSource(FrameSource):
    """Raw videos decoded with OpenCV. Frame counts come from the header unless verify_count
    (utils/video.py)."""

    def __init__(self, videos, names=None, root=None, segment_len=SEGMENT_LEN, verify_count=False):
        listed = (
            f"{len(videos)} listed videos"
            if isinstance(videos, (list, tuple))
            else repr(str(videos))
        )
        super().__init__([], segment_len, f"videos {listed}")
        self.paths = video_names(collect_videos(videos, root))
        self.verify_count = verify_count
        # probed on first use: probing every UCF video up front would take minutes
        self._counts = {}
        self.names = self._restrict(self.paths, names)

    def num_segments(self, name):
        if name not in self.paths:
            raise self._unknown(name)
        if name not in self._counts:
            n_frames = probe_video(self.paths[name], verify=self.verify_count)[0]
            self._counts[name] = n_frames // self.segment_len
        return self._counts[name]

    def read_segments(self, name, start, count):
        self._check(name, start, count)
        n = self.segment_len
        return read_video_frames(self.paths[name], start * n, count * n)

    def read_frames(self, name, first, count):
        self._frame_span(name, first, count)
        return read_video_frames(self.paths[name], first, count)

    def iter_segments(self, name, batch):
        total = self.num_segments(name)  # decode once, in order: no per-batch seek
        return iter_video_segments(self.paths[name], self.segment_len, batch, num_segments=total)

    def close(self):
        pass


# DATA.FRAMES_KIND: "auto" picks "h5" for an HDF5 file, "video" otherwise
FRAMES_KINDS = ("auto", "h5", "video")


def open_frames(
    path, kind="auto", names=None, root=None, segment_len=SEGMENT_LEN, verify_count=False
):
    """-> FrameSource over a frames h5 (kind "h5") or a video folder / list file / video (kind
    "video").

    kind "auto" picks "h5" when h5py.is_hdf5(path). names: restrict to these videos (MissingKeyError
    if any is missing). root: base of relative paths in a video list. verify_count: count video
    frames by decoding."""
    if kind not in FRAMES_KINDS:
        raise InputError(f"open_frames: kind={kind!r}; use 'auto', 'h5' or 'video'")
    if not isinstance(path, (list, tuple)) and is_manifest(path):
        # a dataset manifest (datasets/manifest.py): the videos of its `path` fields
        path = read_manifest(path).paths()
    if not isinstance(path, (list, tuple)) and not Path(path).exists():
        raise NotFoundError(
            f"frames source {str(path)!r} does not exist (a frames h5, a video folder or a "
            "list file of videos)"
        )
    is_h5 = not isinstance(path, (list, tuple)) and Path(path).is_file() and h5py.is_hdf5(path)
    if kind == "h5" and not is_h5:
        raise InputError(
            f"frames source {str(path)!r} is not an HDF5 file; use kind='video' for videos"
        )
    if kind == "h5" or (kind == "auto" and is_h5):
        return H5FrameSource(path, names, segment_len)
    return VideoFrameSource(path, names, root, segment_len, verify_count)
