"""Stage-2 batches: B normal + B abnormal videos per iteration, sharded across distributed ranks."""
import numpy as np
import torch


class PairedBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's dataset indices of each iteration: its B/world normal then B/world abnormal videos.

    Every epoch draws one permutation of each class from `default_rng([seed, epoch])` (the same on every
    rank, so the shards never overlap) and pairs them; an epoch has min(#normal, #abnormal) // B iterations,
    as the official zip of two drop_last loaders (MIST_REFERENCE.md §3.6).
    """

    def __init__(self, normal, abnormal, batch_size, rank=0, world_size=1, seed=0):
        if batch_size % world_size:
            raise ValueError(f"STAGE2.BATCH_SIZE = {batch_size} videos per class must divide evenly over "
                             f"{world_size} processes")
        for kind, idx in (("normal", normal), ("abnormal", abnormal)):
            if len(idx) < batch_size:
                raise ValueError(f"the train split has {len(idx)} {kind} videos, fewer than STAGE2.BATCH_SIZE = "
                                 f"{batch_size}: lower STAGE2.BATCH_SIZE")
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
        share = self.batch_size // self.world_size
        for b in range(len(self)):
            first = b * self.batch_size + self.rank * share
            yield [int(i) for i in normal[first:first + share]] + [int(i) for i in abnormal[first:first + share]]
