"""Scoring every 16-frame clip of test videos with a stage-2 model (batched, any number of
workers/ranks).

Each video is decoded once, sequentially (FrameSource.iter_segments), so raw videos need no seeking.
The per-video clip scores then go through the same evaluation code as stage 1 (utils/evaluation.py).
"""

import numpy as np
import torch

from datasets.transforms import normalise
from models.mist import anomaly_score
from utils.distributed import gather_dicts


class SegmentStream(torch.utils.data.IterableDataset):
    """Yields (video index, segment index, clip (3, 16, h, w) or (10, 3, 16, h, w), float32 or
    uint8).

    Each DataLoader worker takes every num_workers-th video of `names`.
    """

    def __init__(self, frames, names, transform, read_batch=8):
        self.frames, self.names, self.transform, self.read_batch = (
            frames,
            list(names),
            transform,
            read_batch,
        )

    def __iter__(self):
        seg = self.frames.segment_len
        for v, start, frames in worker_segments(self.frames, self.names, self.read_batch):
            for k in range(len(frames) // seg):
                yield v, start + k, self.transform(frames[k * seg : (k + 1) * seg])


def worker_segments(frames, names, batch):
    """-> (video index, first segment, frames of up to `batch` segments) of this DataLoader worker's
    videos (every num_workers-th of `names`), each video read in one pass."""
    info = torch.utils.data.get_worker_info()
    worker, workers = (info.id, info.num_workers) if info else (0, 1)
    for v in range(worker, len(names), workers):
        for start, segment_frames in frames.iter_segments(names[v], batch):
            yield v, start, segment_frames


# STAGE2.AMP -> torch.autocast dtype (None: full precision)
AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device, amp):
    """torch.autocast for STAGE2.AMP 'bf16' | 'fp16' | 'off'."""
    dtype = AMP_DTYPES.get(amp)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


@torch.inference_mode()
def score_videos_on_frames(
    model,
    frames,
    names,
    transform,
    device,
    batch_size=16,
    num_workers=0,
    amp="off",
    rank=0,
    world_size=1,
    uint8=None,
):
    """-> {name: float32 (n_segments,)} anomaly scores of every whole segment of every video in
    `names`.

    model: an (unwrapped) MIST model, put in eval mode here, so BatchNorm uses its running
    statistics (the official SHT-I3D code updated them on test data, docs/REFERENCE.md §6.20).
    Ten-crop clips are scored view by view and averaged. Ranks score disjoint shares of the videos;
    every rank returns all scores. uint8 (default: on a GPU, for a TestTransform): the loader ships
    uint8 clips, normalised on the device (the same values bit for bit, a quarter of the bytes to
    copy)."""
    model.eval()
    mine = names[rank::world_size]
    scores = {name: np.full(frames.num_segments(name), np.nan, dtype=np.float32) for name in mine}
    if uint8 is None:
        uint8 = device.type == "cuda" and hasattr(transform, "uint8")
    stream = SegmentStream(frames, mine, transform.uint8() if uint8 else transform)
    # its own generator: a loader draws a seed on every iteration, and the global RNG drives
    # training dropout
    loader = torch.utils.data.DataLoader(
        stream,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),
    )
    for video_idx, seg_idx, clips in loader:
        views = clips.shape[1] if clips.dim() == 6 else 1
        clips = (
            clips.flatten(0, 1).to(device, non_blocking=True)
            if views > 1
            else clips.to(device, non_blocking=True)
        )
        if clips.dtype == torch.uint8:
            clips = normalise(clips, transform.backbone)
        with autocast(device, amp):
            out = model(clips)
        clip_scores = anomaly_score(out["logits"].float()).view(-1, views).mean(dim=1).cpu().numpy()
        for v, s, value in zip(video_idx.tolist(), seg_idx.tolist(), clip_scores):
            scores[mine[v]][s] = value
    _check_complete(scores)
    return gather_dicts(scores)


def _check_complete(scores):
    for name, values in scores.items():
        if np.isnan(values).any():
            raise RuntimeError(
                f"video '{name}': {int(np.isnan(values).sum())} of its {len(values)} clips got no "
                "score (the frame source returned fewer segments than it announced) or a NaN score"
            )
