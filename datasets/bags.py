"""Stage-1 batches: pairs of normal and abnormal videos, each sampled into L x T clip features."""

from datasets.sampling import sparse_continuous_sample


class BagSampler:
    """Yields (normal (B, L*T, D), abnormal (B, L*T, D)) float32 feature batches, one epoch at a time.

    An epoch pairs a fresh permutation of the normal videos with one of the abnormal videos and cuts the
    first min(#normal, #abnormal) pairs into batches of B, dropping the remainder (official DataLoader with
    drop_last; MIST_REFERENCE.md §1.3). All randomness comes from `rng`, never re-seeded per epoch.
    """

    def __init__(self, store, normal, abnormal, batch_size, part_num, part_len, mode, rng):
        for kind, names in (("normal", normal), ("abnormal", abnormal)):
            if len(names) < batch_size:
                raise ValueError(f"the train split has {len(names)} {kind} videos, fewer than STAGE1.BATCH_SIZE = "
                                 f"{batch_size}: lower STAGE1.BATCH_SIZE or add videos")
        self.store, self.normal, self.abnormal = store, list(normal), list(abnormal)
        self.batch_size, self.part_num, self.part_len, self.mode, self.rng = batch_size, part_num, part_len, mode, rng
        self.num_clips = {name: store.num_clips(name) for name in self.normal + self.abnormal}

    def __len__(self):
        return min(len(self.normal), len(self.abnormal)) // self.batch_size

    def _bags(self, names):
        idx = [sparse_continuous_sample(self.num_clips[n], self.part_num, self.part_len, self.mode, self.rng)
               for n in names]
        return self.store.gather(names, idx)

    def __iter__(self):
        normal = [self.normal[i] for i in self.rng.permutation(len(self.normal))]
        abnormal = [self.abnormal[i] for i in self.rng.permutation(len(self.abnormal))]
        for b in range(len(self)):
            batch = slice(b * self.batch_size, (b + 1) * self.batch_size)
            yield self._bags(normal[batch]), self._bags(abnormal[batch])
