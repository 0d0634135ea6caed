"""Stage-2 clip positions and labels: hand-computed cases (docs/REFERENCE.md §3.6, §6.15, §6.16)."""

import warnings

import numpy as np
import pytest

from datasets.clip_labels import (
    align_pseudo_labels,
    clip_label,
    clip_labels,
    random_perturb,
    video_clip_labels,
)


def _official_bounds(v, n):
    """Strata of the official float-based random_perturb (utils.py:91-111)."""
    p = np.arange(n) * v / n
    low = [int(x) for x in p]
    high = [int(p[i + 1]) for i in range(n - 1)] + [max(v - 1, low[-1])]
    return np.array(low), np.array(high)


@pytest.mark.parametrize("v, n", [(100, 3), (7, 3), (3, 3), (10, 4), (37, 5)])
def test_random_perturb_stays_in_and_fills_each_official_stratum(v, n):
    low, high = _official_bounds(v, n)
    rng = np.random.default_rng(0)
    draws = np.stack([random_perturb(v, n, rng) for _ in range(3000)])
    assert draws.dtype == np.int64 and draws.shape == (3000, n)
    assert (draws >= low).all() and (draws <= high).all()
    np.testing.assert_array_equal(draws.min(0), low)  # both ends of every stratum are reachable
    np.testing.assert_array_equal(draws.max(0), high)
    assert draws.max() <= v - 1  # so segment c + 1 <= v exists when v = n_segments - 1


def test_random_perturb_short_videos_repeat_positions_and_never_crash():
    rng = np.random.default_rng(1)
    np.testing.assert_array_equal(random_perturb(0, 3, rng), [0, 0, 0])  # one-segment video
    np.testing.assert_array_equal(random_perturb(1, 3, rng), [0, 0, 0])  # two segments: c = 0 only
    draws = np.stack([random_perturb(2, 3, rng) for _ in range(200)])  # strata [0,0], [0,1], [1,1]
    np.testing.assert_array_equal(draws[:, 0], 0)
    np.testing.assert_array_equal(draws[:, 2], 1)
    assert set(draws[:, 1]) == {0, 1}
    with pytest.raises(ValueError, match="num_positions >= 0"):
        random_perturb(-1, 3, rng)


PL = np.array([0.2, 0.6, 0.3])


def test_interp_weights_follow_the_frames_of_each_segment():
    assert clip_label(PL, 0, 0) == pytest.approx(0.2)  # clip lies in segment 0 only
    assert clip_label(PL, 0, 8) == pytest.approx(0.4)  # half and half
    assert clip_label(PL, 0, 15) == pytest.approx(0.2 / 16 + 0.6 * 15 / 16)  # 0.575
    assert clip_label(PL, 1, 4) == pytest.approx(0.6 * 12 / 16 + 0.3 * 4 / 16)


def test_official_inverted_weights_and_max_rule():
    # §6.15: PL[c+1] at begin 0
    assert clip_label(PL, 0, 0, mode="interp_official") == pytest.approx(0.6)
    # 0.225
    assert clip_label(PL, 0, 15, mode="interp_official") == pytest.approx(0.2 * 15 / 16 + 0.6 / 16)
    assert clip_label(PL, 0, 8, mode="interp_official") == pytest.approx(0.4)
    assert clip_label(PL, 0, 3, mode="max") == pytest.approx(0.6)
    assert clip_label(PL, 1, 0, mode="max") == pytest.approx(0.6)
    with pytest.raises(ValueError, match="interp_official"):
        clip_label(PL, 0, 0, mode="mean")


@pytest.mark.parametrize("mode", ["interp", "interp_official", "max"])
def test_past_the_end_fallbacks(mode):
    assert clip_label(PL, 2, 8, mode=mode) == pytest.approx(0.3)  # no c + 1 -> PL[c]
    assert clip_label(PL, 9, 8, mode=mode) == pytest.approx(0.3)  # c past the end -> PL[-1]
    assert clip_label([0.7], 0, 5, mode=mode) == pytest.approx(0.7)


def test_vectorised_labels_match_scalar_ones():
    c, begin = np.array([0, 0, 1, 2, 5]), np.array([0, 15, 7, 3, 9])
    for mode in ("interp", "interp_official", "max"):
        expect = [clip_label(PL, ci, bi, mode=mode) for ci, bi in zip(c, begin)]
        np.testing.assert_allclose(clip_labels(PL, c, begin, mode=mode), expect)


def test_align_pads_with_last_value_or_drops_tail():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # within tolerance: silent
        np.testing.assert_array_equal(align_pseudo_labels([0.1, 0.5], 3, "v"), [0.1, 0.5, 0.5])
        np.testing.assert_array_equal(align_pseudo_labels([0.1, 0.5, 0.9], 2, "v"), [0.1, 0.5])
        np.testing.assert_array_equal(align_pseudo_labels([0.1, 0.5], 2, "v"), [0.1, 0.5])
    with pytest.warns(
        UserWarning, match=r"video '01_0014': 2 pseudo-labels for 5 frame segments.*padding"
    ):
        out = align_pseudo_labels([0.1, 0.5], 5, "01_0014")
    np.testing.assert_array_equal(out, [0.1, 0.5, 0.5, 0.5, 0.5])
    with pytest.warns(UserWarning, match=r"'x': 6 pseudo-labels for 3 .*dropping"):
        np.testing.assert_array_equal(
            align_pseudo_labels(np.arange(6.0) / 8, 3, "x"), [0, 0.125, 0.25]
        )
    for bad in (1.5, -0.25, np.nan):  # pseudo-labels are min-max normalised scores
        with pytest.raises(
            ValueError,
            match=(
                rf"video 'y': 1 of its 2 pseudo-labels are outside \[0, 1\] or NaN \(first: {bad}"
            ),
        ):
            align_pseudo_labels([0.5, bad], 2, "y")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        align_pseudo_labels([0.1, 0.5], 5, "v", tolerance=3)
    with pytest.raises(ValueError, match="'v' has empty"):
        align_pseudo_labels([], 3, "v")


def test_soft_normal_and_hard_video_labels():
    pos, beg = np.array([0, 1, 1]), np.array([8, 0, 4])
    abn = video_clip_labels(1, PL, pos, beg)
    assert abn.dtype == np.float32 and abn.shape == (3, 2)
    s = np.array([0.4, 0.6, 0.6 * 0.75 + 0.3 * 0.25])
    np.testing.assert_allclose(abn, np.stack([1 - s, s], 1), rtol=1e-6)
    # paper: normal = 0
    np.testing.assert_array_equal(video_clip_labels(0, None, pos, beg), [[1, 0]] * 3)
    # UCF-C3D §6.16
    np.testing.assert_allclose(video_clip_labels(0, PL, pos, beg, normal_label="pseudo"), abn)
    np.testing.assert_array_equal(video_clip_labels(1, None, pos, beg, hard=True), [[0, 1]] * 3)
    np.testing.assert_array_equal(
        video_clip_labels(0, PL, pos, beg, normal_label="pseudo", hard=True), [[1, 0]] * 3
    )
    np.testing.assert_allclose(
        video_clip_labels(1, PL, pos, beg, mode="max")[:, 1], [0.6, 0.6, 0.6]
    )
    with pytest.raises(ValueError, match="abnormal video need its pseudo-labels"):
        video_clip_labels(1, None, pos, beg)
