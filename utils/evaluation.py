"""The one evaluation path of stage 1 and stage 2: clip scores -> frame scores -> metrics (REFERENCE §4).

Official rule (§1.6, §4.2): each clip score is repeated clip_len times and the GT is cut to the first
clip_len * n_clips frames, so the trailing n_frames % clip_len frames are never scored. All videos are
concatenated and the metrics are pooled over frames.
"""
import warnings

import numpy as np

from utils.metrics import average_precision, false_alarm_rate, frame_auc, pr_auc, rmse, score_gap


def expand_to_frames(clip_scores, labels, names, clip_len=16, max_pad_clips=0):
    """clip_scores {name: (n_clips,)}, labels {name: (n_frames,)} -> (scores (F,), labels (F,), offsets (V+1,)).

    Video names[v] owns frames [offsets[v], offsets[v+1]) with F = clip_len * sum(n_clips). If a video's
    clips cover more frames than its GT by at most max_pad_clips clips, the GT is extended with its last
    value (RTFM convention) and one warning is emitted; a larger excess is an error.
    """
    scores = [_clip_scores(clip_scores, name) for name in names]
    gts = [_frame_gt(labels, name) for name in names]
    cover = clip_len * np.array([len(s) for s in scores], dtype=np.int64)
    gt_len = np.array([len(g) for g in gts], dtype=np.int64)
    _check_excess(names, cover, gt_len, clip_len, max_pad_clips)
    offsets = np.concatenate([[0], np.cumsum(cover)])
    gt_offsets = np.concatenate([[0], np.cumsum(gt_len)])
    # frame j of video v reads GT frame min(j, gt_len[v] - 1): truncation and last-value padding at once
    j = np.arange(offsets[-1]) - np.repeat(offsets[:-1], cover)
    src = np.repeat(gt_offsets[:-1], cover) + np.minimum(j, np.repeat(gt_len - 1, cover))
    frame_scores = np.repeat(np.concatenate(scores), clip_len)
    return frame_scores, np.concatenate(gts)[src], offsets


def _clip_scores(clip_scores, name):
    if name not in clip_scores:
        raise KeyError(f"no clip scores for video '{name}' (score keys look like "
                       f"{list(clip_scores)[:2]}); score every test video, with keys equal to the split's names")
    s = np.asarray(clip_scores[name], dtype=np.float64)
    s = s.reshape(1) if s.ndim == 0 else s  # a 1-clip video squeezed to 0-d (REFERENCE §1.7)
    if s.ndim != 1 or len(s) == 0:
        raise ValueError(f"clip scores of video '{name}' must be 1-D with one score per clip, got shape "
                         f"{s.shape}; pass scores.reshape(-1)")
    return s


def _frame_gt(labels, name):
    if name not in labels:
        raise KeyError(f"no frame labels for video '{name}' (label keys look like {list(labels)[:2]}); "
                       f"build them with datasets.ground_truth.frame_labels on the same split")
    g = np.asarray(labels[name])
    if g.ndim != 1 or len(g) == 0:
        raise ValueError(f"frame labels of video '{name}' must be a non-empty 1-D array, got shape {g.shape}")
    return g


def _check_excess(names, cover, gt_len, clip_len, max_pad_clips):
    """Raise if clips cover > max_pad_clips clips past a video's GT; warn once if any video is padded."""
    excess = cover - gt_len
    too_long = np.flatnonzero(excess > max_pad_clips * clip_len)
    if too_long.size:
        v = too_long[0]
        raise ValueError(f"video '{names[v]}': {cover[v] // clip_len} clips x {clip_len} = {cover[v]} frames "
                         f"but its GT has {gt_len[v]} frames ({too_long.size} such video(s)); check the feature "
                         f"file and the clip length, or raise TEST.MAX_PAD_CLIPS (now {max_pad_clips}) to "
                         f"pad the GT with its last value")
    padded = excess > 0
    if padded.any():
        warnings.warn(f"padded the GT of {padded.sum()} video(s) by {excess[padded].sum()} frames in all, "
                      f"repeating each one's last label, because their clip scores cover more frames than "
                      f"the GT (at most TEST.MAX_PAD_CLIPS={max_pad_clips} clips allowed)", stacklevel=3)


def evaluate(clip_scores, labels, videos, clip_len=16, threshold=0.5, max_pad_clips=0):
    """Pooled frame metrics of a test split -> JSON-serialisable dict.

    clip_scores {name: (n_clips,)}, labels {name: (n_frames,)}, videos: list[Video] (order = concat order).
    Keys: auc, ap, pr_auc, score_gap, far (FP / all negative frames, training-log FAR), far_normal_videos
    (official test.py FAR; None without normal videos), rmse, n_frames, n_clips, n_anomalous_frames,
    n_videos, per_class ({} unless videos carry anomaly categories).
    """
    names = [v.name for v in videos]
    s, y, offsets = expand_to_frames(clip_scores, labels, names, clip_len, max_pad_clips)
    frame_video = np.repeat(np.arange(len(videos)), np.diff(offsets))
    normal = np.array([v.label == 0 for v in videos], dtype=bool)[frame_video]
    result = {'auc': frame_auc(s, y), 'ap': average_precision(s, y), 'pr_auc': pr_auc(s, y),
              'score_gap': score_gap(s, y), 'far': false_alarm_rate(s, y, threshold),
              'far_normal_videos': _far_or_none(s[normal], threshold), 'rmse': rmse(s, y),
              'n_frames': int(len(s)), 'n_clips': int(len(s) // clip_len),
              'n_anomalous_frames': int(np.count_nonzero(y)), 'n_videos': len(videos)}
    result['per_class'] = _per_class(s, y, frame_video, videos, threshold)
    return result


def _far_or_none(normal_scores, threshold):
    """Official test.py FAR over the frames of normal videos (all label 0); None if there are none."""
    if len(normal_scores) == 0:
        return None
    return false_alarm_rate(normal_scores, np.zeros(len(normal_scores)), threshold)


def _per_class(s, y, frame_video, videos, threshold):
    """{category: {auc, pr_auc, score_gap, far, n_videos}}, 'Normal': {far, n_videos}; {} without categories."""
    categories = np.array([v.category for v in videos])
    normal_videos = np.array([v.label == 0 for v in videos])
    classes = sorted(set(categories[~normal_videos]) - {'', 'Normal'})
    if not classes:
        return {}
    normal_frames = normal_videos[frame_video]
    out = {'Normal': {'far': _far_or_none(s[normal_frames], threshold), 'n_videos': int(normal_videos.sum())}}
    for c in classes:
        # REFERENCE §4.4: official eval_each_part (never called) scores a class on its own frames alone; we
        # use that class's abnormal videos + ALL normal test videos, the convention of later papers.
        pick = normal_frames | ((categories == c) & ~normal_videos)[frame_video]
        out[c] = _class_metrics(s[pick], y[pick], threshold)
        out[c]['n_videos'] = int(((categories == c) & ~normal_videos).sum())
    return out


def _class_metrics(s, y, threshold):
    """auc / pr_auc / score_gap (None when one class is absent) and far over the class subset's frames."""
    both = 0 < np.count_nonzero(y) < len(y)
    return {'auc': frame_auc(s, y) if both else None, 'pr_auc': pr_auc(s, y) if both else None,
            'score_gap': score_gap(s, y) if both else None,
            'far': false_alarm_rate(s, y, threshold) if (y == 0).any() else None}
