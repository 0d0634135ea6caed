"""datasets/features.py: both public layouts, crops, L2 norm, the three storage modes and every
error."""

import json
import os
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

from datasets.features import STORAGES, canonical_name, open_features, write_h5_features

DATA = Path(__file__).resolve().parents[1] / "data"


def _random_features(lengths, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    return {
        f"{i:02d}_{i:04d}": rng.standard_normal((n, dim)).astype(np.float32)
        for i, n in enumerate(lengths)
    }


def _write_list(tmp_path, arrays, lines=None, suffix="_i3d.npy", name="feats.list"):
    """Save each array as <tmp>/<video><suffix> and list the basenames -> list path."""
    for video, array in arrays.items():
        np.save(tmp_path / f"{video}{suffix}", array)
    lines = [f"{v}{suffix}" for v in arrays] if lines is None else lines
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    return tmp_path / name


def _stored(x, storage):
    """What a store of `storage` returns for float32 data x."""
    return x.astype(np.float16).astype(np.float32) if storage == "float16" else x


@pytest.mark.parametrize("storage", STORAGES)
def test_h5_and_list_layouts_give_identical_arrays(tmp_path, storage):
    feats = _random_features([5, 1, 9])
    write_h5_features(tmp_path / "feats.h5", feats)
    listed = _write_list(tmp_path, feats)
    names = list(feats)[::-1]  # the store keeps the requested order, not the file's
    h5 = open_features(tmp_path / "feats.h5", names, storage=storage)
    rtfm = open_features(listed, names, storage=storage)
    assert h5.names == rtfm.names == names and h5.dim == rtfm.dim == 6
    for name in names:
        assert h5.get(name).dtype == np.float32
        np.testing.assert_array_equal(h5.get(name), _stored(feats[name], storage))
        np.testing.assert_array_equal(rtfm.get(name), h5.get(name))
        # copies, never memmap views
        assert rtfm.get(name).flags.writeable and h5.get(name).flags.writeable
    assert [h5.num_clips(n) for n in names] == [9, 1, 5]


def test_memory_bytes_per_storage(tmp_path):
    feats = _random_features([5, 1, 9])
    write_h5_features(tmp_path / "f.h5", feats)
    sizes = {
        s: open_features(tmp_path / "f.h5", list(feats), storage=s).memory_bytes() for s in STORAGES
    }
    assert sizes == {"memory": 15 * 6 * 4, "float16": 15 * 6 * 2, "lazy": 0}


def _crop_features(n=3, crops=4, dim=5):
    """value = 100 t + 10 c + d: the crop mean is exactly 100 t + 15 + d."""
    t, c, d = np.meshgrid(np.arange(n), np.arange(crops), np.arange(dim), indexing="ij")
    return (100 * t + 10 * c + d).astype(np.float32)


@pytest.mark.parametrize("storage", STORAGES)
def test_crops_averaged_or_chosen(tmp_path, storage):
    listed = _write_list(tmp_path, {"01_0014": _crop_features()})
    t, d = np.meshgrid(np.arange(3), np.arange(5), indexing="ij")
    mean = open_features(listed, ["01_0014"], storage=storage).get("01_0014")
    np.testing.assert_array_equal(mean, 100 * t + 15 + d)
    chosen = open_features(listed, ["01_0014"], storage=storage, crop=2).get("01_0014")
    np.testing.assert_array_equal(chosen, 100 * t + 20 + d)
    with pytest.raises(ValueError, match=r"crop=4 but the features have 4 crops"):
        open_features(listed, ["01_0014"], crop=4)


def test_crop_on_2d_features_is_an_error(tmp_path):
    write_h5_features(tmp_path / "f.h5", _random_features([4]))
    with pytest.raises(ValueError, match=r"no crop axis .*use crop=-1"):
        open_features(tmp_path / "f.h5", ["00_0000"], crop=0)
    with pytest.raises(ValueError, match=r"crop must be -1"):
        open_features(tmp_path / "f.h5", ["00_0000"], crop=-2)


@pytest.mark.parametrize("storage", STORAGES)
def test_xd_per_crop_files_are_grouped(tmp_path, storage):
    video = "Bad.Boys.1995__#00-26-51_00-27-53_label_B2-0-0"
    stacked = _crop_features(n=4, crops=5)
    other = np.arange(20, dtype=np.float32).reshape(4, 5)
    lines = []
    for c in range(5):
        np.save(tmp_path / f"{video}__{c}.npy", stacked[:, c])
        np.save(tmp_path / f"v2__{c}.npy", other + c)
        # absolute, not on this disk
        lines += [f"/features/xd/{video}__{c}.npy", f"/features/xd/v2__{c}.npy"]
    (tmp_path / "rgb.list").write_text("\n".join(lines))
    store = open_features(tmp_path / "rgb.list", [video, "v2"], storage=storage)
    np.testing.assert_array_equal(store.get(video), stacked.mean(axis=1))
    np.testing.assert_array_equal(store.get("v2"), other + 2)  # mean of +0..+4
    os.remove(tmp_path / f"{video}__0.npy")  # crop=3 reads only the crop-3 files
    np.testing.assert_array_equal(
        open_features(tmp_path / "rgb.list", [video], storage=storage, crop=3).get(video),
        stacked[:, 3],
    )


def test_per_crop_list_errors(tmp_path):
    for c in (0, 2):
        np.save(tmp_path / f"v__{c}.npy", np.ones((3, 4), np.float32))
    (tmp_path / "gap.list").write_text("v__0.npy\nv__2.npy\n")
    with pytest.raises(ValueError, match=r"video 'v' lists crops \[0, 2\]; expected 0..1"):
        open_features(tmp_path / "gap.list", ["v"])
    (tmp_path / "dup.list").write_text("v__0.npy\nv__0.npy\n")
    with pytest.raises(ValueError, match=r"dup.list:2: 'v__0.npy' repeats video 'v'"):
        open_features(tmp_path / "dup.list", ["v"])
    np.save(tmp_path / "w__1.npy", np.ones((2, 4), np.float32))
    np.save(tmp_path / "w__0.npy", np.ones((3, 4), np.float32))
    (tmp_path / "ragged.list").write_text("w__0.npy\nw__1.npy\n")
    with pytest.raises(ValueError, match=r"per-crop files must all have one shape"):
        open_features(tmp_path / "ragged.list", ["w"])


def test_relative_paths_resolve_against_root(tmp_path):
    feats = _random_features([3, 4])
    (tmp_path / "i3d").mkdir()
    for video, array in feats.items():
        np.save(tmp_path / "i3d" / f"{video}_i3d.npy", array)
    a, b = feats
    # relative to the list's folder
    (tmp_path / "rel.list").write_text(f"i3d/{a}_i3d.npy\ni3d/{b}_i3d.npy\n")
    np.testing.assert_array_equal(open_features(tmp_path / "rel.list", [b]).get(b), feats[b])
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "abs.list").write_text(f"/nonexistent/RTFM/{a}_i3d.npy\n{b}_i3d.npy\n")
    # <root>/<basename>
    store = open_features(tmp_path / "lists" / "abs.list", [a, b], root=tmp_path / "i3d")
    np.testing.assert_array_equal(store.get(a), feats[a])
    with pytest.raises(
        FileNotFoundError,
        match=r"1 feature files listed in .*abs.list not found under root .*lists",
    ):
        open_features(tmp_path / "lists" / "abs.list", [a])


@pytest.mark.parametrize("storage", STORAGES)
def test_l2_norm_exact_values_and_zero_row(tmp_path, storage):
    x = np.array([[3, 4, 0], [0, 0, 0], [0, 0, -2], [1e-30, 0, 0]], np.float32)
    expected = np.array([[0.6, 0.8, 0], [0, 0, 0], [0, 0, -1], [1e-18, 0, 0]], np.float32)
    if storage == "float16":
        expected = _stored(expected, storage)  # 1e-18 underflows to 0 in float16
    write_h5_features(tmp_path / "f.h5", {"v": x})
    store = open_features(tmp_path / "f.h5", ["v"], l2_norm=True, storage=storage)
    np.testing.assert_array_equal(store.get("v"), expected)
    np.testing.assert_array_equal(
        store.gather(["v"], [np.array([3, 1, 0])])[0], expected[[3, 1, 0]]
    )
    ((_, batch, _),) = store.iter_batches(["v"])
    np.testing.assert_array_equal(batch, expected)
    plain = open_features(tmp_path / "f.h5", ["v"], storage=storage)
    np.testing.assert_array_equal(plain.get("v"), _stored(x, storage))


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("l2_norm", [False, True])
@pytest.mark.parametrize("layout", ["h5", "list"])
def test_gather_equals_manual_indexing(tmp_path, storage, l2_norm, layout):
    feats = _random_features([12, 500, 1, 30], dim=4)
    write_h5_features(tmp_path / "f.h5", feats)
    path = tmp_path / "f.h5" if layout == "h5" else _write_list(tmp_path, feats)
    store = open_features(path, list(feats), l2_norm=l2_norm, storage=storage)
    a, b, c, d = feats
    names = [b, a, c, d, b]
    idx = [
        np.array([0, 499, 250, 0]),  # spread over a long video: lazy mode reads only these rows
        np.array([11, 0, 5, 5]),
        np.array([0, 0, 0, 0]),
        np.array([29, 28, 10, 12]),
        np.arange(7, 11),
    ]
    out = store.gather(names, idx)
    assert out.shape == (5, 4, 4) and out.dtype == np.float32
    for i, (name, ix) in enumerate(zip(names, idx)):
        rows = feats[name][ix]
        rows = rows / np.linalg.norm(rows, axis=1, keepdims=True) if l2_norm else rows
        np.testing.assert_allclose(out[i], _stored(rows, storage), rtol=1e-6, atol=0)
        np.testing.assert_array_equal(out[i], store.get(name)[ix])
    assert store.gather([a], [np.array([], np.int64)]).shape == (1, 0, 4)
    ragged = [np.array([499, 3]), np.array([], np.int64), np.array([0]), np.array([29, 0, 29])]
    # any lengths, concatenated (BagSampler's distinct clips)
    rows = store.gather_rows([b, a, c, d], ragged)
    np.testing.assert_array_equal(
        rows, np.concatenate([store.get(n)[ix] for n, ix in zip([b, a, c, d], ragged)])
    )
    with pytest.raises(
        IndexError,
        match=r"clip index 1 is out of range for video '.*' with 1 clips \(gather row 2\)",
    ):
        store.gather_rows([b, a, c], [np.array([0]), np.array([], np.int64), np.array([0, 1])])


def test_float16_within_fp16_rounding(tmp_path):
    feats = _random_features([50], dim=64)
    write_h5_features(tmp_path / "f.h5", feats)
    ((name, x),) = feats.items()
    half = open_features(tmp_path / "f.h5", [name], storage="float16").get(name)
    # round to nearest, 11-bit mantissa
    assert np.all(np.abs(half - x) <= np.abs(x) * 2.0**-11 + 2.0**-25)
    assert not np.array_equal(half, x)


@pytest.mark.parametrize("storage", STORAGES)
def test_iter_batches_covers_every_clip_once_in_order(tmp_path, storage):
    feats = _random_features([5, 3, 7, 2, 10, 1])
    write_h5_features(tmp_path / "f.h5", feats)
    store = open_features(tmp_path / "f.h5", list(feats), storage=storage)
    names = list(feats)[::-1]  # 1, 10, 2, 7, 3, 5 clips
    batches = list(store.iter_batches(names, max_rows=8))
    # 10 > max_rows comes alone
    assert [b[2].tolist() for b in batches] == [[1], [10], [2], [7], [3, 5]]
    assert [n for b in batches for n in b[0]] == names
    for video_names, rows, lengths in batches:
        assert rows.shape == (lengths.sum(), 6) and (rows.shape[0] <= 8 or len(video_names) == 1)
        np.testing.assert_array_equal(rows, np.concatenate([store.get(n) for n in video_names]))
    with pytest.raises(ValueError, match="max_rows must be >= 1"):
        next(store.iter_batches(names, max_rows=0))


def test_iter_batches_views_consecutive_videos_and_copies_the_rest(tmp_path):
    feats = _random_features([5, 3, 7, 2])
    write_h5_features(tmp_path / "f.h5", feats)
    store = open_features(tmp_path / "f.h5", list(feats))
    names = list(feats)
    ((_, rows, _),) = store.iter_batches(names)  # the split's order: a view of the store's array
    assert np.shares_memory(rows, store._data)
    np.testing.assert_array_equal(rows, np.concatenate([feats[n] for n in names]))
    ((_, rows, _),) = store.iter_batches([names[0], names[2]])  # a gap: a copy
    assert not np.shares_memory(rows, store._data)
    np.testing.assert_array_equal(rows, np.concatenate([feats[names[0]], feats[names[2]]]))


def test_missing_names_are_all_reported_with_near_miss(tmp_path):
    with h5py.File(tmp_path / "feats.h5", "w") as f:  # keys carry a feature suffix the names lack
        for key in ("01_0014_i3d.npy", "01_0015_i3d.npy", "01_0016.npy"):
            f[key] = np.ones((2, 3), np.float32)
    single = r"video '01_0014' has no features in feats.h5 \(keys look like '01_0014_i3d.npy'\?\)"
    with pytest.raises(KeyError, match=single):
        open_features(tmp_path / "feats.h5", ["01_0014"])
    names = [f"zz_{i}" for i in range(7)]
    several = (
        r"8 of 9 videos have no features in feats.h5: '01_0015' \(key '01_0015_i3d.npy'\?\), "
        r"'zz_0', 'zz_1', 'zz_2', 'zz_3' ... and 3 more; keys look like '01_0014_i3d.npy'"
    )
    with pytest.raises(KeyError, match=several):
        open_features(tmp_path / "feats.h5", ["01_0016", "01_0015"] + names)
    listed = _write_list(tmp_path, {"Abuse028_x264": np.ones((2, 3), np.float32)})
    with pytest.raises(
        KeyError,
        match=r"video 'Abuse/Abuse028_x264.mp4' has no features in feats.list "
        r"\(keys look like 'Abuse028_x264'\?\)",
    ):
        open_features(listed, ["Abuse/Abuse028_x264.mp4"])


def test_dimension_errors(tmp_path):
    write_h5_features(tmp_path / "f.h5", {"a": np.ones((2, 8)), "b": np.ones((3, 16))})
    with pytest.raises(
        ValueError,
        match=r"video 'a' \(key 'a.npy' in .*f.h5\): feature dimension 8 but expected 16 "
        r"\(1 of 2 videos differ\); set DATA.FEATURE_DIM",
    ):
        open_features(tmp_path / "f.h5", ["a", "b"], dim=16)
    with pytest.raises(
        ValueError, match=r"videos disagree on the feature dimension: .*'a'.* has D=8, .*'b'.* D=16"
    ):
        open_features(tmp_path / "f.h5", ["a", "b"])
    assert open_features(tmp_path / "f.h5", ["b"], dim=16).dim == 16


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_rejected(tmp_path, bad):
    x = np.ones((6, 4), np.float32)
    x[4, 1] = bad
    write_h5_features(tmp_path / "f.h5", {"ok": np.ones((3, 4)), "bad": x})
    for storage in ("memory", "float16"):  # checked once, at load
        with pytest.raises(
            ValueError,
            match=r"video 'bad' \(key 'bad.npy' in .*f.h5\): 1 clip\(s\) contain NaN/inf",
        ):
            open_features(tmp_path / "f.h5", ["ok", "bad"], storage=storage)
    lazy = open_features(tmp_path / "f.h5", ["ok", "bad"], storage="lazy")  # checked on every read
    np.testing.assert_array_equal(lazy.get("ok"), np.ones((3, 4)))
    np.testing.assert_array_equal(lazy.gather(["bad"], [np.array([0, 1])]), np.ones((1, 2, 4)))
    for read in (
        lambda: lazy.get("bad"),
        lambda: lazy.gather(["ok", "bad"], [np.array([0]), np.array([4])]),
        lambda: list(lazy.iter_batches()),
    ):
        with pytest.raises(ValueError, match=r"video 'bad' .*NaN/inf"):
            read()


def test_shape_and_dtype_errors(tmp_path):
    cases = {
        "empty": np.zeros((0, 4), np.float32),
        "flat": np.ones(4, np.float32),
        "4d": np.ones((2, 1, 1, 4), np.float32),
        "ints": np.ones((2, 4), np.int64),
    }
    listed = _write_list(tmp_path, cases)
    with pytest.raises(ValueError, match=r"video 'empty' .*: video has 0 clips"):
        open_features(listed, ["empty"])
    for name in ("flat", "4d"):
        with pytest.raises(
            ValueError, match=rf"video '{name}' .*expected \(n_clips, D\) or \(n_clips, crops, D\)"
        ):
            open_features(listed, [name])
    with pytest.raises(ValueError, match=r"video 'ints' .*dtype int64; expected a float array"):
        open_features(listed, ["ints"])
    # np.save pickles object arrays
    np.save(tmp_path / "obj_i3d.npy", np.array([None, 1], dtype=object))
    (tmp_path / "obj.list").write_text("obj_i3d.npy\n")
    with pytest.raises(ValueError, match=r"cannot read .*obj_i3d.npy as a numeric .npy array"):
        open_features(tmp_path / "obj.list", ["obj"])


def test_argument_and_file_errors(tmp_path):
    write_h5_features(tmp_path / "f.h5", {"a": np.ones((2, 3))})
    with pytest.raises(ValueError, match=r"no video names given to read from .*f.h5"):
        open_features(tmp_path / "f.h5", [])
    with pytest.raises(ValueError, match=r"video names repeat \(\['a'\], 1 in all\)"):
        open_features(tmp_path / "f.h5", ["a", "a"])
    with pytest.raises(ValueError, match=r"unknown feature storage 'mmap'"):
        open_features(tmp_path / "f.h5", ["a"], storage="mmap")
    with pytest.raises(FileNotFoundError, match=r"feature file .*nope.h5 does not exist"):
        open_features(tmp_path / "nope.h5", ["a"])
    (tmp_path / "broken.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match=r"broken.h5 is not a valid HDF5 file"):
        open_features(tmp_path / "broken.h5", ["a"])


@pytest.mark.parametrize("storage", STORAGES)
def test_gather_index_errors(tmp_path, storage):
    write_h5_features(tmp_path / "f.h5", {"a": np.ones((5, 3)), "b": np.ones((2, 3))})
    store = open_features(tmp_path / "f.h5", ["a", "b"], storage=storage)
    # in the concatenated array row 5 of 'a' would be row 0 of 'b': it must fail, not read the
    # neighbour
    with pytest.raises(
        IndexError,
        match=r"clip index 5 is out of range for video 'a' with 5 clips \(gather row 1\)",
    ):
        store.gather(["b", "a"], [np.array([0, 1]), np.array([4, 5])])
    with pytest.raises(IndexError, match=r"clip index -1 is out of range for video 'b'"):
        store.gather(["b"], [np.array([-1, 0])])
    with pytest.raises(
        ValueError, match=r"1-D index arrays of one length k; got shapes \[\(1,\), \(2,\)\]"
    ):
        store.gather(["a", "b"], [np.array([0]), np.array([0, 1])])
    with pytest.raises(KeyError, match=r"videos \['c'\] are not in this FeatureStore \(2 videos\)"):
        store.gather(["c"], [np.array([0])])
    with pytest.raises(TypeError, match=r"gather indices must be integers, got dtype float64"):
        store.gather(["a"], [np.array([0.0])])


def test_float16_overflow_and_closed_lazy_store(tmp_path):
    write_h5_features(tmp_path / "f.h5", {"big": np.full((2, 3), 1e5, np.float32)})
    with pytest.raises(ValueError, match=r"video 'big' .*beyond the float16 range.*l2_norm=True"):
        open_features(tmp_path / "f.h5", ["big"], storage="float16")
    np.testing.assert_allclose(
        open_features(tmp_path / "f.h5", ["big"], storage="float16", l2_norm=True).get("big"),
        np.full((2, 3), 3**-0.5),
        rtol=2**-11,
    )
    with open_features(tmp_path / "f.h5", ["big"], storage="lazy") as lazy:
        assert lazy.get("big")[0, 0] == 1e5
    with pytest.raises(RuntimeError, match=r"lazy FeatureStore was closed"):
        lazy.get("big")


def test_write_h5_features_official_layout(tmp_path):
    path = tmp_path / "feats.h5"
    write_h5_features(path, {"01_0014": np.arange(6, dtype=np.float64).reshape(3, 2)})
    with h5py.File(path, "r") as f:
        assert list(f.keys()) == ["01_0014.npy"] and f["01_0014.npy"].dtype == np.float32
        np.testing.assert_array_equal(f["01_0014.npy"][()], np.arange(6).reshape(3, 2))
    with pytest.raises(ValueError, match=r"'01_0015.npy' is not a canonical video name"):
        write_h5_features(path, {"01_0015": np.ones((1, 2)), "01_0015.npy": np.ones((1, 2))})
    # the failed write left no .tmp and kept the old file
    assert sorted(os.listdir(tmp_path)) == ["feats.h5"]
    with pytest.raises(ValueError, match=r"video 'v' has shape \(3,\); expected \(n_clips, D\)"):
        write_h5_features(tmp_path / "g.h5", {"v": np.ones(3)})


@pytest.mark.parametrize(
    "given, expected",
    [
        ("01_0014_i3d.npy", "01_0014"),
        ("01_0014.npy", "01_0014"),
        ("01_0014", "01_0014"),
        ("/feats/UCF/Abuse028_x264_i3d.npy", "Abuse028_x264"),
        ("Abuse/Abuse028_x264.mp4", "Abuse028_x264"),
        ("Normal_Videos_943_x264_C3D.npy", "Normal_Videos_943_x264"),
        ("v_i3d__3.npy", "v"),
        ("v__3_i3d.npy", "v"),
        (
            "Bad.Boys.1995__#00-26-51_00-27-53_label_B2-0-0__4.npy",
            "Bad.Boys.1995__#00-26-51_00-27-53_label_B2-0-0",
        ),
    ],
)
def test_canonical_name_cases(given, expected):
    assert canonical_name(given) == expected


def _lines(path):
    return [line.strip() for line in open(path) if line.strip()]


@pytest.mark.parametrize(
    "feature_list, split, column",
    [
        ("shanghaitech/rtfm/shanghai-i3d-train-10crop.list", "shanghaitech/SH_Train_new.txt", 238),
        ("shanghaitech/rtfm/shanghai-i3d-test-10crop.list", "shanghaitech/SH_Test_NEW.txt", 199),
        ("ucf_crime/rtfm/ucf-i3d.list", "ucf_crime/Anomaly_Train.txt", 1610),
        ("ucf_crime/rtfm/ucf-i3d-test.list", "ucf_crime/Temporal_Anomaly_Annotation_New.txt", 290),
    ],
)
def test_canonical_names_of_real_lists_match_the_splits(feature_list, split, column):
    listed = [canonical_name(b) for b in _lines(DATA / feature_list)]
    videos = [canonical_name(line.split(",")[0].split("\t")[0]) for line in _lines(DATA / split)]
    assert len(listed) == len(set(listed)) == column
    assert sorted(listed) == sorted(videos)


@pytest.mark.parametrize("feature_list, n_videos", [("rgb.list", 3954), ("rgb_test.list", 800)])
def test_canonical_names_of_xd_lists_group_five_crops(feature_list, n_videos):
    names = Counter(canonical_name(b) for b in _lines(DATA / "xd_violence" / feature_list))
    assert len(names) == n_videos and set(names.values()) == {5}
    if feature_list == "rgb_test.list":
        assert set(names) == set(json.load(open(DATA / "xd_violence" / "test_gt_intervals.json")))


@pytest.mark.parametrize("storage", STORAGES)
def test_h5_dataset_declaring_more_than_the_file_holds_is_refused(tmp_path, storage):
    # a never-written contiguous dataset reads as zeros of any declared size: a dense store would
    # allocate
    # 40 GB for this 2 KB file
    with h5py.File(tmp_path / "feats.h5", "w") as f:
        f.create_dataset("a.npy", data=np.ones((3, 6), np.float32))
        f.create_dataset("b.npy", shape=(10**9, 10), dtype=np.float32)
    assert os.path.getsize(tmp_path / "feats.h5") < 10_000
    with pytest.raises(
        ValueError,
        match=r"video 'b' .* declares shape \(1000000000, 10\) \(40000000000 bytes\) "
        r"but the file holds",
    ):
        open_features(tmp_path / "feats.h5", ["a", "b"], storage=storage)
    assert open_features(tmp_path / "feats.h5", ["a"], storage=storage).num_clips("a") == 3


def test_missing_names_hint_names_a_video_of_the_split_not_a_fixed_example(tmp_path):
    # UCF-Crime names: the hint once showed ShanghaiTech's '01_0014' whatever the dataset
    write_h5_features(tmp_path / "f.h5", {"Abuse028_x264": np.ones((2, 3), np.float32)})
    with pytest.raises(KeyError) as err:
        open_features(tmp_path / "f.h5", ["Abuse028_x264", "Arson/Arson011_x264.mp4"])
    assert str(err.value) == (
        "video 'Arson/Arson011_x264.mp4' has no features in f.h5 (keys look like "
        "'Abuse028_x264.npy'). Video names must be canonical, e.g. 'Arson011_x264' for "
        "'Arson/Arson011_x264.mp4' (see datasets.features.canonical_name)"
    )
    assert err.value.missing == ["Arson/Arson011_x264.mp4"]
    with pytest.raises(KeyError) as err:  # canonical names: nothing to say about their form
        open_features(tmp_path / "f.h5", ["Arson011_x264", "Burglary005_x264"])
    assert str(err.value) == (
        "2 of 2 videos have no features in f.h5: 'Arson011_x264', 'Burglary005_x264'; keys "
        "look like 'Abuse028_x264.npy'"
    )
    assert "01_0014" not in str(err.value)


def _rtfm_train_list(tmp_path):
    """A train list of RTFM style (2 videos) -> (path, train names, test names)."""
    train = {"01_0014": np.ones((2, 3), np.float32), "01_002": np.ones((3, 3), np.float32)}
    return _write_list(tmp_path, train, name="sht-train.list"), list(train), ["01_0015", "01_001"]


def test_a_train_list_read_for_the_test_videos_says_to_set_the_test_features(tmp_path):
    path, train, test = _rtfm_train_list(tmp_path)
    splits = {"train": train, "test": test}
    with pytest.raises(KeyError) as err:
        open_features(path, train + test, splits=splits)
    assert str(err.value) == (
        f"the test videos have no features in {path} (none of the 2 test videos, e.g. "
        "'01_0015', is in it; the other 2 are): RTFM-style lists have separate train and test "
        "lists — set DATA.TEST_FEATURES to the test list"
    )
    # the same list read for the train videos of another list
    with pytest.raises(KeyError) as err:
        open_features(path, test + train, splits={"train": test, "test": train})
    assert str(err.value) == (
        f"the train videos have no features in {path} (none of the 2 train videos, e.g. "
        "'01_0015', is in it; the other 2 are): RTFM-style lists have separate train and test "
        "lists — set DATA.FEATURES to the train list and DATA.TEST_FEATURES to the test list"
    )


def test_a_list_missing_videos_hints_at_the_separate_test_list_without_splits(tmp_path):
    path, train, test = _rtfm_train_list(tmp_path)
    with pytest.raises(KeyError) as err:
        open_features(path, train + test)
    assert str(err.value) == (
        "2 of 4 videos have no features in sht-train.list: '01_0015', '01_001'; keys look like "
        "'01_0014'. RTFM-style lists have separate train and test lists: if these are the test "
        "videos, set DATA.TEST_FEATURES to the test list"
    )
    # part of a split missing is not a whole split: the general message
    with pytest.raises(KeyError) as err:
        open_features(path, train + test[:1], splits={"train": train, "test": test})
    assert str(err.value).startswith("video '01_0015' has no features in sht-train.list")
