"""The one evaluation path of stage 1 and stage 2: clip scores -> frame scores -> metrics
(docs/REFERENCE.md §4).

Official rule (§1.6, §4.2): each clip score is repeated clip_len times and the GT is cut to the
first clip_len * n_clips frames, so the trailing n_frames % clip_len frames are never scored. All
videos are concatenated and the metrics are pooled over frames.

`evaluate` never builds the frame arrays: every frame of a clip shares the clip's score, so a clip
is two weighted rows, (score, label 1, its anomalous frames) and (score, label 0, its normal
frames), and sklearn draws the same ROC/PR curves from them (utils/metrics.py, sample_weight).
UCF-Crime's 1.1M test frames become ~70k rows. `expand_to_frames` still gives the frame arrays for
anyone who wants them.

The AUC over the abnormal videos (`auc_abnormal`) is the same ROC AUC on the rows of the abnormal
test videos alone; the temporal localisation mAP (`map_iou`, `map_mean`) forms detections from the
clip scores and matches them to the GT intervals (utils/localisation.py says how)."""

import warnings

import numpy as np

from utils.localisation import detections, gt_intervals, localisation_map
from utils.metrics import average_precision, false_alarm_rate, frame_auc, pr_auc, rmse, score_gap
from utils.errors import InputError, MissingKeyError


def expand_to_frames(clip_scores, labels, names, clip_len=16, max_pad_clips=0):
    """clip_scores {name: (n_clips,)}, labels {name: (n_frames,)} -> (scores (F,), labels (F,),
    offsets (V+1,)).

    Video names[v] owns frames [offsets[v], offsets[v+1]) with F = clip_len * sum(n_clips). If a
    video's clips cover more frames than its GT by at most max_pad_clips clips, the GT is extended
    with its last value (RTFM convention) and one warning is emitted; a larger excess is an error.
    """
    scores = [_clip_scores(clip_scores, name) for name in names]
    gts = [_frame_gt(labels, name) for name in names]
    cover = clip_len * np.array([len(s) for s in scores], dtype=np.int64)
    gt_len = np.array([len(g) for g in gts], dtype=np.int64)
    _check_excess(names, cover, gt_len, clip_len, max_pad_clips)
    offsets = np.concatenate([[0], np.cumsum(cover)])
    gt_offsets = np.concatenate([[0], np.cumsum(gt_len)])
    # frame j of video v reads GT frame min(j, gt_len[v] - 1): truncation and last-value padding at
    # once
    j = np.arange(offsets[-1]) - np.repeat(offsets[:-1], cover)
    src = np.repeat(gt_offsets[:-1], cover) + np.minimum(j, np.repeat(gt_len - 1, cover))
    frame_scores = np.repeat(np.concatenate(scores), clip_len)
    return frame_scores, np.concatenate(gts)[src], offsets


def _clip_scores(clip_scores, name):
    if name not in clip_scores:
        raise MissingKeyError(
            f"no clip scores for video '{name}' (score keys look like {list(clip_scores)[:2]});"
            " score every test video, with keys equal to the split's names"
        )
    s = np.asarray(clip_scores[name], dtype=np.float64)
    # a 1-clip video squeezed to 0-d (docs/REFERENCE.md §1.7)
    s = s.reshape(1) if s.ndim == 0 else s
    if s.ndim != 1 or len(s) == 0:
        raise InputError(
            f"clip scores of video '{name}' must be 1-D with one score per clip, got shape "
            f"{s.shape}; pass scores.reshape(-1)"
        )
    bad = np.flatnonzero(~np.isfinite(s))
    if bad.size:
        raise InputError(
            f"clip scores of video '{name}': {bad.size} of {len(s)} are NaN or inf (first at clip "
            f"{bad[0]}); check the model or the score file that produced them (diverged training?)"
        )
    return s


def _frame_gt(labels, name):
    if name not in labels:
        raise MissingKeyError(
            f"no frame labels for video '{name}' (label keys look like {list(labels)[:2]}); "
            "build them with datasets.ground_truth.frame_labels on the same split"
        )
    g = np.asarray(labels[name])
    if g.ndim != 1 or len(g) == 0:
        raise InputError(
            f"frame labels of video '{name}' must be a non-empty 1-D array, got shape {g.shape}"
        )
    return g


def _check_excess(names, cover, gt_len, clip_len, max_pad_clips):
    """Raise if clips cover > max_pad_clips clips past a video's GT; warn once if any video is
    padded."""
    excess = cover - gt_len
    too_long = np.flatnonzero(excess > max_pad_clips * clip_len)
    if too_long.size:
        v = too_long[0]
        raise InputError(
            f"video '{names[v]}': {cover[v] // clip_len} clips x {clip_len} = {cover[v]} frames "
            f"but its GT has {gt_len[v]} frames ({too_long.size} such video(s)); check the feature "
            f"file and the clip length, or raise TEST.MAX_PAD_CLIPS (now {max_pad_clips}) to "
            "pad the GT with its last value"
        )
    # beyond the unscored n % 16 tail, one clip short is the official protocol's own mismatch (the
    # authors'
    # ShanghaiTech C3D features have one clip fewer than n // 16 for 26 videos); more is another
    # video
    too_short = np.flatnonzero(-excess >= (2 + max_pad_clips) * clip_len)
    if too_short.size:
        v = too_short[0]
        raise InputError(
            f"video '{names[v]}': its GT (mask / annotation) has {gt_len[v]} frames but its"
            f" {cover[v] // clip_len} clip scores cover only {cover[v]} ({too_short.size} such"
            " video(s)): the scores, features or mask belong to another version of the video;"
            f" check them, or raise TEST.MAX_PAD_CLIPS (now {max_pad_clips}) to leave that many"
            " clips of GT unscored"
        )
    short = -excess >= clip_len
    if short.any():
        warnings.warn(
            f"{short.sum()} video(s) have one clip of GT past their scores (not evaluated), e.g. "
            f"'{names[int(np.flatnonzero(short)[0])]}'",
            stacklevel=3,
        )
    padded = excess > 0
    if padded.any():
        warnings.warn(
            f"padded the GT of {padded.sum()} video(s) by {excess[padded].sum()} frames in all, "
            "repeating each one's last label, because their clip scores cover more frames than "
            f"the GT (at most TEST.MAX_PAD_CLIPS={max_pad_clips} clips allowed)",
            stacklevel=3,
        )


def clip_table(clip_scores, labels, names, clip_len=16, max_pad_clips=0):
    """Per-clip form of `expand_to_frames` -> (scores float64 (C,), positives int64 (C,), offsets
    (V+1,)).

    Clip c covers clip_len frames; positives[c] of them are anomalous under the same truncation and
    last-value padding rules. Video names[v] owns clips [offsets[v], offsets[v+1]).
    """
    scores = [_clip_scores(clip_scores, name) for name in names]
    gts = [_frame_gt(labels, name) for name in names]
    n_clips = np.array([len(s) for s in scores], dtype=np.int64)
    gt_len = np.array([len(g) for g in gts], dtype=np.int64)
    _check_excess(names, clip_len * n_clips, gt_len, clip_len, max_pad_clips)
    gt = np.concatenate(gts)
    gt_start = np.concatenate([[0], np.cumsum(gt_len)[:-1]])
    # frames [lo, hi) of a clip inside its video's GT, counted with prefix sums; frames past the GT
    # repeat
    # its last label (padding)
    video = np.repeat(np.arange(len(names)), n_clips)
    first = clip_len * (np.arange(n_clips.sum()) - np.repeat(np.cumsum(n_clips) - n_clips, n_clips))
    lo = gt_start[video] + np.minimum(first, gt_len[video])
    hi = gt_start[video] + np.minimum(first + clip_len, gt_len[video])
    _check_binary(gt, lo, hi)
    positive = np.concatenate([[0], np.cumsum(gt != 0, dtype=np.int64)])
    last = (gt[gt_start + gt_len - 1] != 0).astype(np.int64)[video]
    counts = positive[hi] - positive[lo] + (clip_len - (hi - lo)) * last
    return np.concatenate(scores), counts, np.concatenate([[0], np.cumsum(n_clips)])


def _check_binary(gt, lo, hi):
    """Raise like utils.metrics if a GT frame inside a scored clip is not 0/1."""
    bad = (gt != 0) & (gt != 1)
    if not bad.any():
        return
    count = np.concatenate([[0], np.cumsum(bad)])
    if (count[hi] - count[lo]).any():
        raise InputError(f"evaluate: labels must be 0/1, got values {np.unique(gt)[:5]}")


class _Rows:
    """Weighted rows of the clip table: (score, label, frame count) per clip and label present.

    Rows are sorted by descending score once, so every subset arrives sorted and sklearn's stable
    sort of it is a linear pass (the order among tied scores never changes a curve: thresholds are
    distinct scores)."""

    def __init__(self, scores, positives, clip_len):
        has_pos, has_neg = positives > 0, positives < clip_len
        clip = np.concatenate([np.flatnonzero(has_pos), np.flatnonzero(has_neg)])
        y = np.repeat([1.0, 0.0], [has_pos.sum(), has_neg.sum()])
        w = np.concatenate([positives[has_pos], clip_len - positives[has_neg]]).astype(np.float64)
        order = np.argsort(-scores[clip], kind="stable")
        self.clip, self.s, self.y, self.w = clip[order], scores[clip[order]], y[order], w[order]

    def subset(self, clip_mask):
        """-> (s, y, w) of the rows of the clips where clip_mask (C,) is True."""
        keep = clip_mask[self.clip]
        return self.s[keep], self.y[keep], self.w[keep]


def evaluate(clip_scores, labels, videos, clip_len=16, threshold=0.5, max_pad_clips=0):
    """Pooled frame metrics of a test split -> JSON-serialisable dict.

    clip_scores {name: (n_clips,)}, labels {name: (n_frames,)}, videos: list[Video] (order = concat
    order). Keys: auc, ap, pr_auc, score_gap, far (FP / all negative frames, training-log FAR),
    far_normal_videos (official test.py FAR; None without normal videos), rmse, n_frames, n_clips,
    n_anomalous_frames, n_videos; auc_abnormal (frame ROC AUC over the frames of the abnormal
    videos only, "AUC_A"; None unless they hold both normal and anomalous frames); map_iou
    {"0.1", ..., "0.5": temporal localisation mAP at that IoU (utils/localisation.py), None
    without GT intervals} and map_mean (their mean); per_class ({} unless videos carry anomaly
    categories; each class adds its auc_abnormal and map_mean). Equal to the metrics of the
    expanded frame arrays (bit-identical except score_gap/rmse, ~1e-16)."""
    names = [v.name for v in videos]
    scores, positives, offsets = clip_table(clip_scores, labels, names, clip_len, max_pad_clips)
    clip_video = np.repeat(np.arange(len(videos)), np.diff(offsets))
    normal_videos = np.array([v.label == 0 for v in videos], dtype=bool)
    normal = normal_videos[clip_video]
    rows = _Rows(scores, positives, clip_len)
    s, y, w = rows.s, rows.y, rows.w
    result = {
        "auc": frame_auc(s, y, w),
        "ap": average_precision(s, y, w),
        "pr_auc": pr_auc(s, y, w),
        "score_gap": score_gap(s, y, w),
        "far": false_alarm_rate(s, y, threshold, w),
        "far_normal_videos": _far_or_none(scores[normal], threshold, clip_len),
        "rmse": rmse(s, y, w),
        "n_frames": int(clip_len * len(scores)),
        "n_clips": int(len(scores)),
        "n_anomalous_frames": int(positives.sum()),
        "n_videos": len(videos),
        "auc_abnormal": _auc_or_none(*rows.subset(~normal)),
    }
    groups, classes = _class_videos(videos)
    # the frames the metrics see: every whole clip, the GT cut or padded to them (clip_table)
    gt = gt_intervals([np.asarray(labels[n]) for n in names], clip_len * np.diff(offsets))
    det = detections(scores, offsets, clip_len)
    result["map_iou"], class_aps = localisation_map(det, gt, groups)
    result["map_mean"] = _mean_or_none(result["map_iou"].values())
    result["per_class"] = _per_class(scores, rows, clip_video, videos, threshold, clip_len)
    for c, ap in zip(classes, class_aps):
        result["per_class"][c]["map_mean"] = None if ap is None else float(np.mean(ap))
    return result


def _class_videos(videos):
    """-> (groups (G, V) bool, classes): the videos each mAP class is computed on, that class's
    abnormal videos + all normal ones; one group of all videos (classes []) without categories."""
    categories = np.array([v.category for v in videos])
    normal = np.array([v.label == 0 for v in videos], dtype=bool)
    classes = sorted(set(categories[~normal]) - {"", "Normal"})
    if not classes:
        return np.ones((1, len(videos)), dtype=bool), []
    return np.stack([normal | ((categories == c) & ~normal) for c in classes]), classes


def _auc_or_none(s, y, w):
    """Frame AUC of weighted rows; None unless both labels are present."""
    return frame_auc(s, y, w) if (y == 1).any() and (y == 0).any() else None


def _mean_or_none(values):
    """Mean of the values; None if any is None (no GT interval anywhere)."""
    values = list(values)
    return None if any(v is None for v in values) else float(np.mean(values))


def _far_or_none(normal_scores, threshold, clip_len=1):
    """Official test.py FAR over the frames of normal videos (all label 0); None if there are none.

    normal_scores: one per clip of the normal videos, each standing for clip_len frames.
    """
    if len(normal_scores) == 0:
        return None
    weight = None if clip_len == 1 else np.full(len(normal_scores), float(clip_len))
    return false_alarm_rate(normal_scores, np.zeros(len(normal_scores)), threshold, weight)


def _per_class(scores, rows, clip_video, videos, threshold, clip_len):
    """{category: {auc, pr_auc, score_gap, far, auc_abnormal, n_videos}}, 'Normal': {far,
    n_videos}; {} without categories."""
    categories = np.array([v.category for v in videos])
    normal_videos = np.array([v.label == 0 for v in videos])
    classes = sorted(set(categories[~normal_videos]) - {"", "Normal"})
    if not classes:
        return {}
    normal_clips = normal_videos[clip_video]
    out = {
        "Normal": {
            "far": _far_or_none(scores[normal_clips], threshold, clip_len),
            "n_videos": int(normal_videos.sum()),
        }
    }
    for c in classes:
        # docs/REFERENCE.md §4.4: official eval_each_part (never called) scores a class on its own
        # frames alone; we
        # use that class's abnormal videos + ALL normal test videos, the convention of later papers.
        in_class = (categories == c) & ~normal_videos
        out[c] = _class_metrics(*rows.subset(normal_clips | in_class[clip_video]), threshold)
        out[c]["auc_abnormal"] = _auc_or_none(*rows.subset(in_class[clip_video]))
        out[c]["n_videos"] = int(in_class.sum())
    return out


def _class_metrics(s, y, w, threshold):
    """auc / pr_auc / score_gap (None when one class is absent) and far over the class subset's
    rows."""
    has_pos, has_neg = (y == 1).any(), (y == 0).any()
    both = has_pos and has_neg
    return {
        "auc": frame_auc(s, y, w) if both else None,
        "pr_auc": pr_auc(s, y, w) if both else None,
        "score_gap": score_gap(s, y, w) if both else None,
        "far": false_alarm_rate(s, y, threshold, w) if has_neg else None,
    }
