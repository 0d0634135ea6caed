"""Sultani et al. (CVPR 2018) bags: each video's clip features mean-pooled into 32 temporal
segments.

Sultani's `Save_C3DFeatures_32Segments.m`: boundaries b = round(linspace(1, n, 33)); segment i is
the mean of clips b_i .. b_{i+1}-1 (1-based), or clip b_i alone when that range is empty (short
videos repeat clips); each segment mean is then L2-normalised. 0-based here: b = round(linspace(0,
n-1, 33)), MATLAB rounding (half away from zero). As in that code the last clip only enters a
segment through an empty range."""

import numpy as np
from utils.errors import InputError


def segment_bounds(num_clips, num_segments=32):
    """-> (start, stop) int64 (S,) each: segment s pools clips [start_s, stop_s), stop_s >
    start_s."""
    if num_clips < 1:
        raise InputError(
            f"cannot cut a video with {num_clips} clips into segments; it needs at least one clip"
        )
    bounds = np.floor(np.linspace(0, num_clips - 1, num_segments + 1) + 0.5).astype(np.int64)
    start, stop = bounds[:-1], bounds[1:]
    # an empty range takes its start clip alone
    return start, np.where(stop > start, stop, start + 1)


def pool_segments(features, num_segments=32, l2_norm=False):
    """features: (n_clips, D) -> float32 (num_segments, D) segment means (L2-normalised if
    l2_norm)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise InputError(
            f"pool_segments expects clip features of shape (n_clips, D), got {x.shape}"
        )
    start, stop = segment_bounds(len(x), num_segments)
    cumsum = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    pooled = (cumsum[stop] - cumsum[start]) / (stop - start)[:, None]
    # Sultani normalises every segment mean; with DATA.L2_NORM the test clips are unit-norm too
    if l2_norm:
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return pooled.astype(np.float32)


def _as_segments(rows, l2_norm):
    """(S, D) segment features -> float32, L2-normalised if l2_norm (as pool_segments)."""
    x = np.asarray(rows, dtype=np.float64)
    if l2_norm:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x.astype(np.float32)


class SegmentBagSampler:
    """Yields (normal (B, S, D), abnormal (B, S, D)) float32 batches of pooled segments, one epoch
    at a time.

    Same pairing as `datasets.bags.BagSampler` (a fresh permutation of each class per epoch, the
    first min(#normal, #abnormal) pairs cut into batches of B, remainder dropped); the segments are
    fixed, so the only randomness is the pairing, drawn from `rng`."""

    def __init__(self, store, normal, abnormal, batch_size, num_segments, rng, l2_norm=False):
        for kind, names in (("normal", normal), ("abnormal", abnormal)):
            if len(names) < batch_size:
                raise InputError(
                    f"the train split has {len(names)} {kind} videos, fewer than STAGE1.BATCH_SIZE"
                    f" = {batch_size}: lower STAGE1.BATCH_SIZE or add videos"
                )
        self.normal, self.abnormal, self.batch_size, self.rng = (
            list(normal),
            list(abnormal),
            batch_size,
            rng,
        )
        # features released as Sultani's 32 segments per video (FeatureStore.segments) are the
        # segments already: taken as they are (L2-normalised as the pooled ones)
        given = getattr(store, "segments", None) == num_segments
        self.segments = {
            name: _as_segments(store.get(name), l2_norm)
            if given
            else pool_segments(store.get(name), num_segments, l2_norm)
            for name in self.normal + self.abnormal
        }

    def __len__(self):
        return min(len(self.normal), len(self.abnormal)) // self.batch_size

    def __iter__(self):
        normal = [self.normal[i] for i in self.rng.permutation(len(self.normal))]
        abnormal = [self.abnormal[i] for i in self.rng.permutation(len(self.abnormal))]
        for b in range(len(self)):
            batch = slice(b * self.batch_size, (b + 1) * self.batch_size)
            yield (
                np.stack([self.segments[n] for n in normal[batch]]),
                np.stack([self.segments[n] for n in abnormal[batch]]),
            )

    def iter_rows(self, dedup=False):
        """Yields (rows float32 (2B, S, D), None) per batch: normal bags first, then abnormal, as
        BagSampler.iter_rows; pooled segments are distinct rows, so `dedup` has nothing to do."""
        for normal, abnormal in self:
            yield np.concatenate([normal, abnormal]), None
