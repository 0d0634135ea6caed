"""Pre-extracted clip features, read compactly from the public layouts (docs/REFERENCE.md §1.1).

Layouts (detected by content, `_layout`):
  official MIST h5   one file, dataset '<video>.npy' per video, float (n_clips, D); train and test
                     together.
  RTFM-style list    a .list/.txt file, one path per line to a per-video .npy of shape (n_clips,
                     crops, D) or (n_clips, D); basenames like '01_0014_i3d.npy'. XD-Violence lists
                     one file per crop ('<video>__0.npy' ... '__4.npy'); those are stacked on a crop
                     axis. crop=-1 averages the crops, crop=k keeps crop k.
  Sultani .txt       a folder (searched recursively) of Sultani et al.'s '<video>_C.txt' files, or a
                     list of their paths: 32 lines (segments) of D = 4096 C3D fc6 floats each. A
                     video's rows are its 32 segments, not clips (`FeatureStore.segments` = 32);
                     datasets/feature_sources.py says which frames each segment covers.
Video names are canonical: no directory, no extension, no '_i3d'/'_c3d' and no '__k' suffix
(`canonical_name`).

Storage modes and what they cost (UCF-Crime C3D in one h5: 1,610 train + 290 test videos = 859,635
clips x 4096 = 14.1 GB (13.1 GiB) as float32; the 790,271 train clips alone are 12.9 GB):
  "memory"   one float32 array + row offsets: 14.1 GB of RAM. Fastest gather (one fancy index).
  "float16"  the same array in float16: 7.0 GB. L2 norm is applied in float32 before the cast; rows
             are converted back to float32 per batch (relative error <= 2**-11).
  "lazy"     no features held (memory_bytes() == 0): each gather reads the rows it needs from the h5
             or from np.load(mmap_mode='r'). A 40+40 x 224-clip C3D batch is 80 x 224 x 4096 x 4 B =
             294 MB of output plus one transient read per video, so stage 1 on UCF C3D runs within a
             few GB. Lazy mode keeps the h5 file open: use it with DataLoader(num_workers=0).
`benchmarks/feature_memory.py` measures peak RSS and gather time of each mode. L2 normalisation
(l2_norm=True) is applied identically by get/gather/iter_batches, so training, evaluation and
pseudo-labels see the same features (the official code normalised only at test time, §6.22)."""

import logging
import os
import re
from collections import Counter

import h5py
import numpy as np

from datasets.feature_sources import (  # noqa: F401  canonical_name is public API
    _H5Source,
    _ListSource,
    _SultaniTxtSource,
    _check_finite,
    l2_normalise,
    canonical_name,
)
from utils.errors import InputError, MissingKeyError, NotFoundError, OutOfRangeError

logger = logging.getLogger("mist.features")

# DATA.STORAGE -> dtype of the features held in RAM (None: held nowhere, read from disk per batch)
STORAGES = {"memory": np.float32, "float16": np.float16, "lazy": None}
# layout -> reader class (datasets/feature_sources.py), picked from the file's content by _layout
LAYOUTS = {"h5": _H5Source, "list": _ListSource, "sultani_txt": _SultaniTxtSource}
# lazy gather: when a video's index span exceeds 4 x the rows wanted, read only those rows
_SPARSE_READ = 4
_SHOWN = 5  # missing names / files listed in an error message before "... and N more"
# a number as '%f' / '%e' write it: the first token of a Sultani feature file
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class FeatureStore:
    """Features of a fixed list of videos, held or read as `storage` says (see the module
    docstring).

    dim: D after crop handling; names: the videos held, in the order requested; segments: None
    when a row is a 16-frame clip, 32 when each video's rows are its 32 Sultani segments (the .txt
    layout). Every method returns fresh float32 arrays (callers may modify them), L2-normalised when
    the store was opened with l2_norm."""

    def __init__(self, source, names, lengths, dim, l2_norm=False, storage="memory", crop=-1):
        self.names, self.dim, self.storage = list(names), int(dim), storage
        self._source, self._l2, self._crop = source, bool(l2_norm), crop
        self.segments = getattr(source, "segments", None)
        self._lengths = np.asarray(lengths, dtype=np.int64)
        # video i = rows offsets[i]:offsets[i+1]
        self._offsets = np.concatenate([[0], np.cumsum(self._lengths)])
        self._index = {name: i for i, name in enumerate(self.names)}
        self._data = None
        if STORAGES[storage] is not None:
            try:
                self._data = self._load_all(STORAGES[storage])
            finally:
                self.close()

    def _load_all(self, dtype):
        """-> (total_clips, D) `dtype`: each video read once, checked and normalised in float32,
        then cast."""
        data = np.empty((int(self._offsets[-1]), self.dim), dtype=dtype)
        for name, a, b in zip(self.names, self._offsets[:-1], self._offsets[1:]):
            with np.errstate(over="ignore"):  # float16 overflow becomes inf, caught just below
                data[a:b] = self._finish(self._read(name, slice(None)))
            if dtype == np.float16 and not np.isfinite(data[a:b].sum(dtype=np.float64)):
                raise InputError(
                    f"{self._source.where(name)}: values beyond the float16 range (65504); "
                    "use storage='memory' or l2_norm=True"
                )
        return data

    def _read(self, name, rows):
        """rows: slice or sorted unique ints -> float32 (n, D) read from the source,
        NaN/inf-checked."""
        if self._source is None:
            raise RuntimeError(
                f"this lazy FeatureStore was closed; reopen it with open_features to read '{name}'"
            )
        x = self._source.read(name, rows, self._crop)
        _check_finite(x, self._source.where(name))
        return x

    def _finish(self, x):
        return l2_normalise(x) if self._l2 else x

    def _vids(self, names):
        """names -> int64 positions in self.names; unknown names raise KeyError."""
        missing = [n for n in names if n not in self._index]
        if missing:
            more = f" ... and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
            raise MissingKeyError(
                f"videos {missing[:_SHOWN]}{more} are not in this FeatureStore ({len(self.names)} "
                "videos); add them to the names passed to open_features"
            )
        return np.array([self._index[n] for n in names], dtype=np.int64)

    def __len__(self):
        return len(self.names)

    def __contains__(self, name):
        return name in self._index

    def num_clips(self, name):
        return int(self._lengths[self._vids([name])[0]])

    def get(self, name):
        """-> float32 (n_clips, D), every clip of one video."""
        i = self._vids([name])[0]
        if self._data is not None:
            return self._data[self._offsets[i] : self._offsets[i + 1]].astype(np.float32)
        return self._finish(self._read(name, slice(None)))

    def gather(self, names, idx):
        """names: B videos; idx: B int arrays of one length k -> float32 (B, k, D), rows idx[i] of
        names[i]."""
        idx = [np.asarray(i) for i in idx]
        if len({i.shape for i in idx}) > 1 or any(i.ndim != 1 for i in idx):
            shapes = sorted({i.shape for i in idx})
            raise InputError(f"gather needs 1-D index arrays of one length k; got shapes {shapes}")
        return self.gather_rows(names, idx).reshape(len(names), len(idx[0]) if idx else 0, self.dim)

    def gather_rows(self, names, idx):
        """names: B videos; idx: B 1-D int arrays of any lengths -> float32 (sum of lengths, D):
        rows idx[0] of names[0], then rows idx[1] of names[1], ... (memory storage: one fancy index,
        one copy)."""
        vids, flat, lengths = self._check_index(names, idx)
        if self._data is not None:
            return self._data[np.repeat(self._offsets[vids], lengths) + flat].astype(
                np.float32, copy=False
            )
        out = np.empty((len(flat), self.dim), dtype=np.float32)
        ends = np.cumsum(lengths)
        for name, a, b in zip(names, ends - lengths, ends):
            if b > a:
                out[a:b] = self._read_rows(name, flat[a:b])
        return out

    def _check_index(self, names, idx):
        """-> (vids (B,), concatenated idx int64, lengths (B,)); non-integer or out-of-range indices
        raise."""
        if len(names) != len(idx):
            raise InputError(f"gather got {len(names)} names but {len(idx)} index arrays")
        vids = self._vids(names)
        idx = [np.asarray(i) for i in idx]
        if any(i.ndim != 1 for i in idx):
            raise InputError(
                f"gather needs 1-D index arrays; got shapes {sorted({i.shape for i in idx})}"
            )
        flat = np.concatenate(idx) if idx else np.empty(0, np.int64)
        if flat.size and not np.issubdtype(flat.dtype, np.integer):
            raise TypeError(f"gather indices must be integers, got dtype {flat.dtype}")
        flat = flat.astype(np.int64, copy=False)
        lengths = np.array([len(i) for i in idx], dtype=np.int64)
        owner = np.repeat(np.arange(len(idx)), lengths)
        limit = self._lengths[vids][owner]
        bad = np.flatnonzero((flat < 0) | (flat >= limit))
        # a row past a video's end would silently read the next video in the concatenated array
        if bad.size:
            i = owner[bad[0]]
            raise OutOfRangeError(
                f"clip index {flat[bad[0]]} is out of range for video '{names[i]}' with "
                f"{self._lengths[vids[i]]} clips (gather row {i}); indices must lie in [0, n_clips)"
            )
        return vids, flat, lengths

    def _read_rows(self, name, ix):
        """Lazy gather of one video: ix (k,) -> float32 (k, D)."""
        lo, hi = int(ix.min()), int(ix.max()) + 1
        if hi - lo <= _SPARSE_READ * ix.size:
            return self._finish(self._read(name, slice(lo, hi))[ix - lo])
        # a few rows spread over a long video (UCF has a 61,031-clip one): read only those rows
        uniq, inverse = np.unique(ix, return_inverse=True)
        return self._finish(self._read(name, uniq)[inverse])

    def iter_batches(self, names=None, max_rows=65536):
        """Yield (video names, float32 (rows, D), lengths int64 (n_videos,)) covering every clip of
        `names` (default: all) once, in order, at most max_rows rows per batch; a longer video comes
        alone."""
        if max_rows < 1:
            raise InputError(f"max_rows must be >= 1, got {max_rows}")
        names = self.names if names is None else list(names)
        vids = self._vids(names)
        lengths = self._lengths[vids]
        start = 0
        for stop in _batch_ends(lengths, max_rows):
            yield (
                names[start:stop],
                self._concat(names[start:stop], vids[start:stop]),
                lengths[start:stop].copy(),
            )
            start = stop

    def _concat(self, names, vids):
        """-> float32 (sum of lengths, D): every clip of the videos, concatenated. When the videos
        lie one after another in the memory array, as a split's videos do, this is a view of it (no
        copy): do not write to it."""
        if self._data is not None and self._data.dtype == np.float32 and np.all(np.diff(vids) == 1):
            return self._data[self._offsets[vids[0]] : self._offsets[vids[-1] + 1]]
        if self._data is not None:  # one copy; float16 is converted on the way
            parts = [self._data[self._offsets[v] : self._offsets[v + 1]] for v in vids]
            return np.concatenate(parts, dtype=np.float32)
        ends = np.cumsum(self._lengths[vids])
        out = np.empty((int(ends[-1]), self.dim), dtype=np.float32)
        # read straight into the batch
        for name, a, b in zip(names, ends - self._lengths[vids], ends):
            out[a:b] = self.get(name)
        return out

    def memory_bytes(self):
        """Bytes of feature data held in RAM (0 in lazy mode)."""
        return 0 if self._data is None else int(self._data.nbytes)

    def close(self):
        """Release the source file (lazy mode holds the h5 open); memory modes close it after
        loading."""
        if self._source is not None:
            self._source.close()
            self._source = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (
            f"FeatureStore({len(self.names)} videos, {int(self._offsets[-1])} clips, D={self.dim}, "
            f"storage={self.storage!r}, l2_norm={self._l2}, {self.memory_bytes() / 2**20:.1f} MiB)"
        )


def _batch_ends(lengths, max_rows):
    """Greedy batch boundaries: exclusive end indices so each batch sums to <= max_rows (or is one
    video)."""
    ends, rows = [], 0
    for i, n in enumerate(lengths):
        if rows and rows + n > max_rows:
            ends.append(i)
            rows = 0
        rows += n
    return ends + [len(lengths)] if len(lengths) else []


def _check_args(path, names, storage, crop):
    """Validate open_features arguments -> names as a list of str."""
    if storage not in STORAGES:
        raise InputError(f"unknown feature storage {storage!r}; use one of {tuple(STORAGES)}")
    if isinstance(crop, bool) or not isinstance(crop, (int, np.integer)) or crop < -1:
        raise InputError(f"crop must be -1 (average the crops) or a crop index >= 0, got {crop!r}")
    names = list(names)
    if not names:
        raise InputError(f"no video names given to read from {path}; check the split file")
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise InputError(f"video names must be non-empty strings; got {bad[:_SHOWN]}")
    if len(set(names)) != len(names):
        dup = sorted(n for n, c in Counter(names).items() if c > 1)
        raise InputError(
            f"video names repeat ({dup[:_SHOWN]}, {len(dup)} in all); request each video once"
        )
    if not os.path.exists(path):
        raise NotFoundError(
            f"feature file {path} does not exist (an .h5 file, a .list of .npy paths, or a folder "
            "of Sultani .txt files)"
        )
    return names


def _first_entry(path):
    """-> the first non-empty line of a text file, stripped ('' when there is none)."""
    with open(path, errors="replace") as f:
        for line in f:
            if line.strip():
                return line.strip()
    return ""


def _is_number(token):
    """'0.012345', '-1e-05' -> True; '01_0014' (which float() reads as 10014) -> False."""
    return _NUMBER.fullmatch(token) is not None


def _layout(path):
    """-> the LAYOUTS key of a feature path, from its content: a folder -> "sultani_txt", HDF5 ->
    "h5", a list of .txt paths -> "sultani_txt", any other text -> "list"."""
    if os.path.isdir(path):
        return "sultani_txt"
    if h5py.is_hdf5(path):
        return "h5"
    if str(path).lower().endswith((".h5", ".hdf5")):
        raise InputError(f"{path} is not a valid HDF5 file (truncated download?)")
    if str(path).lower().endswith(".npy"):
        raise InputError(
            f"{path} is a single .npy; pass a list file (.list/.txt) with one .npy path per video"
        )
    entry = _first_entry(path)
    if _is_number(entry.split()[0] if entry else ""):
        raise InputError(
            f"{path} holds numbers, not paths: it looks like one video's Sultani feature file; "
            "pass the folder holding them (or a list of their paths)"
        )
    return "sultani_txt" if entry.lower().endswith(".txt") else "list"


def _open_source(path, names, root, crop, splits=None):
    """The reader of the file's layout over `names`; a whole split missing says so
    (_split_error)."""
    try:
        return LAYOUTS[_layout(path)](path, names, root, crop)
    except MissingKeyError as err:
        missing = list(getattr(err, "missing", ()))
        whole = [
            s for s, members in (splits or {}).items() if members and set(members) == set(missing)
        ]
        if not whole:
            raise
        raise _split_error(path, whole[0], missing, len(names)) from None


# the fix when one split has no features in the file: public lists come one per split
_SPLIT_FIX = {
    "test": "set DATA.TEST_FEATURES to the test list",
    "train": "set DATA.FEATURES to the train list and DATA.TEST_FEATURES to the test list",
}


def _split_error(path, split, missing, total):
    """MissingKeyError: every video of `split` (and only those) is absent from the feature file."""
    fix = _SPLIT_FIX.get(split, f"point to the feature file of the {split} videos")
    return MissingKeyError(
        f"the {split} videos have no features in {path} (none of the {len(missing)} {split} "
        f"videos, e.g. '{missing[0]}', is in it; the other {total - len(missing)} are): "
        f"RTFM-style lists have separate train and test lists — {fix}"
    )


def _lengths_and_dim(source, names, dim, crop, path):
    """-> (n_clips per video, D); every video must have D == dim (or, with dim None, the same D)."""
    shapes = np.array([source.shape(n, crop) for n in names], dtype=np.int64)
    expected = int(shapes[0, 1]) if dim is None else int(dim)
    bad = np.flatnonzero(shapes[:, 1] != expected)
    if bad.size and dim is None:
        raise InputError(
            f"{path}: videos disagree on the feature dimension: {source.where(names[0])} has "
            f"D={expected}, {source.where(names[bad[0]])} has D={shapes[bad[0], 1]}"
        )
    if bad.size:
        raise InputError(
            f"{source.where(names[bad[0]])}: feature dimension {shapes[bad[0], 1]} but expected"
            f" {dim} ({bad.size} of {len(names)} videos differ); set DATA.FEATURE_DIM to the file's"
            " dimension or point to the matching feature file"
        )
    return shapes[:, 0], expected


def open_features(
    path, names, dim=None, l2_norm=False, storage="memory", crop=-1, root=None, splits=None
):
    """Open the features of `names` (canonical video names, from the split files) -> FeatureStore.

    path: official-layout .h5, RTFM list file, or a folder / list of Sultani .txt files; dim:
    expected D (None: from the data); l2_norm: divide each clip by its L2 norm; storage: 'memory' |
    'float16' | 'lazy'; crop: -1 averages crops, k keeps crop k; root: folder that relative list
    paths resolve against (default: the list file's folder); splits: {split name ('train',
    'test'): its video names}, used only to say so when exactly one split's videos are missing."""
    names = _check_args(path, names, storage, crop)
    source = _open_source(path, names, root, crop, splits)
    try:
        lengths, dim = _lengths_and_dim(source, names, dim, crop, path)
        store = FeatureStore(source, names, lengths, dim, l2_norm, storage, crop)
    except BaseException:
        source.close()
        raise
    logger.info("features %s: %s", path, store)
    return store


def _canonical_hint(name):
    """'01_0014_i3d.npy' -> "e.g. '01_0014'": the canonical form of the name given, if any."""
    try:
        return f"e.g. '{canonical_name(name)}'"
    except (ValueError, TypeError):
        return "no folder, extension, '_i3d' / '_c3d' or '__k' suffix"


def write_h5_features(path, features):
    """features: {video: float array (n_clips, D)} (any Mapping) -> official-layout h5 at `path`:
    keys '<video>.npy', float32. Written to path + '.tmp' and renamed, so a crash never leaves half
    a file."""
    path = str(path)
    tmp = path + ".tmp"
    try:
        with h5py.File(tmp, "w") as f:
            for name, array in features.items():
                if (
                    not isinstance(name, str)
                    or not name
                    or "/" in name
                    or canonical_name(name) != name
                ):
                    raise InputError(
                        f"write_h5_features: {name!r} is not a canonical video name "
                        f"({_canonical_hint(name)}); the '.npy' key suffix is added here"
                    )
                array = np.asarray(array, dtype=np.float32)
                if array.ndim not in (2, 3):
                    raise InputError(
                        f"write_h5_features: video '{name}' has shape {array.shape}; "
                        "expected (n_clips, D)"
                    )
                f.create_dataset(f"{name}.npy", data=array)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
