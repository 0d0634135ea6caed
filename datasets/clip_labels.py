"""Stage-2 clip positions and clip labels from pseudo-labels (docs/REFERENCE.md §3.6, §6.15, §6.16).

A training clip is 16 consecutive frames starting `begin` frames into segment c (begin in [0, 15]),
so it covers the last 16 - begin frames of segment c and the first `begin` frames of segment c + 1.
Its label is built from the two segments' pseudo-labels (PL[c], PL[c + 1]); see `clip_labels` for
the three rules."""

import warnings

import numpy as np
from utils.errors import InputError

LABEL_MODES = ("interp", "interp_official", "max")
NORMAL_LABELS = ("zero", "pseudo")


def random_perturb(num_positions, clip_num, rng):
    """Official stratified sampler (utils.py:91-111): -> int64 (clip_num,), each in [0, max(v - 1,
    0)].

    v = num_positions (stage 2 passes n_segments - 1, so that segment c + 1 exists). Stratum i
    starts at p_i = i*v/n; position i is uniform over [floor(p_i), floor(p_{i+1})] (inclusive, so
    neighbouring strata share an end point), the last one over [floor(p_last), v - 1]. When v <
    clip_num positions repeat; v = 0 (a one-segment video) gives all zeros. rng:
    np.random.Generator."""
    if num_positions < 0 or clip_num < 1:
        raise InputError(
            f"random_perturb needs num_positions >= 0 and clip_num >= 1, got {num_positions},"
            f" {clip_num}"
        )
    i = np.arange(clip_num, dtype=np.int64)
    # floor(i*v/n) in integers; equals the official float version
    low = i * num_positions // clip_num
    high = np.append(low[1:], num_positions - 1)
    high = np.maximum(high, low)  # v = 0: the last stratum [0, -1] is empty -> 0, as official
    return rng.integers(low, high + 1).astype(np.int64)


def align_pseudo_labels(pl, n_segments, name, tolerance=1):
    """Pseudo-labels (m,) -> float64 (n_segments,): the one alignment rule for PLs of another
    length.

    Shorter (e.g. C3D PLs have floor((n-8)/16) rows, one fewer than the frame segments for some
    videos, §1.1): padded with the last value, as the official code falls back to PL[-1] past the
    end. Longer: the tail is dropped. A difference of more than `tolerance` segments also warns,
    naming the video."""
    pl = np.atleast_1d(np.asarray(pl, dtype=np.float64))
    if pl.ndim != 1 or pl.size == 0:
        raise InputError(
            f"video '{name}' has empty or non-1-D pseudo-labels (shape {pl.shape}); regenerate the "
            "pseudo-label file with tools/train_stage1.py"
        )
    outside = np.flatnonzero(~((pl >= 0.0) & (pl <= 1.0)))  # NaN included
    if outside.size:
        raise InputError(
            f"video '{name}': {outside.size} of its {pl.size} pseudo-labels are outside [0, 1] or"
            f" NaN (first: {pl[outside[0]]} at segment {outside[0]}); pseudo-labels are min-max"
            " normalised scores: regenerate the file (DATA.PSEUDO_LABELS) with"
            " tools/train_stage1.py"
        )
    if abs(pl.size - n_segments) > tolerance:
        fix = "padding with the last value" if pl.size < n_segments else "dropping the tail"
        warnings.warn(
            f"video '{name}': {pl.size} pseudo-labels for {n_segments} frame segments (more than "
            f"{tolerance} apart), {fix}; were the pseudo-labels made from features of other"
            " frames?",
            stacklevel=2,
        )
    if pl.size >= n_segments:
        return pl[:n_segments].copy()
    return np.concatenate([pl, np.full(n_segments - pl.size, pl[-1])])


def clip_labels(pl, c, begin, segment_len=16, mode="interp"):
    """Vectorised clip labels: pl (m,), c and begin int arrays (k,) -> float64 (k,).

    mode 'interp' (default): ((L - begin)/L)*PL[c] + (begin/L)*PL[c+1], the frame-weighted share of
    each
      segment; 'interp_official': the official SHT-I3D weights (begin/L)*PL[c] + ((L -
      begin)/L)*PL[c+1], inverted (§6.15: begin 0 labels a clip that lies entirely in segment c with
      PL[c+1]); 'max': max(PL[c], PL[c+1]) (official C3D rule).
    Fallbacks as official: c >= m -> PL[-1]; c = m - 1 (no c + 1) -> PL[c].
    """
    if mode not in LABEL_MODES:
        raise InputError(f"unknown clip label mode {mode!r}; use one of {LABEL_MODES}")
    pl = np.asarray(pl, dtype=np.float64)
    c, begin = np.broadcast_arrays(np.asarray(c, dtype=np.int64), np.asarray(begin, dtype=np.int64))
    here = pl[np.minimum(c, pl.size - 1)]  # c >= m -> PL[-1]
    nxt = np.where(c + 1 < pl.size, pl[np.minimum(c + 1, pl.size - 1)], here)  # no c + 1 -> PL[c]
    w_next = begin / segment_len
    if mode == "interp":
        return (1.0 - w_next) * here + w_next * nxt
    if mode == "interp_official":  # official inverted weights, kept for parity experiments (§6.15)
        return w_next * here + (1.0 - w_next) * nxt
    return np.maximum(here, nxt)


def clip_label(pl, c, begin, segment_len=16, mode="interp"):
    """Scalar `clip_labels`: label of the clip starting `begin` frames into segment c -> float."""
    return float(clip_labels(pl, [c], [begin], segment_len, mode)[0])


def video_clip_labels(
    video_label,
    pl,
    positions,
    begins,
    mode="interp",
    normal_label="zero",
    hard=False,
    segment_len=16,
):
    """Soft labels [1 - s, s] of one video's clips -> float32 (clip_num, 2).

    Abnormal videos: s from `clip_labels`. Normal videos: s = 0 with normal_label 'zero' (paper,
    official SHT) or from their own pseudo-labels with 'pseudo' (official UCF-C3D, §6.16).
    hard=True: every clip takes the video label (the "w/o PLs" ablation). pl may be None where it is
    not used."""
    if normal_label not in NORMAL_LABELS:
        raise InputError(f"unknown normal-video label {normal_label!r}; use one of {NORMAL_LABELS}")
    positions = np.asarray(positions)
    if hard or (video_label == 0 and normal_label == "zero"):
        s = np.full(positions.shape, float(video_label))
    else:
        if pl is None:
            raise InputError(
                f"soft labels of a {'normal' if video_label == 0 else 'abnormal'} video need its "
                "pseudo-labels, got None"
            )
        s = clip_labels(pl, positions, begins, segment_len, mode)
    return np.stack([1.0 - s, s], axis=-1).astype(np.float32)
