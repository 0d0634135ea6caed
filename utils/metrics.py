"""Frame-level anomaly metrics, as the official `utils/eval_utils.py` computes them (REFERENCE §4.3).

Every function takes 1-D frame arrays: scores (F,) finite floats, labels (F,) 0/1 (int or float), and
returns a Python float. sklearn does the curves; nothing here re-implements ROC or PR.
"""
import numpy as np
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

__all__ = ['frame_auc', 'false_alarm_rate', 'pr_auc', 'average_precision', 'score_gap', 'rmse']


def frame_auc(scores, labels):
    """Frame ROC-AUC: roc_curve then trapezoid auc (official cal_auc) -> float."""
    s, y = _check(scores, labels, 'frame_auc', need=(0, 1))
    fpr, tpr, _ = roc_curve(y, s, pos_label=1)
    return float(auc(fpr, tpr))


def false_alarm_rate(scores, labels, threshold=0.5):
    """#(score > threshold and label 0) / #(label 0), strict '>' (official cal_false_alarm) -> float.

    Over all negative frames this is the training-log FAR; over the frames of normal videos only
    (labels all 0) it is the official test.py FAR (REFERENCE §4.3).
    """
    s, y = _check(scores, labels, 'false_alarm_rate', need=(0,))
    negative = y == 0
    return float(np.count_nonzero(s[negative] > threshold) / np.count_nonzero(negative))


def pr_auc(scores, labels):
    """Trapezoid area under precision_recall_curve (official cal_pr_auc; not average precision) -> float."""
    s, y = _check(scores, labels, 'pr_auc', need=(0, 1))
    precision, recall, _ = precision_recall_curve(y, s, pos_label=1)
    return float(auc(recall, precision))


def average_precision(scores, labels):
    """sklearn average_precision_score, the XD-Violence headline metric -> float."""
    s, y = _check(scores, labels, 'average_precision', need=(0, 1))
    return float(average_precision_score(y, s, pos_label=1))


def score_gap(scores, labels):
    """mean score of anomalous frames - mean score of normal frames (official cal_score_gap) -> float."""
    s, y = _check(scores, labels, 'score_gap', need=(0, 1))
    return float(s[y == 1].mean() - s[y == 0].mean())


def rmse(scores, labels):
    """sqrt(mean((labels - scores)^2)) (official cal_rmse) -> float."""
    s, y = _check(scores, labels, 'rmse', need=())
    return float(np.sqrt(np.mean((y - s) ** 2)))


def _check(scores, labels, metric, need):
    """-> (scores float64 (F,), labels float64 (F,)); raises on bad shapes, values or missing classes."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if s.ndim != 1 or y.ndim != 1 or len(s) != len(y):
        raise ValueError(f"{metric}: scores and labels must be 1-D frame arrays of one length, got shapes "
                         f"{s.shape} and {y.shape}; expand clip scores to frames first "
                         f"(utils.evaluation.expand_to_frames)")
    if len(s) == 0:
        raise ValueError(f"{metric}: no frames to score (empty scores and labels)")
    bad = ~np.isfinite(s)
    if bad.any():
        raise ValueError(f"{metric}: {bad.sum()} of {len(s)} scores are NaN or inf (first at frame "
                         f"{np.flatnonzero(bad)[0]}); check the model output (diverged training?)")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{metric}: labels must be 0/1, got values {np.unique(y)[:5]}")
    for cls, what in ((0, 'normal (label 0)'), (1, 'anomalous (label 1)')):
        if cls in need and not (y == cls).any():
            needed = 'both classes' if len(need) == 2 else f'{what} frames'
            raise ValueError(f"{metric}: only one class present, no {what} frames among {len(y)}; "
                             f"{metric} needs {needed}")
    return s, y
