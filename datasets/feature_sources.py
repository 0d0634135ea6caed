"""Readers behind FeatureStore: the official h5, RTFM-style list and Sultani 32-segment text
layouts, canonical video names, and how Sultani's segment scores map to clips and frames.

Sultani et al.'s release (AnomalyDetectionCVPR2018, `Save_C3DFeatures_32Segments.m`) ships one text
file per video, '<video>_C.txt': 32 lines (segments) of 4096 space-separated floats. C3D fc6 was
computed for every 16-frame clip (n clips for the video); with b = round(linspace(1, n, 33))
(1-based, MATLAB rounding), segment i is the mean of clips b_i .. b_{i+1}-1, or clip b_i alone when
that range is empty, divided by its L2 norm. The rows ARE the segments: a reader of this layout
exposes 32 rows per video (`segments` = 32), not one row per clip.

Their `Evaluate_Anomaly_Detector.m` gives segment i's score to frames (b_i - 1)*16 + 1 ..
(b_{i+1} - 1)*16 (1-based; the 16 frames of clip b_i for an empty range), segment after segment,
so a later segment overwrites an earlier one where they share a clip. 0-based, with
(start, stop) = datasets.segments.segment_bounds(n): segment i covers clips [start_i, stop_i) =
frames [16*start_i, 16*stop_i). NOT floor(i*n/32): the boundaries are rounded from linspace(0, n-1,
33). The last clip, n-1, lies in no segment's range unless the last range is empty; their code
leaves its 16 frames (and the frames past 16*n it pads) at score 0, a bug: here it takes segment
31's score. `segment_of_clips` is that mapping; `segment_scores_to_clips` turns 32 segment scores
into one score per 16-frame clip, which utils.evaluation scores as any clip scores (the frames past
16*n are not scored, the MIST protocol's rule). The text files do not store n: it is the video's
frame count // 16, the clips C3D's default settings extract."""

import os
import re

import h5py
import numpy as np

from datasets.segments import segment_bounds
from utils.errors import InputError, MissingKeyError, NotFoundError

_EPS = 1e-12  # as torch.nn.functional.normalize: a zero row stays zero instead of 0/0 = NaN
_EXTENSIONS = (".npy", ".h5", ".hdf5", ".mp4", ".avi")
_CROP_SUFFIX = re.compile(r"__(\d+)$")
_FEATURE_SUFFIX = re.compile(r"_(?:i3d|c3d)$", re.IGNORECASE)
_SHOWN = 5  # missing names / files listed in an error message before "... and N more"
SEGMENTS = 32  # rows of a Sultani feature file: its video's 32 segments
# Save_C3DFeatures_32Segments.m names the file of video v 'v_C.txt'
_TXT_SUFFIX = re.compile(r"_C$")


def _split_name(name):
    """'<dir>/Abuse028_x264_i3d.npy' -> ('Abuse028_x264', None); 'v__3.npy' -> ('v', 3)."""
    base = os.path.basename(str(name).strip())
    # not os.path.splitext: XD names such as 'Bad.Boys.1995__#00-26-51...' hold dots
    for ext in _EXTENSIONS:
        if base.lower().endswith(ext):
            base = base[: -len(ext)]
            break
    crop = None
    for _ in range(2):  # both '<v>__3_i3d' and '<v>_i3d__3' occur
        match = _CROP_SUFFIX.search(base)
        if match and crop is None:
            crop, base = int(match.group(1)), base[: match.start()]
        base = _FEATURE_SUFFIX.sub("", base)
    if not base:
        raise InputError(f"cannot derive a video name from {name!r}")
    return base, crop


def canonical_name(basename_or_key):
    """'01_0014_i3d.npy', '01_0014.npy', 'Abuse/Abuse028_x264.mp4', 'v__0.npy' -> '01_0014',
    'Abuse028_x264', 'v'."""
    return _split_name(basename_or_key)[0]


def _near_misses(keys):
    """{canonical name: first key with that name} for hints; keys that give no name are skipped."""
    near = {}
    for key in keys:
        try:
            near.setdefault(canonical_name(key), key)
        except ValueError:
            continue  # only used to phrase a hint; a bare '.npy' key has no canonical name
    return near


def _example_name(name):
    """A canonical name to show in a hint: the name itself when it has none."""
    try:
        return canonical_name(name)
    except ValueError:
        return str(name)


def _missing_error(missing, total, file, keys, hint=""):
    """KeyError naming the missing videos (first few + count) and the near-miss key for each;
    `.missing` holds them all. hint: a sentence added for this layout."""
    keys = list(keys)
    near = _near_misses(keys)
    like = f"keys look like '{keys[0]}'" if keys else "it lists no videos"
    # an example from the user's own split, not a fixed dataset's name; none when all are canonical
    odd = next((n for n in missing if _example_name(n) != n), None)
    fix = hint
    if odd is not None:
        fix = (
            f". Video names must be canonical, e.g. '{_example_name(odd)}' for '{odd}' (see "
            f"datasets.features.canonical_name){hint}"
        )
    if len(missing) == 1:
        found = near.get(_example_name(missing[0]))
        err = MissingKeyError(
            f"video '{missing[0]}' has no features in {file} ("
            + (f"keys look like '{found}'?" if found else like)
            + ")"
            + fix
        )
        err.missing = list(missing)
        return err
    shown = ", ".join(
        f"'{n}'" + (f" (key '{near[_example_name(n)]}'?)" if _example_name(n) in near else "")
        for n in missing[:_SHOWN]
    )
    more = f" ... and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
    err = MissingKeyError(
        f"{len(missing)} of {total} videos have no features in {file}: {shown}{more}; {like}{fix}"
    )
    err.missing = list(missing)
    return err


def _clip_shape(shape, crop, where):
    """Validate a raw feature shape (n, D) or (n, crops, D) for `crop` -> (n_clips, D) after crop
    handling."""
    if len(shape) not in (2, 3):
        raise InputError(
            f"{where}: features have shape {tuple(shape)}; expected (n_clips, D) or (n_clips,"
            " crops, D)"
        )
    if shape[0] == 0:
        raise InputError(
            f"{where}: video has 0 clips; re-extract its features or remove it from the split"
        )
    if shape[-1] == 0:
        raise InputError(f"{where}: features have dimension 0 (shape {tuple(shape)})")
    if len(shape) == 2 and crop >= 0:
        raise InputError(f"{where}: features have no crop axis (shape {tuple(shape)}); use crop=-1")
    if len(shape) == 3 and crop >= shape[1]:
        raise InputError(
            f"{where}: crop={crop} but the features have {shape[1]} crops; use -1..{shape[1] - 1}"
        )
    return int(shape[0]), int(shape[-1])


def _reduce_crops(raw, crop):
    """raw: (n, D) or (n, crops, D), possibly a memmap view -> float32 (n, D) that owns its memory:
    crop mean (crop=-1) or crop `crop`."""
    if raw.ndim == 3:
        raw = raw.astype(np.float32, copy=False).mean(axis=1) if crop < 0 else raw[:, crop]
    # copies only views (memmaps) and other dtypes
    return np.require(raw, np.float32, ["C", "O", "W"])


def _check_dtype(dtype, where):
    if not np.issubdtype(dtype, np.floating):
        raise InputError(f"{where}: features have dtype {dtype}; expected a float array")


def _check_finite(x, where):
    """Raise if x holds NaN/inf. NaN/inf propagate through a sum, so one fast reduction clears
    almost every array; only a non-finite sum (bad values, or float32 overflow of huge ones) pays
    for the exact test."""
    with np.errstate(over="ignore"):
        finite = np.isfinite(x.sum()) or np.isfinite(x).all()
    if not finite:
        bad = int(np.count_nonzero(~np.isfinite(x).all(axis=-1)))
        raise InputError(
            f"{where}: {bad} clip(s) contain NaN/inf values; re-extract these features"
        )


def l2_normalise(x):
    """x: (n, D) float32 -> (n, D) float32, every row divided by its L2 norm (zero rows stay
    zero)."""
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return x / np.maximum(norm, np.float32(_EPS))


class _H5Source:
    """Official layout: dataset '<video>.npy' (n_clips, D) per video in one h5 file."""

    def __init__(self, path, names, root=None, crop=-1):
        """root, crop: unused (every layout takes them); a crop axis is reduced on read."""
        self.path = str(path)
        self.file = h5py.File(self.path, "r")
        keys = list(self.file.keys())
        have = set(keys)
        missing = [n for n in names if f"{n}.npy" not in have]
        if missing:
            self.file.close()
            raise _missing_error(missing, len(names), os.path.basename(self.path), keys)
        self.datasets = {n: self.file[f"{n}.npy"] for n in names}

    def where(self, name):
        return f"video '{name}' (key '{name}.npy' in {self.path})"

    def shape(self, name, crop):
        """-> (n_clips, D) after crop handling; validates shape and dtype."""
        ds = self.datasets[name]
        if not isinstance(ds, h5py.Dataset):
            raise InputError(f"{self.where(name)} is an h5 group, not a dataset of features")
        _check_dtype(ds.dtype, self.where(name))
        # an honest file holds its data
        if ds.compression is None and ds.nbytes > os.path.getsize(self.path):
            raise InputError(
                f"{self.where(name)} declares shape {ds.shape} ({ds.nbytes} bytes) but the file"
                f" holds {os.path.getsize(self.path)} bytes: it is truncated or corrupt (never"
                " written in full?); re-extract or download it again"
            )
        return _clip_shape(ds.shape, crop, self.where(name))

    def read(self, name, rows, crop):
        """rows: slice or sorted unique int array -> float32 (len(rows), D)."""
        return _reduce_crops(self.datasets[name][rows], crop)

    def close(self):
        self.file.close()


def _parse_list(path):
    """List file -> {video: {crop or None: path as written}}; duplicates and mixed crop styles
    raise."""
    table = {}
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            entry = line.strip()
            if not entry:
                continue
            name, crop = _split_name(entry)
            crops = table.setdefault(name, {})
            if crop in crops or (crops and (crop is None) != (None in crops)):
                raise InputError(
                    f"{path}:{line_no}: '{entry}' repeats video '{name}' (already listed as "
                    f"'{next(iter(crops.values()))}'); list each video, or each of its crops, once"
                )
            crops[crop] = entry
    return table


def _resolve(entry, root):
    """Path written in a list -> existing path: as written (relative to root), then
    <root>/<basename>."""
    first = entry if os.path.isabs(entry) else os.path.join(root, entry)
    for candidate in (first, os.path.join(root, os.path.basename(entry))):
        if os.path.isfile(candidate):
            return candidate
    return None


# RTFM, XD-Violence and most public lists come as one train list and one test list
_LIST_HINT = (
    ". RTFM-style lists have separate train and test lists: if these are the test videos, set "
    "DATA.TEST_FEATURES to the test list"
)


class _ListSource:
    """RTFM layout: a list of per-video .npy files (or one file per crop, stacked on a crop
    axis)."""

    def __init__(self, path, names, root, crop):
        self.path = str(path)
        table = _parse_list(self.path)
        missing = [n for n in names if n not in table]
        if missing:
            raise _missing_error(
                missing, len(names), os.path.basename(self.path), list(table), _LIST_HINT
            )
        root = os.path.dirname(os.path.abspath(self.path)) if root is None else str(root)
        # per_crop: the video is listed one file per crop; those files are (n, D) and the crop
        # choice is
        # made by which files are read, so the crop applied to the file content is then -1 (none)
        self.files, self.per_crop, absent = {}, {}, []
        for name in names:
            entries = self._entries(name, table[name], crop)
            self.per_crop[name] = None not in table[name]
            self.files[name] = [_resolve(e, root) for e in entries]
            absent += [e for e, p in zip(entries, self.files[name]) if p is None]
        if absent:
            more = f" ... and {len(absent) - _SHOWN} more" if len(absent) > _SHOWN else ""
            raise NotFoundError(
                f"{len(absent)} feature files listed in {self.path} not found under root "
                f"'{root}': {absent[:_SHOWN]}{more}; pass root= the folder holding them"
            )

    def _entries(self, name, crops, crop):
        """Paths to read for one video: its one file, all its crop files (crop=-1) or crop file
        `crop`."""
        if None in crops:
            return [crops[None]]
        if sorted(crops) != list(range(len(crops))):
            raise InputError(
                f"{self.path}: video '{name}' lists crops {sorted(crops)}; expected"
                f" 0..{len(crops) - 1}"
            )
        if crop >= len(crops):
            raise InputError(
                f"{self.path}: crop={crop} but video '{name}' has {len(crops)} crop files; "
                f"use -1..{len(crops) - 1}"
            )
        return [crops[c] for c in range(len(crops))] if crop < 0 else [crops[crop]]

    def where(self, name):
        return f"video '{name}' ({self.files[name][0]}, listed in {self.path})"

    @staticmethod
    def _open(file):
        try:
            return np.load(file, mmap_mode="r", allow_pickle=False)
        # object arrays cannot be memory-mapped; non-.npy files fail to parse
        except Exception as e:
            raise InputError(f"cannot read {file} as a numeric .npy array: {e}") from e

    def shape(self, name, crop):
        """-> (n_clips, D) after crop handling; validates every file read for the video."""
        arrays = [self._open(f) for f in self.files[name]]
        for f, a in zip(self.files[name], arrays):
            _check_dtype(a.dtype, f"video '{name}' ({f})")
        if not self.per_crop[name]:
            return _clip_shape(arrays[0].shape, crop, self.where(name))
        shapes = sorted({a.shape for a in arrays})
        if len(shapes) != 1 or len(shapes[0]) != 2:
            raise InputError(
                f"{self.where(name)}: per-crop files must all have one shape (n_clips, D); "
                f"found {shapes}"
            )
        return _clip_shape(shapes[0], -1, self.where(name))

    def read(self, name, rows, crop):
        """rows: slice or sorted unique int array -> float32 (len(rows), D)."""
        # memmap: only these rows are read from disk
        parts = [self._open(f)[rows] for f in self.files[name]]
        if len(parts) > 1:
            return _reduce_crops(np.stack(parts, axis=1), -1)
        return _reduce_crops(parts[0], -1 if self.per_crop[name] else crop)

    def close(self):
        pass


def _txt_name(path):
    """'<dir>/Abuse028_x264_C.txt' -> 'Abuse028_x264' (Sultani's '_C' suffix, then canonical)."""
    base = os.path.basename(str(path).strip())
    if base.lower().endswith(".txt"):
        base = base[: -len(".txt")]
    return canonical_name(_TXT_SUFFIX.sub("", base))


def _txt_folder(folder):
    """Folder (searched recursively, e.g. Train/Abnormal, Test/) -> {video: [.txt paths]}."""
    table = {}
    for top, dirs, files in os.walk(folder):
        dirs.sort()
        for file in sorted(files):
            if file.lower().endswith(".txt") and not file.startswith("."):
                try:
                    name = _txt_name(file)
                except ValueError:
                    continue  # '.txt' or '_C.txt': no video name, not a feature file
                table.setdefault(name, []).append(os.path.join(top, file))
    return table


def _txt_list(path, root):
    """List file of .txt paths -> {video: [path as resolved, or the entry when not found]}."""
    table = {}
    root = os.path.dirname(os.path.abspath(path)) if root is None else str(root)
    with open(path) as f:
        for entry in (line.strip() for line in f):
            if entry:
                table.setdefault(_txt_name(entry), []).append(_resolve(entry, root) or entry)
    return table


def _bad_token(tokens):
    """-> (1-based position, token) of the first token that is not a number."""
    for j, token in enumerate(tokens, 1):
        try:
            float(token)
        except ValueError:
            return j, token
    return None, None


def _parse_txt(file, segments=SEGMENTS):
    """Sultani feature file -> float32 (segments, D): one row per non-empty line, D numbers each."""
    try:
        with open(file, encoding="ascii") as f:
            lines = [(i, line.split()) for i, line in enumerate(f, 1) if line.strip()]
    except UnicodeDecodeError:
        raise InputError(
            f"{file} is not a text file of numbers (a Sultani feature file holds {segments} lines "
            "of space-separated floats)"
        ) from None
    if len(lines) != segments:
        raise InputError(
            f"{file}: {len(lines)} rows of features, but a Sultani feature file has {segments}, "
            "one per segment (as Save_C3DFeatures_32Segments.m writes them): the file is "
            "truncated or of another format; download or export it again"
        )
    first, width = lines[0][0], len(lines[0][1])
    for line_no, tokens in lines:
        if len(tokens) != width:
            raise InputError(
                f"{file}:{line_no}: {len(tokens)} values, but line {first} has {width}: every row "
                "holds the D values of one segment (4096 for C3D fc6); the file is truncated or "
                "corrupt"
            )
    try:
        return np.array([t for _, tokens in lines for t in tokens], np.float32).reshape(
            segments, width
        )
    except ValueError:
        for line_no, tokens in lines:
            j, token = _bad_token(tokens)
            if token is not None:
                raise InputError(
                    f"{file}:{line_no}: value {j}, '{token}', is not a number; a Sultani feature "
                    f"file holds {segments} lines of space-separated numbers"
                ) from None
        raise


class _SultaniTxtSource:
    """Sultani et al.'s layout: a folder of '<video>_C.txt' files (or a list of their paths), each
    32 rows (segments) x D floats. Every file read is parsed once (all of it, so any error names
    the file at open time) and held until close: 32 x 4096 float32 = 512 KiB per video, 1 GB for
    all 1,900 UCF-Crime videos, also with lazy storage."""

    segments = SEGMENTS

    def __init__(self, path, names, root, crop):
        """root: the folder relative list entries resolve against (default: the list's folder);
        crop: these files have no crop axis, so only -1 is accepted (checked by shape)."""
        self.path = str(path)
        folder = os.path.isdir(self.path)
        table = _txt_folder(self.path) if folder else _txt_list(self.path, root)
        missing = [n for n in names if n not in table]
        if missing:
            raise _missing_error(missing, len(names), self.path, list(table))
        twice = next((n for n in names if len(table[n]) > 1), None)
        if twice is not None:
            raise InputError(
                f"{self.path}: video '{twice}' has {len(table[twice])} feature files "
                f"({table[twice][:2]}); keep one, or point to the folder of one split"
            )
        self.files = {n: table[n][0] for n in names}
        absent = [f for f in self.files.values() if not os.path.isfile(f)]
        if absent:
            more = f" ... and {len(absent) - _SHOWN} more" if len(absent) > _SHOWN else ""
            raise NotFoundError(
                f"{len(absent)} feature files listed in {self.path} not found: "
                f"{absent[:_SHOWN]}{more}; pass root= the folder holding them"
            )
        self._rows = {}

    def where(self, name):
        return f"video '{name}' ({self.files[name]})"

    def _parsed(self, name):
        if name not in self._rows:
            self._rows[name] = _parse_txt(self.files[name])
        return self._rows[name]

    def shape(self, name, crop):
        """-> (32, D); parses (and so validates) the whole file."""
        return _clip_shape(self._parsed(name).shape, crop, self.where(name))

    def read(self, name, rows, crop):
        """rows: slice or sorted unique int array -> float32 (len(rows), D), a copy."""
        return self._parsed(name)[rows].copy()

    def close(self):
        self._rows = {}


def segment_of_clips(num_clips, num_segments=SEGMENTS):
    """-> int64 (num_clips,): the segment whose score each 16-frame clip takes (module docstring):
    the last segment whose range [start, stop) of datasets.segments.segment_bounds holds the clip,
    as Sultani's evaluation overwrites; the last clip, in no range, takes the last segment."""
    start, _ = segment_bounds(num_clips, num_segments)
    # start is non-decreasing: the last segment starting at or before clip c also covers c
    return np.searchsorted(start, np.arange(num_clips), side="right") - 1


def segment_scores_to_clips(scores, num_clips):
    """scores: (S,) one per segment of a video of num_clips clips -> float (num_clips,) per clip."""
    scores = np.asarray(scores)
    if scores.ndim != 1 or len(scores) == 0:
        raise InputError(
            f"segment scores must be 1-D with one score per segment, got shape {scores.shape}"
        )
    return scores[segment_of_clips(num_clips, len(scores))]


def expand_segment_scores(segment_scores, n_frames, clip_len=16):
    """{video: (32,) segment scores}, {video: frame count} -> {video: (n_frames // clip_len,)
    clip scores}, ready for utils.evaluation.evaluate / expand_to_frames with clip_len. A video
    shorter than one clip keeps one clip."""
    out = {}
    for name, scores in segment_scores.items():
        if name not in n_frames:
            raise MissingKeyError(
                f"no frame count for video '{name}': its segment scores cannot be spread over its "
                "clips; pass the frame count of every scored video (the length of its GT)"
            )
        out[name] = segment_scores_to_clips(scores, max(1, int(n_frames[name]) // clip_len))
    return out
