"""Temporal localisation mAP at IoU 0.1-0.5: the fine-grained protocol of XD-Violence and
UCF-Crime, for a method that gives one anomaly score per clip.

The detection rule is the one of the public fine-grained evaluation (VadCLIP's, after W-TALC),
written again here for clip scores:

1. Per video, with clip scores s (n,): threshold = max(s) - RANGE_FRACTION * (max(s) - min(s)),
   RANGE_FRACTION = 0.6. A detection is a maximal run of consecutive clips with s > threshold
   (strict), spanning frames [first clip * clip_len, (last clip + 1) * clip_len). A video of
   constant scores has no detection. With one threshold a video's detections are disjoint, so the
   NMS at IoU 0.6 of the public code removes nothing and there is none here.
2. Its score = the highest clip score inside it + VIDEO_WEIGHT (0.7) * the video's score, the mean
   of its top 1/16 frame scores (max(1, n_frames // 16) frames; every frame of a clip carries the
   clip's score).
3. Ground truth: the maximal runs of 1s in the frame labels that the frame metrics see (cut at the
   last whole clip, padded with the last label as utils.evaluation pads them), [start, end).
4. The detections of all test videos are ranked by score (ties: split order, then start frame).
   Each in turn, at IoU threshold t, takes the not yet matched GT interval of its own video with
   the highest frame IoU >= t (ties: the earliest) and is a true positive; otherwise it is a false
   positive (always so on a normal video). Each GT interval is matched at most once.
5. AP(t) = area under the precision-recall curve with all-point interpolation (ActivityNet /
   THUMOS: the precision at recall r is the highest precision at any recall >= r); 0 when nothing
   is detected, None when there is no GT interval. The public VadCLIP code averages the raw
   precision at each true positive instead (no interpolation), which is never higher.
6. mAP (utils/evaluation.py): on a dataset with anomaly classes, the mean over the classes of the
   AP of each class, computed on that class's abnormal videos + all normal test videos (the
   per-class AUC convention); otherwise the AP of the single class "anomaly" over all test videos.

Everything is plain numpy on concatenated per-video arrays; the greedy matching runs once per rank
within a video (the videos at once), not once per detection.
"""

from typing import NamedTuple

import numpy as np

from utils.errors import InputError

IOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
RANGE_FRACTION = 0.6
VIDEO_WEIGHT = 0.7
TOP_FRACTION = 16


class Segments(NamedTuple):
    """Temporal segments of several videos, in order of video then start: video (K,) int64 index
    into the split, start / end (K,) int64 frames ([start, end)), score (K,) float64 or None."""

    video: np.ndarray
    start: np.ndarray
    end: np.ndarray
    score: np.ndarray = None


def runs(mask, offsets):
    """mask (N,) bool over concatenated videos, video v owning [offsets[v], offsets[v+1]) ->
    Segments (no score) of the maximal runs of True inside each video, counted from the video's
    first element."""
    m = np.asarray(mask, dtype=bool)
    offsets = np.asarray(offsets, dtype=np.int64)
    # a video boundary ends a run even between two True elements
    edge = np.zeros(len(m) + 1, dtype=bool)
    edge[offsets] = True
    prev = np.concatenate([[False], m[:-1]])
    after = np.concatenate([m[1:], [False]])
    start = np.flatnonzero(m & (~prev | edge[:-1]))
    end = np.flatnonzero(m & (~after | edge[1:])) + 1
    video = np.searchsorted(offsets, start, side="right") - 1
    return Segments(video, start - offsets[video], end - offsets[video])


def detections(scores, offsets, clip_len):
    """Clip scores (C,) of concatenated videos, offsets (V+1,) clips (every video non-empty) ->
    Segments of the detections of rule 1-2 of the module docstring, in frames, with scores."""
    scores = np.asarray(scores, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    n = np.diff(offsets)
    video = np.repeat(np.arange(len(n)), n)
    hi = np.maximum.reduceat(scores, offsets[:-1])
    lo = np.minimum.reduceat(scores, offsets[:-1])
    found = runs(scores > (hi - RANGE_FRACTION * (hi - lo))[video], offsets)
    if len(found.video) == 0:
        return found._replace(score=np.zeros(0))
    # reduceat over [start, end) pairs of clip indices; the pad lets the last end be an index
    first = offsets[found.video] + found.start
    bounds = np.stack([first, offsets[found.video] + found.end], axis=1).ravel()
    peak = np.maximum.reduceat(np.concatenate([scores, [0.0]]), bounds)[::2]
    score = peak + VIDEO_WEIGHT * video_scores(scores, offsets, clip_len)[found.video]
    return Segments(found.video, clip_len * found.start, clip_len * found.end, score)


def video_scores(scores, offsets, clip_len):
    """-> (V,) the mean of each video's top max(1, n_frames // 16) frame scores, a clip standing for
    clip_len frames of its score."""
    n = np.diff(offsets)
    video = np.repeat(np.arange(len(n)), n)
    k = np.maximum(clip_len * n // TOP_FRACTION, 1)
    # descending within each video; the videos keep their places
    ordered = scores[np.lexsort((-scores, video))]
    rank = np.arange(len(scores)) - offsets[video]
    frames = np.clip(k[video] - rank * clip_len, 0, clip_len)
    return np.bincount(video, weights=frames * ordered, minlength=len(n)) / k


def gt_intervals(gts, cover):
    """gts: V frame-label arrays (0/1), cover (V,) frames scored per video -> Segments (no score)
    of the runs of 1s cut at cover; a run reaching the end of a GT shorter than cover reaches cover
    (the last-label padding of utils.evaluation)."""
    lengths = np.array([len(g) for g in gts], dtype=np.int64)
    cover = np.asarray(cover, dtype=np.int64)
    found = runs(np.concatenate(gts) != 0, np.concatenate([[0], np.cumsum(lengths)]))
    keep = found.start < cover[found.video]
    video, start, end = found.video[keep], found.start[keep], found.end[keep]
    end = np.where(end == lengths[video], cover[video], np.minimum(end, cover[video]))
    return Segments(video, start, end)


def select(segments, videos):
    """-> the segments whose video is True in videos (V,) bool."""
    keep = np.asarray(videos, dtype=bool)[segments.video]
    return Segments(*(None if a is None else a[keep] for a in segments))


def match(det, gt, thresholds=IOU_THRESHOLDS):
    """Greedy matching of rule 4 -> tp (T, D) bool: tp[t, r] is True when the detection of rank r
    (by descending score) is a true positive at IoU thresholds[t]."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if not ((thresholds > 0) & (thresholds <= 1)).all():
        raise InputError(f"IoU thresholds must lie in (0, 1], got {thresholds.tolist()}")
    n_det = len(det.video)
    order = np.argsort(-det.score, kind="stable")
    rank = np.empty(n_det, dtype=np.int64)
    rank[order] = np.arange(n_det)
    tp = np.zeros((len(thresholds), n_det), dtype=bool)
    pair_det, pair_gt, iou = _overlaps(det, gt)
    if len(iou) == 0:
        return tp
    # a video's detections are matched in score order; videos share no GT, so the r-th detection
    # of every video is matched at once: steps by rank within the video, then each detection's
    # pairs with the highest IoU first
    local = _rank_in_video(det.video, rank)
    key = np.lexsort((pair_gt, -iou, pair_det, local[pair_det]))
    pair_det, pair_gt, iou = pair_det[key], pair_gt[key], iou[key]
    steps = np.split(np.arange(len(iou)), np.flatnonzero(np.diff(local[pair_det])) + 1)
    matched = np.zeros((len(thresholds), len(gt.video)), dtype=bool)
    for step in steps:
        d, g = pair_det[step], pair_gt[step]
        ok = (iou[step] >= thresholds[:, None]) & ~matched[:, g]
        t, p = np.nonzero(_first_per_group(ok, d))
        matched[t, g[p]] = True
        tp[t, rank[d[p]]] = True
    return tp


def _overlaps(det, gt):
    """-> (detection index, GT index, IoU) of every overlapping pair of one video (IoU > 0)."""
    first = np.searchsorted(gt.video, det.video, side="left")
    count = np.searchsorted(gt.video, det.video, side="right") - first
    pair_det = np.repeat(np.arange(len(det.video)), count)
    within = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    pair_gt = np.repeat(first, count) + within
    lo = np.maximum(det.start[pair_det], gt.start[pair_gt])
    hi = np.minimum(det.end[pair_det], gt.end[pair_gt])
    inter = np.maximum(hi - lo, 0)
    union = (det.end - det.start)[pair_det] + (gt.end - gt.start)[pair_gt] - inter
    # a correctly rounded division: an IoU of exactly 0.3 compares equal to the threshold 0.3
    iou = inter / union
    keep = inter > 0
    return pair_det[keep], pair_gt[keep], iou[keep]


def _rank_in_video(video, rank):
    """-> (D,) each detection's rank among the detections of its own video."""
    by_video = np.lexsort((rank, video))
    sorted_video = video[by_video]
    local = np.empty(len(video), dtype=np.int64)
    local[by_video] = np.arange(len(video)) - np.searchsorted(sorted_video, sorted_video)
    return local


def _first_per_group(ok, group):
    """ok (T, P) bool, group (P,) with equal values adjacent -> (T, P) bool: the first True of each
    group in each row."""
    starts = np.concatenate([[True], group[1:] != group[:-1]])
    seen = np.cumsum(ok, axis=1)
    before = (seen - ok)[:, starts]
    return ok & (seen - before[:, np.cumsum(starts) - 1] == 1)


def interpolated_ap(tp, n_gt):
    """tp (T, D) bool in rank order, n_gt > 0 GT intervals -> (T,) AP with all-point
    interpolation: sum over the ranks of (recall gained) * (highest precision at this rank or
    later)."""
    hits = np.cumsum(tp, axis=1)
    precision = hits / np.arange(1, tp.shape[1] + 1)
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    gained = np.diff(hits, axis=1, prepend=0) / n_gt
    return (gained * envelope).sum(axis=1)


def detection_ap(det, gt, thresholds=IOU_THRESHOLDS):
    """-> (T,) AP of the detections against the GT intervals at each IoU threshold; None without
    GT intervals."""
    if len(gt.video) == 0:
        return None
    return interpolated_ap(match(det, gt, thresholds), len(gt.video))


def localisation_map(det, gt, groups, thresholds=IOU_THRESHOLDS):
    """groups: (G, V) bool, the videos of each class (or one row of all videos) -> ({f"{t:.1f}":
    mAP or None}, [AP (T,) or None per group]); mAP = mean over the groups with GT intervals."""
    aps = [detection_ap(select(det, g), select(gt, g), thresholds) for g in groups]
    known = [ap for ap in aps if ap is not None]
    mean = np.mean(known, axis=0) if known else [None] * len(thresholds)
    return {f"{t:.1f}": None if m is None else float(m) for t, m in zip(thresholds, mean)}, aps
