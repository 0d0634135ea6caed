"""Stage-1 batches: pairs of normal and abnormal videos, each sampled into L x T clip features."""

import numpy as np

from datasets.sampling import sparse_continuous_sample
from utils.errors import InputError


class BagSampler:
    """Yields (normal (B, L*T, D), abnormal (B, L*T, D)) float32 feature batches, one epoch at a
    time.

    An epoch pairs a fresh permutation of the normal videos with one of the abnormal videos and cuts
    the first min(#normal, #abnormal) pairs into batches of B, dropping the remainder (official
    DataLoader with drop_last; docs/REFERENCE.md §1.3). All randomness comes from `rng`, never
    re-seeded per epoch. `iter_rows` walks the same batches (same random draws) without the
    normal/abnormal split."""

    def __init__(self, store, normal, abnormal, batch_size, part_num, part_len, mode, rng):
        for kind, names in (("normal", normal), ("abnormal", abnormal)):
            if len(names) < batch_size:
                raise InputError(
                    f"the train split has {len(names)} {kind} videos, fewer than STAGE1.BATCH_SIZE"
                    f" = {batch_size}: lower STAGE1.BATCH_SIZE or add videos"
                )
        self.store, self.normal, self.abnormal = store, list(normal), list(abnormal)
        self.batch_size, self.part_num, self.part_len, self.mode, self.rng = (
            batch_size,
            part_num,
            part_len,
            mode,
            rng,
        )
        self.num_clips = {name: store.num_clips(name) for name in self.normal + self.abnormal}

    def __len__(self):
        return min(len(self.normal), len(self.abnormal)) // self.batch_size

    def _indices(self, names):
        return [
            sparse_continuous_sample(
                self.num_clips[n], self.part_num, self.part_len, self.mode, self.rng
            )
            for n in names
        ]

    def _index_batches(self):
        """-> (B normal + B abnormal names, their clip indices) per batch; the draw order never
        changes."""
        normal = [self.normal[i] for i in self.rng.permutation(len(self.normal))]
        abnormal = [self.abnormal[i] for i in self.rng.permutation(len(self.abnormal))]
        for b in range(len(self)):
            batch = slice(b * self.batch_size, (b + 1) * self.batch_size)
            idx = self._indices(normal[batch])
            yield normal[batch] + abnormal[batch], idx + self._indices(abnormal[batch])

    def __iter__(self):
        for names, idx in self._index_batches():
            b = self.batch_size
            yield self.store.gather(names[:b], idx[:b]), self.store.gather(names[b:], idx[b:])

    def iter_rows(self, dedup=False):
        """Yields (rows float32, inverse int64 (2B, L*T) or None): normal bags first, then abnormal.

        dedup=False: rows (2B, L*T, D), the two halves of __iter__ gathered into one array (no
        concatenation). dedup=True: rows (U, D) are each video's distinct sampled clips and bag row
        j of video i is rows[inverse[i, j]]; feed both to MILGenerator(rows, inverse). Short videos
        repeat clips across sub-bags (ShanghaiTech: ~3k distinct of 17,920 rows per batch), so the
        first layer shrinks ~6x."""
        for names, idx in self._index_batches():
            if not dedup:
                yield self.store.gather(names, idx), None
                continue
            uniq, inverse = zip(*(np.unique(i, return_inverse=True) for i in idx))
            starts = np.cumsum([0] + [len(u) for u in uniq[:-1]])
            yield self.store.gather_rows(names, uniq), np.stack(inverse) + starts[:, None]
