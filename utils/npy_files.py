"""Untrusted .npy / .npz files (masks, scores, pseudo-labels) read without unpickling and within
bounds.

np.load(allow_pickle=False) runs no code, but it allocates whatever shape a header declares: a
100-byte .npy may ask for terabytes, and a small .npz may inflate (deflate) to gigabytes. Here every
array's header is read first and refused, with the file and the numbers, when its data would exceed
what the file holds (.npy, .npz stored members) or MAX_ARRAY_BYTES (any member: a frame mask of a
24-hour video at 30 fps is 2.6 MB; the bound leaves room for any real score, mask or label file).
"""

import zipfile

import numpy as np

from utils.errors import InputError

MAX_ARRAY_BYTES = 1 << 30  # 1 GiB per array


def _declared(fp, where):
    """-> (shape, dtype, data bytes) from an .npy header at fp's position; refuses object arrays."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
        if read is None:
            raise ValueError(f".npy format version {version} (np.save writes 1.0 or 2.0)")
        shape, _, dtype = read(fp)
    except ValueError as err:
        raise InputError(f"{where} is not a .npy array ({err}); save it with np.save") from None
    if dtype.hasobject:
        raise InputError(
            f"{where} holds Python objects (a pickle), which are never loaded: save a numeric array"
            " with np.save"
        )
    return shape, dtype, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def _check_size(where, shape, nbytes, available):
    if nbytes > MAX_ARRAY_BYTES or (available is not None and nbytes > available):
        held = (
            f" but the file holds {available} bytes"
            if available is not None and nbytes > available
            else ""
        )
        raise InputError(
            f"{where} declares an array of shape {shape} ({nbytes} bytes){held}; refused (at most "
            f"{MAX_ARRAY_BYTES} bytes per array): the file is corrupt or not what it claims to be"
        )


def load_npy(path):
    """-> the array of an untrusted .npy file, its declared size checked against the file's size
    first."""
    with open(path, "rb") as fp:
        shape, _, nbytes = _declared(fp, f"'{path}'")
        header_end = fp.tell()
        available = fp.seek(0, 2) - header_end
    _check_size(f"'{path}'", shape, nbytes, available)
    return np.load(path, allow_pickle=False)


def load_npz(path):
    """-> {key: array} of an untrusted .npz, each member's declared size checked before it is
    inflated."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise InputError(
            f"'{path}' is not an .npz archive ({err}); save it with np.savez"
        ) from None
    with archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                raise InputError(
                    f"'{path}' member {info.filename!r} is not a .npy array; save the file with"
                    " np.savez"
                )
            where = f"'{path}' member {info.filename!r}"
            with archive.open(info) as fp:
                shape, _, nbytes = _declared(fp, where)
            # the inflated size the archive itself declares
            _check_size(where, shape, nbytes, info.file_size)
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
