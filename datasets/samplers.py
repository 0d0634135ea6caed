"""Stage-2 batches: B normal + B abnormal videos per iteration, sharded across distributed ranks."""

import numpy as np
import torch
from utils.errors import InputError


def rank_share(batch_size, rank, world_size):
    """-> (first, count): this rank's slice of the `batch_size` videos of a class in one iteration.

    The first batch_size % world_size ranks take one video more (10 over 4 ranks: 3, 3, 2, 2), so
    every world size up to batch_size is valid; Trainer weights each rank's loss by its share."""
    if world_size > batch_size:
        raise InputError(
            f"STAGE2.BATCH_SIZE = {batch_size} videos per class cannot be shared by {world_size} "
            f"processes (each needs one video of each class): use at most {batch_size} processes "
            f"or raise STAGE2.BATCH_SIZE to at least {world_size}"
        )
    base, extra = divmod(batch_size, world_size)
    return rank * base + min(rank, extra), base + (rank < extra)


class PairedBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's dataset indices of each iteration: its share of the B normal, then of the
    B abnormal videos (rank_share: shares differ by at most one video when world_size does not
    divide B).

    Every epoch draws one permutation of each class from `default_rng([seed, epoch])` (the same on
    every rank, so the shards never overlap) and pairs them; an epoch has min(#normal, #abnormal) //
    B iterations, as the official zip of two drop_last loaders (docs/REFERENCE.md §3.6), whatever
    the world size."""

    def __init__(self, normal, abnormal, batch_size, rank=0, world_size=1, seed=0):
        self.first, self.share = rank_share(batch_size, rank, world_size)
        for kind, idx in (("normal", normal), ("abnormal", abnormal)):
            if len(idx) < batch_size:
                raise InputError(
                    f"the train split has {len(idx)} {kind} videos, fewer than STAGE2.BATCH_SIZE = "
                    f"{batch_size}: lower STAGE2.BATCH_SIZE"
                )
        self.normal, self.abnormal = np.asarray(normal), np.asarray(abnormal)
        self.batch_size, self.rank, self.world_size, self.seed = batch_size, rank, world_size, seed
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return min(len(self.normal), len(self.abnormal)) // self.batch_size

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        normal, abnormal = rng.permutation(self.normal), rng.permutation(self.abnormal)
        for b in range(len(self)):
            first = b * self.batch_size + self.first
            yield [int(i) for i in normal[first : first + self.share]] + [
                int(i) for i in abnormal[first : first + self.share]
            ]
