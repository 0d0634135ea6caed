"""Hand-computed cases for sampling, the MIL loss and pseudo-label files."""

import numpy as np
import pytest
import torch

from datasets.sampling import sparse_continuous_sample
from models.losses import mil_ranking_loss
from utils.legacy import read_pickled_dict
from utils.pseudo_labels import load_score_dict, refine_scores, save_pseudo_labels


def test_short_video_repeats_clips_instead_of_crashing():
    idx = sparse_continuous_sample(3, 32, 7, "uniform", np.random.default_rng(0))
    np.testing.assert_array_equal(idx[:7], [0, 0, 0, 1, 1, 2, 2])
    assert idx.shape == (224,) and set(idx) == {0, 1, 2}
    np.testing.assert_array_equal(
        sparse_continuous_sample(1, 2, 3, "random", np.random.default_rng(0)), [0] * 6
    )
    with pytest.raises(ValueError, match="0 clips"):
        sparse_continuous_sample(0, 32, 7, "uniform", np.random.default_rng(0))


def test_uniform_shift_is_shared_and_bounded():
    num_clips, part_num, part_len = 400, 32, 7
    base = (np.linspace(0, num_clips - part_len, 33, dtype=int)[:32, None] + np.arange(7)).reshape(
        -1
    )
    moves = set()
    for seed in range(50):
        idx = sparse_continuous_sample(
            num_clips, part_num, part_len, "uniform", np.random.default_rng(seed)
        )
        diff = idx - base
        assert (diff == diff[0]).all()  # one shift for all sub-bags
        moves.add(int(diff[0]))
    assert moves <= set(range((num_clips - part_len) // 33)) and len(moves) > 3


def test_random_mode_shifts_each_sub_bag_within_its_gap():
    num_clips, part_len = 400, 7
    starts = np.linspace(0, num_clips - part_len, 33, dtype=int)[:32]
    gap = (num_clips - part_len) // 32
    idx = sparse_continuous_sample(
        num_clips, 32, part_len, "random", np.random.default_rng(1)
    ).reshape(32, 7)
    shifts = idx[:, 0] - starts
    assert ((shifts >= 0) & (shifts < gap)).all() and len(set(shifts)) > 1
    # still continuous
    np.testing.assert_array_equal(idx - idx[:, :1], np.tile(np.arange(7), (32, 1)))
    assert idx.max() < num_clips


def test_isolated_mode_spreads_distinct_clips():
    idx = sparse_continuous_sample(1000, 32, 7, "isolated", np.random.default_rng(0))
    assert len(np.unique(idx)) == 224 and idx.min() >= 0 and idx.max() < 1000
    assert np.all(np.diff(idx) >= 4)  # evenly spread: 1000/224 clips apart


def test_subbag_mean_bag_score_is_max_of_sub_bag_means():
    normal = torch.tensor([[0.1, 0.2, 0.3, 0.2]])  # sub-bags of 2: means 0.15, 0.25 -> 0.25
    abnormal = torch.tensor([[0.9, 0.7, 0.0, 0.2]])  # means 0.8, 0.1 -> 0.8
    loss, parts = mil_ranking_loss(
        normal,
        abnormal,
        topk=1,
        lambda_sparse=0.01,
        lambda_smooth=0.0,
        bag_score="subbag_mean",
        part_len=2,
    )
    assert parts["rank"].item() == pytest.approx(1 - 0.8 + 0.25)
    assert parts["sparse"].item() == pytest.approx(0.45)
    assert parts["smooth"].item() == pytest.approx((0.04 + 0.49 + 0.04) / 3)
    assert loss.item() == pytest.approx(0.45 + 0.01 * 0.45)


def test_topk_hinge_averages_all_pairs():
    normal = torch.tensor([[0.0, 0.5], [0.0, 0.0]])
    abnormal = torch.tensor([[1.0, 0.0], [0.2, 0.0]])
    _, parts = mil_ranking_loss(normal, abnormal, topk=1, lambda_sparse=0.0, lambda_smooth=0.0)
    # pairs (n, a): (0.5, 1.0) -> 0.5, (0.5, 0.2) -> 1.3, (0, 1.0) -> 0, (0, 0.2) -> 0.8
    assert parts["rank"].item() == pytest.approx((0.5 + 1.3 + 0.0 + 0.8) / 4)


def test_refinement_interior_is_triangular_kernel_and_edges_replicate():
    scores = np.random.default_rng(3).random(40)
    refined = refine_scores(scores, abnormal=False)
    triangle = np.array([1, 2, 3, 4, 5, 4, 3, 2, 1]) / 25
    np.testing.assert_allclose(
        refined[4:-4], np.convolve(scores, triangle, mode="valid"), atol=1e-12
    )
    abnormal = refine_scores(scores, abnormal=True)
    assert abnormal.min() == 0.0 and abnormal.max() == 1.0
    assert refine_scores(np.array([0.4]), abnormal=True).tolist() == pytest.approx([0.4])


def test_pseudo_label_files_round_trip_in_both_formats(tmp_path):
    labels = {"01_0014": np.array([0.0, 0.5, 1.0]), "01_002": np.array([0.2])}
    save_pseudo_labels(tmp_path / "pseudo_labels", labels)
    for suffix in (".npy", ".npz"):
        loaded = load_score_dict(tmp_path / f"pseudo_labels{suffix}")
        assert loaded.keys() == labels.keys()
        for name in labels:
            np.testing.assert_array_equal(loaded[name], labels[name])
    official = read_pickled_dict(tmp_path / "pseudo_labels.npy")
    assert sorted(official) == ["01_0014.npy", "01_002.npy"]  # the official key format
    assert not list(tmp_path.glob("*.tmp"))


def test_authors_pseudo_labels_load():
    labels = load_score_dict("data/shanghaitech/official_pseudo_labels/SHT_I3D_PLs.npy")
    assert len(labels) == 238 and labels["01_0014"].shape == (16,)
    assert labels["01_0014"].min() == 0.0 and labels["01_0014"].max() == 1.0


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_legacy_reader_refuses_code_in_pickles(tmp_path):
    path = tmp_path / "evil.npy"
    arr = np.empty((), dtype=object)
    arr[()] = {"a.npy": _Evil()}
    np.save(path, arr)
    with pytest.raises(ValueError, match="refusing to load builtins.print"):
        read_pickled_dict(path)
    bad = tmp_path / "list.npy"
    arr[()] = ["not", "a", "dict"]
    np.save(bad, arr)
    with pytest.raises(ValueError, match="expected a dict"):
        read_pickled_dict(bad)


class _Bomb:
    """Pickles as numpy's own array constructor asking for 80 TB (pickling does not call it)."""

    def __reduce__(self):
        from utils.legacy import _MULTIARRAY

        return (_MULTIARRAY._reconstruct, (np.ndarray, (10**13,), np.dtype("f8")))


def test_legacy_reader_refuses_arrays_larger_than_the_file(tmp_path):
    path = tmp_path / "bomb.npy"
    arr = np.empty((), dtype=object)
    arr[()] = {"a.npy": _Bomb()}
    np.save(path, arr)
    assert path.stat().st_size < 2048
    with pytest.raises(ValueError, match="declares 80,000,000,000,000 bytes, more than the file's"):
        read_pickled_dict(path)
    real = tmp_path / "real.npy"  # the same reader still takes the official format
    arr[()] = {"a.npy": np.arange(5, dtype=np.float64)}
    np.save(real, arr)
    assert read_pickled_dict(real)["a.npy"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
