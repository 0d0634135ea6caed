"""utils/localisation.py: the detection rule, the greedy matching and the interpolated AP on
hand-computed cases, and the vectorised code against a plain loop over detections."""

import numpy as np
import pytest

from utils.localisation import (
    IOU_THRESHOLDS,
    Segments,
    detection_ap,
    detections,
    gt_intervals,
    interpolated_ap,
    localisation_map,
    match,
    runs,
    video_scores,
)


def _segments(rows, scored=True):
    """[(video, start, end[, score])] -> Segments."""
    rows = list(rows)
    columns = [np.array([r[i] for r in rows], dtype=np.int64) for i in range(3)]
    score = np.array([r[3] for r in rows], dtype=np.float64) if scored else None
    return Segments(*columns, score)


def _ap(det_rows, gt_rows):
    return detection_ap(_segments(det_rows), _segments(gt_rows, scored=False)).tolist()


def test_single_perfect_detection():
    assert _ap([(0, 0, 32, 0.9)], [(0, 0, 32)]) == [1.0] * 5


def test_iou_exactly_0_3():
    # GT [0, 100), detection [70, 100): intersection 30, union 100 -> IoU 0.3
    assert _ap([(0, 70, 100, 0.9)], [(0, 0, 100)]) == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_second_detection_on_one_gt_is_a_false_positive():
    # GT [0, 100); B = [60, 100) ranked first (IoU 0.4), A = [0, 60) second (IoU 0.6)
    det = _segments([(0, 0, 60, 0.8), (0, 60, 100, 0.9)])
    gt = _segments([(0, 0, 100)], scored=False)
    # ranks: B, A. IoU <= 0.4: B takes the GT, A is a false positive; at 0.5 B misses, A takes it
    assert match(det, gt).tolist() == [[True, False]] * 4 + [[False, True]]
    # at 0.5: precision 0, 1/2 at recall 0, 1 -> AP = 1 * 1/2
    assert detection_ap(det, gt).tolist() == [1.0, 1.0, 1.0, 1.0, 0.5]


def test_detections_on_a_normal_video_are_false_positives():
    # video 1 is normal (no GT): its detection ranks first and is a false positive
    assert _ap([(0, 0, 100, 0.5), (1, 0, 50, 0.9)], [(0, 0, 100)]) == [0.5] * 5


def test_video_with_two_gt_intervals():
    # GT [0, 50) and [100, 150); D1 = [0, 150) (IoU 1/3 with each), D2 = [100, 150) (IoU 1)
    det = [(0, 0, 150, 0.9), (0, 100, 150, 0.8)]
    gt = [(0, 0, 50), (0, 100, 150)]
    # IoU <= 0.3: D1 takes the earlier GT of its IoU tie, D2 the other: AP 1. At 0.4 and 0.5 D1
    # misses and D2 finds one of two: precision 0, 1/2 at recall 0, 1/2 -> AP = 1/2 * 1/2
    assert _ap(det, gt) == [1.0, 1.0, 1.0, 0.25, 0.25]


def test_no_detections_at_all():
    assert _ap([], [(0, 0, 100)]) == [0.0] * 5
    # a video of constant scores gives no detection
    found = detections(np.full(5, 0.7), np.array([0, 5]), 16)
    assert len(found.video) == 0 and len(found.score) == 0
    assert detection_ap(_segments([]), _segments([], scored=False)) is None


def test_interpolation_on_three_ranked_detections():
    # 2 GT intervals, ranking FP, TP, TP:
    #   rank 1: precision 0/1, recall 0;  rank 2: 1/2, 1/2;  rank 3: 2/3, 1
    # all-point interpolation: the precision at recall 1/2 becomes max(1/2, 2/3) = 2/3
    #   AP = (1/2 - 0) * 2/3 + (1 - 1/2) * 2/3 = 2/3
    # (without interpolation, the mean precision at the true positives: (1/2 + 2/3) / 2 = 7/12)
    tp = np.array([[False, True, True]])
    assert interpolated_ap(tp, 2).tolist() == pytest.approx([2 / 3], abs=1e-15)
    det = [(0, 0, 10, 0.9), (0, 20, 30, 0.8), (1, 0, 10, 0.7)]
    assert _ap(det, [(0, 20, 30), (1, 0, 10)]) == pytest.approx([2 / 3] * 5, abs=1e-15)


def test_detection_rule_by_hand():
    # video 0: max 0.9, min 0.1 -> threshold 0.9 - 0.6 * 0.8 = 0.42: clips 1-2 and 4 are above;
    # 96 frames -> its top 6 frames, all of clip 1 -> video score 0.9; video 1 is constant
    scores = np.array([0.1, 0.9, 0.8, 0.1, 0.7, 0.1, 0.5, 0.5])
    found = detections(scores, np.array([0, 6, 8]), 16)
    assert found.video.tolist() == [0, 0]
    assert (found.start.tolist(), found.end.tolist()) == ([16, 64], [48, 80])
    assert found.score.tolist() == pytest.approx([0.9 + 0.7 * 0.9, 0.7 + 0.7 * 0.9], abs=1e-15)


def test_video_score_spans_clips():
    # 20 clips x 16 frames -> the top 20 frames: 16 of the 0.9 clip and 4 of the 0.5 clip
    scores = np.r_[0.0, 0.5, np.zeros(17), 0.9, 0.2, 0.2]
    got = video_scores(scores, np.array([0, 20, 22]), 16)
    # video 1: 2 clips = 32 frames -> its top 2 frames, both of a 0.2 clip
    assert got.tolist() == pytest.approx([(16 * 0.9 + 4 * 0.5) / 20, 0.2], abs=1e-15)


def test_runs_stop_at_video_boundaries():
    found = runs(np.array([1, 1, 1, 0, 1], dtype=bool), np.array([0, 2, 4, 5]))
    assert found.video.tolist() == [0, 1, 2]
    assert (found.start.tolist(), found.end.tolist()) == ([0, 0, 0], [2, 1, 1])


def test_gt_intervals_cut_and_padded_like_the_frame_metrics():
    # video 0: GT of 5 frames, 8 frames scored -> [4, 5) reaches the GT's end and is padded to 8;
    # video 1: GT of 6 frames, 4 scored -> [0, 2) stays; video 2: its run starts past the cover
    found = gt_intervals(
        [np.array([0, 1, 1, 0, 1]), np.array([1, 1, 0, 0, 0, 0]), np.array([0, 0, 0, 1])],
        np.array([8, 4, 2]),
    )
    assert found.video.tolist() == [0, 0, 1]
    assert (found.start.tolist(), found.end.tolist()) == ([1, 4, 0], [3, 8, 2])


def test_map_is_the_mean_over_groups_with_gt():
    # group 0 = video 0 (AP 1); group 1 = videos 1, 2 (normal video 2's detection first: AP 1/2);
    # group 2 = video 2 alone has no GT: left out of the mean
    det = _segments([(0, 0, 10, 0.5), (1, 0, 10, 0.5), (2, 0, 10, 0.9)])
    gt = _segments([(0, 0, 10), (1, 0, 10)], scored=False)
    groups = np.array([[True, False, False], [False, True, True], [False, False, True]])
    maps, aps = localisation_map(det, gt, groups)
    assert maps == {"0.1": 0.75, "0.2": 0.75, "0.3": 0.75, "0.4": 0.75, "0.5": 0.75}
    assert aps[0].tolist() == [1.0] * 5 and aps[1].tolist() == [0.5] * 5 and aps[2] is None


def test_thresholds_must_be_in_the_unit_interval():
    with pytest.raises(ValueError, match=r"IoU thresholds must lie in \(0, 1\], got \[0.0\]"):
        match(_segments([(0, 0, 1, 0.5)]), _segments([(0, 0, 1)], scored=False), [0.0])


def _reference_ap(det, gt, threshold):
    """The rule of the module docstring, one detection at a time (the code it replaced)."""
    order = sorted(range(len(det.video)), key=lambda i: -det.score[i])
    free = set(range(len(gt.video)))
    tp = []
    for i in order:
        best, best_iou = None, 0.0
        for j in sorted(free):
            if gt.video[j] != det.video[i]:
                continue
            inter = max(0, min(det.end[i], gt.end[j]) - max(det.start[i], gt.start[j]))
            iou = inter / (det.end[i] - det.start[i] + gt.end[j] - gt.start[j] - inter)
            # the highest IoU >= threshold; the earliest GT on a tie
            if iou >= threshold and iou > best_iou:
                best, best_iou = j, iou
        if best is not None:
            free.discard(best)
        tp.append(best is not None)
    return interpolated_ap(np.array([tp], dtype=bool).reshape(1, -1), len(gt.video))[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_matching_equals_a_plain_loop(seed):
    rng = np.random.default_rng(seed)
    n_clips = rng.integers(1, 40, size=30)
    offsets = np.concatenate([[0], np.cumsum(n_clips)])
    scores = np.round(rng.uniform(size=offsets[-1]), 1)
    gts = []
    for n in n_clips:
        g = np.zeros(4 * n, dtype=np.uint8)
        for _ in range(rng.integers(0, 3)):
            a = rng.integers(0, len(g))
            g[a : a + rng.integers(1, 30)] = 1
        gts.append(g)
    det = detections(scores, offsets, 4)
    gt = gt_intervals(gts, 4 * n_clips)
    assert len(det.video) > 40 and len(gt.video) > 20
    got = detection_ap(det, gt)
    want = [_reference_ap(det, gt, t) for t in IOU_THRESHOLDS]
    assert got.tolist() == pytest.approx(want, abs=1e-12)
    assert got[0] > got[-1] > 0
