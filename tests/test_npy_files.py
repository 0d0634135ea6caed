"""Untrusted .npy / .npz readers: no pickles, no allocation beyond what the file holds
(utils/npy_files.py)."""

import io
import zipfile

import numpy as np
import pytest

from datasets.ground_truth import load_mask
from utils.npy_files import MAX_ARRAY_BYTES, load_npy, load_npz
from utils.pseudo_labels import load_score_dict


def _header_only(shape, dtype="<f8"):
    """An .npy file of ~128 bytes whose header declares `shape` (a memory bomb if trusted)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue() + b"\x00" * 16


def test_npy_declaring_more_than_the_file_holds_is_refused_before_allocation(tmp_path):
    bomb = tmp_path / "01_0014.npy"
    bomb.write_bytes(_header_only((10**13,)))  # 80 TB declared by a 144-byte file
    with pytest.raises(
        ValueError,
        match=r"01_0014.npy' declares an array of shape \(10000000000000,\) .* "
        r"but the file holds 16 bytes",
    ):
        load_npy(bomb)
    with pytest.raises(ValueError, match="declares an array"):
        load_mask(bomb)
    ok = tmp_path / "mask.npy"
    np.save(ok, np.array([0, 1, 1], np.uint8))
    assert load_mask(ok).tolist() == [0, 1, 1]


def test_npy_pickles_are_refused_and_not_run(tmp_path):
    path = tmp_path / "obj.npy"  # an object-array header, as np.save writes it for a pickled array
    path.write_bytes(_header_only((1,), dtype="|O") + b"\x80\x04N.")
    with pytest.raises(ValueError, match="holds Python objects"):
        load_npy(path)


def test_npz_members_are_bounded_before_inflating(tmp_path, monkeypatch):
    path = tmp_path / "scores.npz"
    with zipfile.ZipFile(path, "w") as z:  # a stored member whose header lies about its size
        z.writestr("01_0014.npy", _header_only((10**12,)))
    with pytest.raises(
        ValueError, match=r"member '01_0014.npy' declares an array of shape \(1000000000000,\)"
    ):
        load_score_dict(path)
    assert MAX_ARRAY_BYTES == 1 << 30
    from utils import npy_files

    # the bound scaled down: the test stays fast
    monkeypatch.setattr(npy_files, "MAX_ARRAY_BYTES", 1 << 20)
    big = tmp_path / "big.npz"  # honest but huge once inflated: zeros deflate ~1000:1
    np.savez_compressed(big, v=np.zeros((1 << 17) + 1))
    assert big.stat().st_size < 4096
    with pytest.raises(ValueError, match=f"at most {1 << 20} bytes per array"):
        load_npz(big)
    good = tmp_path / "good.npz"
    np.savez(good, a=np.arange(3.0))
    assert load_score_dict(good)["a"].tolist() == [0.0, 1.0, 2.0]
