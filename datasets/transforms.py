"""Stage-2 clip transforms with OpenCV: uint8 BGR frames (T, H, W, 3) -> float32 tensors (3, T, h, w).

Official values (MIST_REFERENCE.md §3.6 train, §4.1 test, §4.5 10-crop); all resizes are cv2 bilinear:

| net | colour | train                                              | test                            | normalise     |
|-----|--------|----------------------------------------------------|---------------------------------|---------------|
| i3d | RGB    | resize 256x340, MultiScaleCrop 224, flip           | resize 240x320 (SHT) or 256x340 | (x - 128)/128 |
| c3d | BGR    | resize 128x171, MultiScaleCrop 112, flip, gray 0.1 | resize 128x171, centre crop 112 | x - BGR mean  |

A training clip gets ONE draw of the random parameters, shared by its frames, from the numpy Generator
passed in (no global or torch RNG). `size=((H, W), crop)` replaces the resize and crop sizes (demo frames).
"""
import copy
from dataclasses import dataclass

import cv2
import numpy as np
import torch


@dataclass(frozen=True)
class _Spec:
    rgb: bool  # convert the BGR frames to RGB
    resize: tuple  # (H, W) of the training resize
    crop: int  # side of the square training crop
    mean: tuple  # per output channel, in output colour order
    std: float
    gray_p: float  # probability of the random grayscale


SPECS = {
    "i3d": _Spec(True, (256, 340), 224, (128.0, 128.0, 128.0), 128.0, 0.0),
    "c3d": _Spec(False, (128, 171), 112, (90.25, 97.66, 101.41), 1.0, 0.1),  # Sports-1M mean, B, G, R
}
I3D_TEST_RESIZE = {"shanghaitech": (240, 320)}  # every other dataset: the training resize 256x340


@dataclass(frozen=True)
class CropParams:
    """One clip's random draw: crop box in the resized frame, horizontal flip, grayscale."""
    top: int
    left: int
    height: int
    width: int
    flip: bool
    gray: bool


def _spec(backbone, size):
    if backbone not in SPECS:
        raise ValueError(f"unknown backbone {backbone!r}; use one of {tuple(SPECS)}")
    if size is None:
        return SPECS[backbone].resize, SPECS[backbone].crop
    (height, width), crop = size
    if not 0 < crop <= min(height, width):
        raise ValueError(f"crop {crop} does not fit in the resized frame {height}x{width}")
    return (int(height), int(width)), int(crop)


def resize_clip(frames, hw):
    """uint8 (T, H, W, C) -> (T, h, w, C), cv2 bilinear frame by frame; hw = (h, w).

    Each frame is resized straight into the output (no stacking copy); frames may be a crop view of a
    larger clip (rows need not be adjacent, as cv2 reads row by row): no copy of the crop either.
    """
    if frames.shape[1:3] == tuple(hw):
        return frames
    if frames.strides[1] <= 0 or frames.strides[2:] != (frames.shape[3] * frames.itemsize, frames.itemsize):
        frames = np.ascontiguousarray(frames)  # e.g. a flipped view: cv2 needs rows of adjacent pixels
    out = np.empty((len(frames), hw[0], hw[1], frames.shape[3]), frames.dtype)
    for frame, dst in zip(frames, out):
        cv2.resize(frame, (hw[1], hw[0]), dst=dst, interpolation=cv2.INTER_LINEAR)
    return out


def crop_candidates(height, width, crop, scales=(1.0, 0.8), max_distort=1):
    """MultiScaleCrop (crop_h, crop_w) pairs for a height x width frame (TSN / opencv_videovision rule).

    Sides are int(min(height, width) * scale); a side fewer than 3 px from `crop` snaps to it; the pairs
    (i, j) of scale indices with |i - j| <= max_distort are kept. I3D: sides {256, 204}, C3D: {128, 102}.
    """
    base = min(height, width)
    sides = [crop if abs(int(base * s) - crop) < 3 else int(base * s) for s in scales]
    return [(h, w) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= max_distort]


def fixed_offsets(height, width, crop_h, crop_w, more_fix_crop=False):
    """(top, left) of the fixed MultiScaleCrop positions: 4 corners + centre, or 13 with more_fix_crop."""
    hs, ws = (height - crop_h) // 4, (width - crop_w) // 4
    grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]
    if more_fix_crop:
        grid += [(2, 0), (2, 4), (4, 2), (0, 2), (1, 1), (1, 3), (3, 1), (3, 3)]
    return [(i * hs, j * ws) for i, j in grid]


def five_crop_offsets(height, width, crop):
    """(top, left) of the 4 corners + centre; the centre rounds like the official CenterCrop (C3D: 8, 30)."""
    top, left = int(round((height - crop) / 2)), int(round((width - crop) / 2))
    return [(0, 0), (0, width - crop), (height - crop, 0), (height - crop, width - crop), (top, left)]


def _grayscale(frames):
    """uint8 BGR (T, H, W, 3) -> the same with every channel set to the luma (cv2 BGR2GRAY weights)."""
    t, h, w, _ = frames.shape
    gray = cv2.cvtColor(np.ascontiguousarray(frames).reshape(t * h, w, 3), cv2.COLOR_BGR2GRAY)
    return np.repeat(gray.reshape(t, h, w, 1), 3, axis=-1)


def _to_tensor(frames, spec, normalise=True):
    """uint8 BGR (..., T, H, W, 3) -> normalised float32 tensor (..., 3, T, H, W); no /255 (ClipToTensor).
    normalise=False: the uint8 tensor in the output colour order and layout; normalise(x, backbone) on any
    device then gives the same float32 values bit for bit (a quarter of the bytes to copy to a GPU)."""
    x = frames[..., ::-1] if spec.rgb else frames
    x = np.ascontiguousarray(np.moveaxis(x, -1, -4))  # transpose as uint8: ~6x faster than as float32
    return torch.from_numpy(_normalise(x.astype(np.float32), spec, np)) if normalise else torch.from_numpy(x)


def _normalise(x, spec, xp):
    """float32 (..., 3, T, H, W) in place: (x - mean[channel]) / std, numpy (xp=np) or torch (xp=torch)."""
    if xp is np:
        x -= np.asarray(spec.mean, dtype=np.float32).reshape(3, 1, 1, 1)
        x /= np.float32(spec.std)
        return x
    x -= torch.tensor(spec.mean, dtype=torch.float32, device=x.device).reshape(3, 1, 1, 1)
    x /= torch.tensor(spec.std, dtype=torch.float32, device=x.device)  # a tensor: CUDA turns a scalar into * 1/std
    return x


def normalise(clips, backbone):
    """uint8 clips (..., 3, T, H, W) from a transform with normalise=False -> float32 on clips' device,
    equal bit for bit to what the transform returns with normalise=True (same float32 operations)."""
    if clips.dtype != torch.uint8:
        raise TypeError(f"normalise expects the uint8 clips of a transform with normalise=False, got {clips.dtype}")
    return _normalise(clips.float(), SPECS[backbone], torch)


def _check_frames(frames):
    if not (isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4
            and frames.shape[-1] == 3):
        raise ValueError(f"expected uint8 BGR frames of shape (T, H, W, 3), got "
                         f"{getattr(frames, 'dtype', type(frames))} {getattr(frames, 'shape', '')}")


class TrainTransform:
    """frames uint8 (T, H, W, 3) BGR, rng -> float32 (3, T, crop, crop): resize, MultiScaleCrop, flip, (gray).
    normalise=False returns uint8 (3, T, crop, crop); normalise(clips, backbone) finishes it on the device."""

    def __init__(self, backbone, size=None, scales=(1.0, 0.8), max_distort=1, more_fix_crop=False, normalise=True):
        self.resize, self.crop = _spec(backbone, size)
        self.spec = SPECS[backbone]
        self.candidates = crop_candidates(*self.resize, self.crop, scales, max_distort)
        self.more_fix_crop = more_fix_crop
        self.normalise = normalise  # False: uint8 out, datasets.transforms.normalise on the training device

    def sample(self, rng):
        """One clip's parameters; draw order: crop size, crop position, flip, grayscale (C3D only)."""
        ch, cw = self.candidates[rng.integers(len(self.candidates))]
        offsets = fixed_offsets(*self.resize, ch, cw, self.more_fix_crop)
        top, left = offsets[rng.integers(len(offsets))]
        flip = bool(rng.random() < 0.5)
        gray = bool(rng.random() < self.spec.gray_p) if self.spec.gray_p > 0 else False
        return CropParams(int(top), int(left), int(ch), int(cw), flip, gray)

    def apply(self, frames, params):
        """Deterministic part: the same crop/flip/gray on every frame."""
        _check_frames(frames)
        x = resize_clip(frames, self.resize)
        x = x[:, params.top:params.top + params.height, params.left:params.left + params.width]
        x = resize_clip(x, (self.crop, self.crop))
        if params.flip:
            x = x[:, :, ::-1]
        if params.gray:
            x = _grayscale(x)
        return _to_tensor(x, self.spec, self.normalise)

    def __call__(self, frames, rng):
        return self.apply(frames, self.sample(rng))


class TestTransform:
    """frames uint8 (T, H, W, 3) BGR -> float32 (3, T, h, w), or (10, 3, T, crop, crop) with ten_crop.

    I3D: resize 240x320 (ShanghaiTech) or 256x340 (others), no crop; C3D: resize 128x171, centre crop 112.
    ten_crop (any backbone and dataset; official: UCF-C3D only, §6.18): the 4 corners + centre crops of the
    resized frame, then views 5..9 = views 0..4 mirrored (the same five crops of the flipped clip, each at
    the mirrored position; scores are averaged over views, so the order does not matter).
    """
    __test__ = False  # not a pytest test class

    def __init__(self, backbone, dataset, ten_crop=False, size=None, normalise=True):
        self.resize, self.crop = _spec(backbone, size)
        self.backbone, self.spec = backbone, SPECS[backbone]
        if backbone == "i3d" and size is None:
            self.resize = I3D_TEST_RESIZE.get(dataset, self.resize)
        self.centre_crop = backbone == "c3d"
        self.ten_crop = ten_crop
        self.normalise = normalise  # False: uint8 out, datasets.transforms.normalise on the model's device

    def uint8(self):
        """-> a copy with uint8 output (utils.video_scoring ships such clips to a GPU and normalises there)."""
        raw = copy.copy(self)
        raw.normalise = False
        return raw

    def __call__(self, frames, rng=None):
        """rng is ignored (accepted so a train and a test transform are interchangeable)."""
        _check_frames(frames)
        x = resize_clip(frames, self.resize)
        c = self.crop
        if self.ten_crop:
            views = np.stack([x[:, t:t + c, l:l + c] for t, l in five_crop_offsets(*self.resize, c)])
            x = np.concatenate([views, views[:, :, :, ::-1]])  # (10, T, c, c, 3)
        elif self.centre_crop:
            t, l = five_crop_offsets(*self.resize, c)[4]
            x = x[:, t:t + c, l:l + c]
        return _to_tensor(x, self.spec, self.normalise)
