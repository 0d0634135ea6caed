"""Clips for the self-supervised pace task of engine/pretext.py: which frame stride made this clip?

Item i of `PaceClips` is a 16-frame clip taken from one of the videos at stride s = strides[i %
len(strides)] (frames f, f + s, ..., f + 15 s: the video played s times faster), cropped, resized
and flipped by the given transform, with the class index i % len(strides): every batch of
len(strides) consecutive items is balanced. No label of any kind is read: only the frames.

Draws come from default_rng([seed, i]) (video, then first frame, then the transform's), so an item
is the same in any worker and on any run. A stride whose 16 frames (span 15 s + 1) fit in no video
is refused when the set is built, naming the stride and the longest video."""

import numpy as np
import torch

from utils.errors import InputError

CLIP_LEN = 16


class PaceClips(torch.utils.data.Dataset):
    """frames: a datasets.frames source; names: the videos to draw from; transform(frames uint8
    (16, H, W, 3), rng) -> clip tensor (datasets.transforms TrainTransform / TestTransform);
    length: items per pass."""

    def __init__(self, frames, names, strides, transform, length, seed):
        self.frames, self.strides, self.transform = frames, tuple(strides), transform
        self.length, self.seed = int(length), int(seed)
        counts = {n: frames.num_segments(n) * frames.segment_len for n in names}
        if not counts:
            raise InputError("the pace task got no videos: check DATA.TRAIN_SPLIT and DATA.FRAMES")
        # per stride, the videos long enough for its span
        self.eligible = []
        for s in self.strides:
            span = (CLIP_LEN - 1) * s + 1
            fit = sorted(n for n, c in counts.items() if c >= span)
            if not fit:
                longest = max(counts, key=counts.get)
                raise InputError(
                    f"PRETEXT.STRIDES {s}: a 16-frame clip at stride {s} spans {span} frames, but "
                    f"the longest video ({longest!r}) has {counts[longest]}; use smaller strides"
                )
            self.eligible.append(fit)
        self.counts = counts

    def __len__(self):
        return self.length

    def draw(self, index):
        """-> (video, first frame, stride, class, rng) of item `index` (the rng continues into the
        transform)."""
        rng = np.random.default_rng([self.seed, index])
        cls = index % len(self.strides)
        stride, videos = self.strides[cls], self.eligible[cls]
        name = videos[rng.integers(len(videos))]
        span = (CLIP_LEN - 1) * stride + 1
        first = int(rng.integers(self.counts[name] - span + 1))
        return name, first, stride, cls, rng

    def __getitem__(self, index):
        name, first, stride, cls, rng = self.draw(index)
        span = (CLIP_LEN - 1) * stride + 1
        frames = self.frames.read_frames(name, first, span)[::stride]
        return self.transform(frames, rng), cls
