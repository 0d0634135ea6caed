"""Frame-level anomaly metrics, as the official `utils/eval_utils.py` computes them
(docs/REFERENCE.md §4.3).

Every function takes 1-D frame arrays: scores (F,) finite floats, labels (F,) 0/1 (int or float),
and returns a Python float. sklearn does the curves; nothing here re-implements ROC or PR.

sample_weight (F,) non-negative, optional: row i stands for sample_weight[i] frames with that score
and label. utils.evaluation passes one row per (clip, label) with its frame count as the weight
(every frame of a clip shares one score): sklearn then builds the same curves from ~16x fewer rows.
With integer weights the cumulative true/false positive counts are exact integers either way, so
AUC, AP, PR-AUC and FAR are bit-identical to the frame arrays; score_gap and rmse are weighted means
(equal to ~1e-16 relative)."""

import numpy as np
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve
from utils.errors import InputError

__all__ = ["frame_auc", "false_alarm_rate", "pr_auc", "average_precision", "score_gap", "rmse"]


def frame_auc(scores, labels, sample_weight=None):
    """Frame ROC-AUC: roc_curve then trapezoid auc (official cal_auc) -> float."""
    s, y, w = _check(scores, labels, "frame_auc", need=(0, 1), weight=sample_weight)
    fpr, tpr, _ = roc_curve(y, s, pos_label=1, sample_weight=w)
    return float(auc(fpr, tpr))


def false_alarm_rate(scores, labels, threshold=0.5, sample_weight=None):
    """#(score > threshold and label 0) / #(label 0), strict '>' (official cal_false_alarm) ->
    float.

    Over all negative frames this is the training-log FAR; over the frames of normal videos only
    (labels all 0) it is the official test.py FAR (docs/REFERENCE.md §4.3).
    """
    s, y, w = _check(scores, labels, "false_alarm_rate", need=(0,), weight=sample_weight)
    negative = y == 0
    if w is None:
        return float(np.count_nonzero(s[negative] > threshold) / np.count_nonzero(negative))
    return float(w[negative & (s > threshold)].sum() / w[negative].sum())


def pr_auc(scores, labels, sample_weight=None):
    """Trapezoid area under precision_recall_curve (official cal_pr_auc; not average precision) ->
    float."""
    s, y, w = _check(scores, labels, "pr_auc", need=(0, 1), weight=sample_weight)
    precision, recall, _ = precision_recall_curve(y, s, pos_label=1, sample_weight=w)
    return float(auc(recall, precision))


def average_precision(scores, labels, sample_weight=None):
    """sklearn average_precision_score, the XD-Violence headline metric -> float."""
    s, y, w = _check(scores, labels, "average_precision", need=(0, 1), weight=sample_weight)
    return float(average_precision_score(y, s, pos_label=1, sample_weight=w))


def score_gap(scores, labels, sample_weight=None):
    """mean score of anomalous frames - mean score of normal frames (official cal_score_gap) ->
    float."""
    s, y, w = _check(scores, labels, "score_gap", need=(0, 1), weight=sample_weight)
    if w is None:
        return float(s[y == 1].mean() - s[y == 0].mean())
    pos, neg = y == 1, y == 0
    return float(np.average(s[pos], weights=w[pos]) - np.average(s[neg], weights=w[neg]))


def rmse(scores, labels, sample_weight=None):
    """sqrt(mean((labels - scores)^2)) (official cal_rmse) -> float."""
    s, y, w = _check(scores, labels, "rmse", need=(), weight=sample_weight)
    return float(np.sqrt(np.average((y - s) ** 2, weights=w)))


def _check(scores, labels, metric, need, weight=None):
    """-> (scores float64 (F,), labels float64 (F,), weights float64 (F,) or None); raises on bad
    shapes, values or missing classes. Rows of weight 0 count as absent."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if s.ndim != 1 or y.ndim != 1 or len(s) != len(y):
        raise InputError(
            f"{metric}: scores and labels must be 1-D frame arrays of one length, got shapes "
            f"{s.shape} and {y.shape}; expand clip scores to frames first "
            "(utils.evaluation.expand_to_frames)"
        )
    w = None if weight is None else _check_weight(weight, len(s), metric)
    if len(s) == 0 or (w is not None and not w.any()):
        raise InputError(f"{metric}: no frames to score (empty scores and labels)")
    bad = ~np.isfinite(s)
    if bad.any():
        raise InputError(
            f"{metric}: {bad.sum()} of {len(s)} scores are NaN or inf (first at frame "
            f"{np.flatnonzero(bad)[0]}); check the model output (diverged training?)"
        )
    if not ((y == 0) | (y == 1)).all():
        raise InputError(f"{metric}: labels must be 0/1, got values {np.unique(y)[:5]}")
    present = y if w is None else y[w > 0]
    for cls, what in ((0, "normal (label 0)"), (1, "anomalous (label 1)")):
        if cls in need and not (present == cls).any():
            needed = "both classes" if len(need) == 2 else f"{what} frames"
            raise InputError(
                f"{metric}: only one class present, no {what} frames among {len(y)}; "
                f"{metric} needs {needed}"
            )
    return s, y, w


def _check_weight(weight, n, metric):
    w = np.asarray(weight, dtype=np.float64)
    if w.shape != (n,):
        raise InputError(
            f"{metric}: sample_weight must have shape ({n},) like the scores, got {w.shape}"
        )
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise InputError(f"{metric}: sample_weight must be finite and >= 0")
    return w
