"""Stage-2 training clips decoded and augmented on the training device (STAGE2.DEVICE_AUGMENT).

The CPU path (datasets/transforms.py TrainTransform) decodes every JPEG with OpenCV and resizes it
twice in a loader worker: ~25 clips/s per core with the decoding, far below what one GPU trains on.
Here the loader only reads each clip's 16 JPEGs from the frames h5 and draws its crop, flip and
grayscale from the same numpy stream as the CPU path (TrainTransform.sample); DeviceAugment then, on
the training device, decodes the whole batch with torchvision.io.decode_jpeg (nvjpeg on a GPU, one
batched call), resizes to the training resize, crops, resizes the crop, flips and (C3D) grays, all
with torch, and normalises as datasets.transforms.normalise does. The stages are the official ones
(resize, crop, resize: not a single resample), each rounded to uint8 as OpenCV does, so pixels stay
within a level or two of the CPU path: bilinear in float32 here vs OpenCV's 11-bit fixed point
there, and (on a GPU) nvjpeg's IDCT vs libjpeg-turbo's. tests/test_device_augment.py bounds the
difference on real video frames (at most MAX_LEVEL_DIFF levels, on average under MEAN_LEVEL_DIFF);
bit-exact training input is the CPU path. Needs a frames h5 (DATA.FRAMES written by
tools/make_h5.py): raw videos have no stored JPEGs."""

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from datasets.transforms import CropParams, TrainTransform, normalise
from utils.errors import InputError

MAX_LEVEL_DIFF = 3  # uint8 levels, vs the CPU path (tested on the CPU decoder; nvjpeg may add one)
MEAN_LEVEL_DIFF = 0.25
_GRAY = (1868, 9617, 4899)  # OpenCV's BGR2GRAY weights for B, G, R in 14-bit fixed point


class JpegTrainTransform(TrainTransform):
    """A TrainTransform whose loader half only draws the parameters: (16 JPEG byte arrays, rng) ->
    (the arrays, CropParams). ClipDataset reads stored JPEGs for it (reads_jpegs) and the batch is
    finished by DeviceAugment on the training device."""

    reads_jpegs = True

    def __init__(self, backbone, size=None, **kwargs):
        super().__init__(backbone, size=size, normalise=False, **kwargs)
        self.backbone = backbone

    def __call__(self, jpegs, rng):
        return list(jpegs), self.sample(rng)


@dataclass
class JpegClips:
    """A collated batch of a JpegTrainTransform dataset: jpegs, the (B * clip_num * T) uint8 byte
    tensors in clip order; params, int64 (B, clip_num, 6) = top, left, height, width, flip, gray."""

    jpegs: list
    params: torch.Tensor
    frames_per_clip: int

    def pin_memory(self):  # the DataLoader's pin_memory: decode_jpeg reads host tensors as they are
        return self


def collate_jpeg_clips(batch):
    """DataLoader collate_fn for ClipDataset items of a JpegTrainTransform -> (JpegClips, labels (B,
    clip_num, 2))."""
    jpegs, params, labels = [], [], []
    for clips, clip_labels in batch:
        rows = []
        for clip_jpegs, p in clips:
            jpegs.extend(torch.from_numpy(np.frombuffer(b, np.uint8).copy()) for b in clip_jpegs)
            rows.append([p.top, p.left, p.height, p.width, int(p.flip), int(p.gray)])
        params.append(rows)
        labels.append(clip_labels)
    frames_per_clip = len(batch[0][0][0][0])
    return JpegClips(jpegs, torch.tensor(params, dtype=torch.int64), frames_per_clip), torch.stack(
        labels
    )


def _round_u8(x):
    """float32 -> uint8 as OpenCV's fixed point rounds: half up, saturated."""
    return x.add_(0.5).floor_().clamp_(0, 255).to(torch.uint8)


def _resize(x, hw):
    """uint8 (N, 3, H, W) -> (N, 3, h, w): bilinear, half-pixel centres (cv2.INTER_LINEAR),
    rounded."""
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return _round_u8(F.interpolate(x.float(), size=tuple(hw), mode="bilinear", align_corners=False))


def decode_jpegs(jpegs, device):
    """-> uint8 (N, 3, H, W) RGB on device: torchvision's decode_jpeg (batched nvjpeg on CUDA)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    # deprecated in torchvision 0.29 for TorchCodec, which is not a dependency
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=device)
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) != 1:
        raise InputError(
            f"the JPEGs of one training batch have different frame sizes {sorted(shapes)};"
            " STAGE2.DEVICE_AUGMENT needs one frame size per frames h5 (rebuild it with"
            " tools/make_h5.py --size) or use STAGE2.DEVICE_AUGMENT False"
        )
    return torch.stack(images)


class DeviceAugment:
    """JpegClips -> float32 (B * clip_num, 3, T, crop, crop) normalised clips on `device`, as
    TrainTransform + normalise give them on the CPU (to the tolerance of the module docstring)."""

    def __init__(self, transform, device):
        self.transform, self.device = transform, torch.device(device)
        self.gray_weights = torch.tensor(_GRAY, dtype=torch.int32, device=self.device).view(
            1, 3, 1, 1
        )

    def uint8(self, batch):
        """-> uint8 BGR (B * clip_num, T, crop, crop, 3): the transform's uint8 output, before
        normalise."""
        t = batch.frames_per_clip
        frames = decode_jpegs(batch.jpegs, self.device)
        frames = _resize(frames, self.transform.resize)
        params = batch.params.flatten(0, 1).tolist()
        crop = self.transform.crop
        out = torch.empty((len(params), t, 3, crop, crop), dtype=torch.uint8, device=self.device)
        for size in sorted({(p[2], p[3]) for p in params}):  # one resize per crop size in the batch
            idx = [i for i, p in enumerate(params) if (p[2], p[3]) == size]
            crops = torch.cat(
                [
                    frames[i * t : (i + 1) * t, :, p[0] : p[0] + p[2], p[1] : p[1] + p[3]]
                    for i, p in ((i, params[i]) for i in idx)
                ]
            )
            out[idx] = _resize(crops, (crop, crop)).view(len(idx), t, 3, crop, crop)
        flips = [i for i, p in enumerate(params) if p[4]]
        if flips:
            out[flips] = out[flips].flip(-1)
        grays = [i for i, p in enumerate(params) if p[5]]
        if grays:
            rgb = out[grays].flatten(0, 1).int()
            luma = ((rgb.flip(1) * self.gray_weights).sum(1, keepdim=True) + (1 << 13)) >> 14
            out[grays] = (
                luma.to(torch.uint8).expand(-1, 3, -1, -1).reshape(len(grays), t, 3, crop, crop)
            )
        # (N, T, c, c, 3) BGR, as the CPU transform's uint8 clips
        return out.permute(0, 1, 3, 4, 2).flip(-1)

    def __call__(self, batch):
        return normalise(self.uint8(batch), self.transform.backbone)


def crop_params(row):
    """int64 row of JpegClips.params -> CropParams (tests compare against TrainTransform.apply)."""
    top, left, height, width, flip, gray = (int(v) for v in row)
    return CropParams(top, left, height, width, bool(flip), bool(gray))
