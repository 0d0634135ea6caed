"""Sparse continuous sampling of a video's clips into L sub-bags of T consecutive clips (stage 1).

docs/REFERENCE.md §1.3. The official default is called 'uniform' there, although it samples
continuous sub-bags; the paper's Table 4 baseline of L x T isolated clips is our 'isolated'."""

import numpy as np
from utils.errors import InputError

MODES = ("uniform", "random", "isolated")


def _shortened(num_clips, part_num, part_len):
    """Videos shorter than T: every sub-bag stretches the whole video over T slots (clips repeat).

    The official code raises IndexError here (docs/REFERENCE.md §1.3, §6.10).
    """
    sub_bag = np.arange(part_len) * num_clips // part_len
    return np.tile(sub_bag, part_num)


def _continuous(num_clips, part_num, part_len, shifts):
    """Starts at linspace(0, F-T, L+1) (+ shifts), expanded to T clips each; the 33rd sub-bag is
    dropped."""
    starts = np.linspace(0, num_clips - part_len, part_num + 1, dtype=int) + shifts
    # official code drops the (L+1)-th sub-bag; kept for parity (§1.3 step 4)
    return (starts[:, None] + np.arange(part_len)).reshape(-1)[: part_num * part_len]


def sparse_continuous_sample(num_clips, part_num, part_len, mode, rng):
    """Clip indices for one video: int64 (part_num * part_len,), each in [0, num_clips).

    num_clips: F, clips in the video; part_num: L sub-bags; part_len: T clips per sub-bag; mode:
    'uniform' (one random shift shared by all sub-bags, official default), 'random' (one shift per
    sub-bag, official option) or 'isolated' (L*T evenly spread single clips, the paper's baseline);
    rng: np.random.Generator."""
    if mode not in MODES:
        raise InputError(f"unknown sampling mode {mode!r}; use one of {MODES}")
    if num_clips < 1:
        raise InputError(
            f"cannot sample a video with {num_clips} clips; every video needs at least one clip"
        )
    if mode == "isolated":
        total = part_num * part_len
        return ((np.arange(total) + rng.random()) * num_clips // total).astype(np.int64)
    if num_clips < part_len:
        return _shortened(num_clips, part_num, part_len).astype(np.int64)
    max_move = (num_clips - part_len) // (part_num + 1)
    if mode == "uniform":
        shifts = rng.integers(max_move) if max_move >= 1 else 0
    else:
        gap = (num_clips - part_len) // part_num  # == starts[1] - starts[0] of the linspace
        shifts = rng.integers(gap, size=part_num + 1) if gap >= 1 else 0
    return _continuous(num_clips, part_num, part_len, shifts).astype(np.int64)
