"""Pseudo-labels: refinement of generator scores and the files stage 2 reads (docs/REFERENCE.md
§1.7)."""

from pathlib import Path

import numpy as np

from utils.checkpoint import atomic_write
from utils.legacy import read_pickled_dict
from utils.npy_files import load_npz
from utils.errors import InputError, NotFoundError


def smooth(scores, kernel=5):
    """Box moving average with edge replication; scores: (n,) -> float64 (n,), same length."""
    if kernel < 1 or kernel % 2 == 0:
        raise InputError(
            f"smoothing kernel must be a positive odd integer, got {kernel} (PSEUDO_LABEL.KERNEL)"
        )
    padded = np.pad(np.asarray(scores, dtype=np.float64), kernel // 2, mode="edge")
    return np.convolve(padded, np.ones(kernel) / kernel, mode="valid")


def refine_scores(scores, abnormal, kernel=5, passes=2):
    """Generator clip scores (n,) -> pseudo-labels float64 (n,).

    Smoothed `passes` times (official: box 5, twice); abnormal videos are then min-max normalised to
    [0, 1] (a constant vector gives zeros where the official code gives NaN); normal videos keep
    smoothed scores, as in the official files (stage 2 labels normal clips 0 by default anyway)."""
    refined = np.atleast_1d(np.asarray(scores, dtype=np.float64))
    if refined.ndim != 1 or refined.size == 0:
        raise InputError(f"scores must be a non-empty 1-D array, got shape {np.shape(scores)}")
    for _ in range(passes):
        refined = smooth(refined, kernel)
    if abnormal and refined.size >= 2:  # official: no min-max for a 1-clip video
        span = refined.max() - refined.min()
        refined = (refined - refined.min()) / span if span > 0 else np.zeros_like(refined)
    return refined


def refine_all(scores, labels, kernel=5, passes=2):
    """scores: {video: (n,)}, labels: {video: 0|1} -> {video: pseudo-labels (n,)}."""
    return {name: refine_scores(s, labels[name], kernel, passes) for name, s in scores.items()}


def save_pseudo_labels(path, pseudo_labels):
    """Writes `<path>.npy` (official pickled dict, keys '<video>.npy') and `<path>.npz` (keys
    '<video>').

    Each file is written to a temporary name and renamed, so an interrupted run leaves no partial
    file."""
    path = Path(path)
    official = np.empty((), dtype=object)
    official[()] = {
        f"{name}.npy": np.asarray(v, dtype=np.float64) for name, v in pseudo_labels.items()
    }
    atomic_write(path.with_suffix(".npy"), lambda f: np.save(f, official))
    atomic_write(path.with_suffix(".npz"), lambda f: np.savez(f, **pseudo_labels))


def load_score_dict(path):
    """Our `.npz` or the official pickled `.npy` (ours or the authors') -> {video (no '.npy'):
    float64 (n,)}."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(
            f"pseudo-label file {path} does not exist (run tools/train_stage1.py to make one)"
        )
    if path.suffix == ".npz":
        raw = load_npz(path)
    else:
        raw = read_pickled_dict(path)
    return {_strip_npy(name): np.atleast_1d(v).astype(np.float64) for name, v in raw.items()}


def _strip_npy(name):
    return name[: -len(".npy")] if name.endswith(".npy") else name


def pseudo_label_auc(pseudo_labels, masks, clip_len=16):
    """Pooled frame AUC of pseudo-labels against per-frame masks (paper Table 7), over the masked
    videos.

    pseudo_labels: {video: (n_clips,)}; masks: {video: uint8 (n_frames,)}; None when there are no
    masks."""
    from utils.evaluation import expand_to_frames
    from utils.metrics import frame_auc

    names = [name for name in masks if name in pseudo_labels]
    if not names:
        return None
    scores, labels, _ = expand_to_frames(pseudo_labels, masks, names, clip_len=clip_len)
    return frame_auc(scores, labels)
