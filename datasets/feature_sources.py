"""Readers behind FeatureStore: the official h5 and RTFM-style list layouts, and canonical video
names."""

import os
import re

import h5py
import numpy as np
from utils.errors import InputError, MissingKeyError, NotFoundError

_EPS = 1e-12  # as torch.nn.functional.normalize: a zero row stays zero instead of 0/0 = NaN
_EXTENSIONS = (".npy", ".h5", ".hdf5", ".mp4", ".avi")
_CROP_SUFFIX = re.compile(r"__(\d+)$")
_FEATURE_SUFFIX = re.compile(r"_(?:i3d|c3d)$", re.IGNORECASE)
_SHOWN = 5  # missing names / files listed in an error message before "... and N more"


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


def _missing_error(missing, total, file, keys):
    """KeyError naming the missing videos (first few + count) and the near-miss key for each."""
    keys = list(keys)
    near = _near_misses(keys)
    like = f"keys look like '{keys[0]}'" if keys else "it lists no videos"
    fix = ". Video names must be canonical, e.g. '01_0014' (see datasets.features.canonical_name)"
    if len(missing) == 1:
        hint = near.get(canonical_name(missing[0]))
        return MissingKeyError(
            f"video '{missing[0]}' has no features in {file} ("
            + (f"keys look like '{hint}'?" if hint else like)
            + ")"
            + fix
        )
    shown = ", ".join(
        f"'{n}'" + (f" (key '{near[canonical_name(n)]}'?)" if canonical_name(n) in near else "")
        for n in missing[:_SHOWN]
    )
    more = f" ... and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
    return MissingKeyError(
        f"{len(missing)} of {total} videos have no features in {file}: {shown}{more}; {like}{fix}"
    )


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


def _l2_normalise(x):
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


class _ListSource:
    """RTFM layout: a list of per-video .npy files (or one file per crop, stacked on a crop
    axis)."""

    def __init__(self, path, names, root, crop):
        self.path = str(path)
        table = _parse_list(self.path)
        missing = [n for n in names if n not in table]
        if missing:
            raise _missing_error(missing, len(names), os.path.basename(self.path), list(table))
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
