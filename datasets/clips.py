"""Stage-2 training data: one item = `clip_num` jittered 16-frame clips of one video, with soft
labels.

docs/REFERENCE.md §3.6. Clip positions come from the official `random_perturb(n_segments - 1,
clip_num)`; each clip starts `begin` ~ U{0..15} frames into its segment c (temporal jitter), so it
spans segments c and c + 1, and its label mixes their pseudo-labels (datasets/clip_labels.py).

Randomness: item `index` draws everything (positions, begins, then each clip's transform, in that
order) from `np.random.default_rng([seed, epoch, index])`. Streams therefore differ across epochs
and items, and an item is the same whatever the number of workers or the worker that loads it; no
worker re-seeding is needed (the official per-epoch worker re-seeding repeated the same streams
every epoch, §6.21). The epoch lives in a shared-memory tensor, so `set_epoch` also reaches
DataLoader workers started earlier (persistent_workers)."""

import numpy as np
import torch

from datasets.clip_labels import (
    LABEL_MODES,
    NORMAL_LABELS,
    align_pseudo_labels,
    random_perturb,
    video_clip_labels,
)
from utils.errors import InputError, MissingKeyError


class ClipDataset(torch.utils.data.Dataset):
    """Item i -> (clips (clip_num, ...) as the transform returns them, labels float32 (clip_num, 2))
    of videos[i].

    frames: a FrameSource (datasets/frames.py); videos: list[Video]; pseudo_labels: {video: (n,)} or
    None (hard_labels); transform: callable (uint8 (T, H, W, 3) BGR, rng) -> float32 (3, T, h, w),
    or uint8 (T, h, w, 3) with normalise=False; a transform with `reads_jpegs`
    (datasets/device_augment.py) gets the clip's stored JPEGs instead and the item holds its list of
    (jpegs, params), collated by its collate_fn; label_mode: 'interp' | 'interp_official' | 'max';
    normal_label: 'zero' | 'pseudo' (see datasets/clip_labels.video_clip_labels); pl_tolerance:
    segments of PL/video length mismatch accepted without a warning. Call `set_epoch(epoch)` before
    each epoch."""

    def __init__(
        self,
        frames,
        videos,
        pseudo_labels,
        transform,
        clip_num=3,
        label_mode="interp",
        normal_label="zero",
        hard_labels=False,
        seed=0,
        pl_tolerance=1,
    ):
        if label_mode not in LABEL_MODES or normal_label not in NORMAL_LABELS:
            raise InputError(
                f"label_mode {label_mode!r} / normal_label {normal_label!r}: use one of "
                f"{LABEL_MODES} / {NORMAL_LABELS}"
            )
        if clip_num < 1:
            raise InputError(f"clip_num must be >= 1, got {clip_num}")
        self.frames, self.videos, self.transform = frames, list(videos), transform
        self.clip_num, self.label_mode, self.normal_label, self.hard = (
            clip_num,
            label_mode,
            normal_label,
            hard_labels,
        )
        self.seed, self.segment_len = seed, frames.segment_len
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        known = set(frames.names)
        self.n_segments = [self._count_segments(v.name, known) for v in self.videos]
        self.pls = [
            self._pseudo_labels(v, n, pseudo_labels, pl_tolerance)
            for v, n in zip(self.videos, self.n_segments)
        ]

    def _count_segments(self, name, known):
        if name not in known:
            raise MissingKeyError(
                f"video '{name}' of the train split has no frames in the frame source (its names"
                f" look like {self.frames.names[:3]}); check the split and the frame files"
            )
        n = self.frames.num_segments(name)
        if n < 1:
            raise InputError(
                f"video '{name}' has fewer than {self.segment_len} frames (0 whole segments), so no"
                " clip can be cut from it; drop it from the train split"
            )
        return n

    def _pseudo_labels(self, video, n_segments, pseudo_labels, tolerance):
        """Aligned PLs (n_segments,) of a video whose labels need them, else None."""
        if self.hard or (video.label == 0 and self.normal_label == "zero"):
            return None
        if pseudo_labels is None:
            raise InputError(
                f"video '{video.name}' needs pseudo-labels but none were given: pass a pseudo-label"
                " file, or use hard labels (video labels for every clip)"
            )
        if video.name not in pseudo_labels:
            keys = list(pseudo_labels)[:3]
            raise MissingKeyError(
                f"video '{video.name}' has no pseudo-labels (the file's {len(pseudo_labels)} keys"
                f" look like {keys}); regenerate the pseudo-labels for this train split"
            )
        return align_pseudo_labels(pseudo_labels[video.name], n_segments, video.name, tolerance)

    def set_epoch(self, epoch):
        """Selects the random streams of this epoch (call before iterating the DataLoader)."""
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self):
        return int(self._epoch)

    def __len__(self):
        return len(self.videos)

    def normal_indices(self):
        return [i for i, v in enumerate(self.videos) if v.label == 0]

    def abnormal_indices(self):
        return [i for i, v in enumerate(self.videos) if v.label == 1]

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        video, n_seg = self.videos[index], self.n_segments[index]
        positions = random_perturb(n_seg - 1, self.clip_num, rng)  # c + 1 exists unless n_seg == 1
        begins = (
            rng.integers(self.segment_len, size=self.clip_num)
            if n_seg > 1
            else np.zeros(self.clip_num, np.int64)
        )
        clips = [
            self.transform(self._read_clip(video.name, c, b), rng)
            for c, b in zip(positions, begins)
        ]
        labels = video_clip_labels(
            video.label,
            self.pls[index],
            positions,
            begins,
            self.label_mode,
            self.normal_label,
            self.hard,
            self.segment_len,
        )
        # (jpegs, params) per clip: datasets/device_augment.py
        if getattr(self.transform, "reads_jpegs", False):
            return clips, torch.from_numpy(labels)
        return torch.stack(clips), torch.from_numpy(labels)

    def _read_clip(self, name, c, begin):
        """uint8 (segment_len, H, W, 3): frames 16c + begin ... 16c + begin + 15 (only those are
        decoded)."""
        first = int(c) * self.segment_len + int(begin)
        if getattr(self.transform, "reads_jpegs", False):
            return self.frames.read_jpegs(name, first, self.segment_len)
        frames = self.frames.read_frames(name, first, self.segment_len)
        if frames.shape[0] != self.segment_len:
            raise RuntimeError(
                f"video '{name}': reading {self.segment_len} frames from frame"
                f" {int(c) * self.segment_len + int(begin)} gave {frames.shape[0]}; the frame file"
                " may be truncated"
            )
        return frames
