"""The one legacy-format reader: the official pickled pseudo-label `.npy` files.

The official code (docs/REFERENCE.md §1.7, §5) saves `{'<video>.npy': float64[n_clips]}` as a
pickled 0-d object array. Plain `np.load` would have to enable pickle loading, which executes
arbitrary code from the file. Instead the pickle stream is read by an unpickler that can only build
numpy arrays and dtypes, and the result is accepted only if it is a dict of names to 1-D numeric
arrays. An array may not declare more bytes than the file holds: the data of a real array is in the
file, so a larger declared shape can only be a memory bomb (a 1 KB file asking for TiBs), refused
before anything is allocated."""

import importlib
import os
import pickle

import numpy as np
from utils.errors import InputError

_MULTIARRAY = importlib.import_module(
    "numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray"
)
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _MULTIARRAY._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _MULTIARRAY._reconstruct,
    ("numpy.core.multiarray", "scalar"): _MULTIARRAY.scalar,
    ("numpy._core.multiarray", "scalar"): _MULTIARRAY.scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Builds numpy arrays and dtypes only, none larger than `max_bytes`."""

    def __init__(self, file, max_bytes):
        super().__init__(file)
        self.max_bytes = max_bytes

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only numpy arrays are allowed"
            )
        if name == "_reconstruct":
            return self._bounded_reconstruct
        return _ALLOWED[(module, name)]

    def _bounded_reconstruct(self, subtype, shape, dtype):
        """numpy's _reconstruct, refusing a shape x itemsize over max_bytes before allocating it."""
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        if not all(isinstance(d, int) and d >= 0 for d in dims):
            raise pickle.UnpicklingError(f"array shape {shape!r} is not a tuple of sizes")
        nbytes = np.dtype(dtype).itemsize * int(np.prod(dims, dtype=object))
        if nbytes > self.max_bytes:
            raise pickle.UnpicklingError(
                f"an array declares {nbytes:,} bytes, more than the file's "
                f"{self.max_bytes:,}: a crafted file, refused"
            )
        return _MULTIARRAY._reconstruct(subtype, shape, dtype)


def read_pickled_dict(path):
    """Official pickled `.npy` dict -> {str: float64 (n,)}; raises ValueError on anything else."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(f)
        if dtype != np.dtype(object) or shape != ():
            raise InputError(
                f"{path}: expected a pickled dict (0-d object array), found {dtype} {shape}"
            )
        try:
            obj = _ArrayOnlyUnpickler(f, max_bytes=os.path.getsize(path)).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError) as err:
            raise InputError(
                f"{path}: not a pseudo-label dict in the official format ({err})"
            ) from err
    value = obj.item() if isinstance(obj, np.ndarray) and obj.shape == () else obj
    return _checked_dict(value, path)


def _checked_dict(value, path):
    if not isinstance(value, dict):
        raise InputError(
            f"{path}: expected a dict of video -> scores, found {type(value).__name__}"
        )
    out = {}
    for key, arr in value.items():
        arr = np.asarray(arr)
        if not isinstance(key, str) or arr.dtype.kind not in "fiu" or arr.ndim > 1:
            raise InputError(
                f"{path}: entry {key!r} is not a 1-D numeric array (found {arr.dtype} {arr.shape})"
            )
        out[key] = np.atleast_1d(arr).astype(np.float64)
    return out
