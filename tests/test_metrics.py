"""utils/metrics.py: golden parity with the official eval_utils, hand-computed cases and errors."""

from pathlib import Path

import numpy as np
import pytest

from utils.metrics import average_precision, false_alarm_rate, frame_auc, pr_auc, rmse, score_gap

GOLDEN = np.load(Path(__file__).resolve().parent / "golden" / "metrics.npz", allow_pickle=False)
METRICS = {
    "auc": frame_auc,
    "far": false_alarm_rate,
    "pr_auc": pr_auc,
    "score_gap": score_gap,
    "rmse": rmse,
}


@pytest.mark.parametrize("case", ["m0", "m1", "m2", "m3"])
@pytest.mark.parametrize("key", list(METRICS))
def test_golden_parity(case, key):
    """Official cal_auc / cal_false_alarm / cal_pr_auc / cal_score_gap / cal_rmse, |d| <= 1e-9."""
    got = METRICS[key](GOLDEN[f"{case}_scores"], GOLDEN[f"{case}_labels"])
    assert isinstance(got, float)
    assert abs(got - float(GOLDEN[f"{case}_{key}"])) <= 1e-9


# scores 0.1 0.4 0.35 0.8 with labels 0 0 1 1: of the 4 (pos, neg) pairs only (0.35, 0.4) is
# misordered
S, Y = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])


def test_auc_hand_case():
    assert frame_auc(S, Y) == pytest.approx(0.75)
    assert frame_auc([0.3, 0.3, 0.3], [0, 1, 0]) == pytest.approx(0.5)  # all tied
    assert frame_auc([0.9, 0.1], [0, 1]) == pytest.approx(0.0)


def test_far_hand_case():
    # negatives 0.1, 0.4, 0.5, 0.7: strict '>' so 0.5 is not a false alarm
    assert false_alarm_rate([0.1, 0.4, 0.5, 0.7, 0.9], [0, 0, 0, 0, 1]) == pytest.approx(0.25)
    assert false_alarm_rate(
        [0.1, 0.4, 0.5, 0.7, 0.9], [0, 0, 0, 0, 1], threshold=0.3
    ) == pytest.approx(0.75)
    # normal videos only: no positives needed
    assert false_alarm_rate([0.6, 0.2], [0, 0]) == pytest.approx(0.5)


def test_pr_auc_and_ap_hand_case():
    # thresholds 0.8, 0.4, 0.35, 0.1 give (recall, precision) = (.5, 1), (.5, .5), (1, 2/3), (1,
    # .5), plus
    # sklearn's (0, 1). Trapezoid over recall (the drop at recall .5 is vertical, so the 0.5 -> 1
    # segment
    # runs from precision .5 to 2/3): 0.5 * 1 + 0.5 * (0.5 + 2/3) / 2 = 19/24. AP steps: .5 * 1 + .5
    # * 2/3 = 5/6
    assert pr_auc(S, Y) == pytest.approx(19 / 24)
    assert average_precision(S, Y) == pytest.approx(5 / 6)


def test_score_gap_and_rmse_hand_case():
    assert score_gap(S, Y) == pytest.approx((0.35 + 0.8) / 2 - (0.1 + 0.4) / 2)
    assert rmse(S, Y) == pytest.approx(np.sqrt((0.01 + 0.16 + 0.4225 + 0.04) / 4))
    assert rmse([1.0, 0.0], [1, 0]) == 0.0


def test_float_labels_accepted():
    assert frame_auc(S, Y.astype(np.float64)) == frame_auc(S, Y)


def test_length_mismatch():
    with pytest.raises(ValueError, match=r"frame_auc: .*shapes \(4,\) and \(3,\)"):
        frame_auc(S, Y[:3])
    with pytest.raises(ValueError, match="1-D"):
        rmse(S.reshape(2, 2), Y.reshape(2, 2))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_scores(bad):
    scores = S.copy()
    scores[2] = bad
    with pytest.raises(ValueError, match="pr_auc: 1 of 4 scores are NaN or inf .*frame 2"):
        pr_auc(scores, Y)


@pytest.mark.parametrize("fn", [frame_auc, pr_auc, average_precision, score_gap])
def test_single_class(fn):
    with pytest.raises(ValueError, match="only one class present, no anomalous"):
        fn([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="only one class present, no normal"):
        fn([0.1, 0.2], [1, 1])


def test_far_needs_negatives_and_labels_are_binary():
    with pytest.raises(ValueError, match="no normal .*needs normal"):
        false_alarm_rate([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="labels must be 0/1"):
        frame_auc(S, [0, 1, 2, 1])
    with pytest.raises(ValueError, match="no frames"):
        rmse([], [])
