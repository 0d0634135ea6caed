"""Stage-2 clip transforms with OpenCV: uint8 BGR frames (T, H, W, 3) -> float32 tensors
(3, T, h, w).

Official values (docs/REFERENCE.md §3.6 train, §4.1 test, §4.5 10-crop); all resizes are cv2
bilinear:

| net | colour | train                               | test                        | normalise     |
|-----|--------|-------------------------------------|-----------------------------|---------------|
| i3d | RGB    | 256x340, MultiScaleCrop 224, flip   | 240x320 (SHT) or 256x340    | (x - 128)/128 |
| c3d | BGR    | 128x171, MultiScaleCrop 112, flip,  | 128x171, centre crop 112    | x - BGR mean  |
|     |        | gray 0.1                            |                             |               |

(train and test sizes are resizes to H x W.) A training clip gets ONE draw of the random
parameters, shared by its frames, from the numpy Generator passed in (no global or torch RNG).
`size=((H, W), crop)` replaces the resize and crop sizes (demo frames)."""

import copy
import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from datasets.specs import dataset_spec
from utils.errors import InputError


@dataclass(frozen=True)
class _Spec:
    rgb: bool  # convert the BGR frames to RGB
    resize: tuple  # (H, W) of the training resize
    crop: int  # side of the square training crop
    mean: tuple  # per output channel, in output colour order
    std: object  # one float, or one per output channel
    gray_p: float  # probability of the random grayscale
    test_crop: bool  # the test clip is centre-cropped to `crop` after the resize


def _scaled(mean, std):
    """torchvision's mean / std of [0, 1] pixels -> the same for [0, 255] pixels."""
    return tuple(255.0 * m for m in mean), tuple(255.0 * s for s in std)


_TV_KINETICS = _scaled((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989))
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

SPECS = {
    "i3d": _Spec(True, (256, 340), 224, (128.0, 128.0, 128.0), 128.0, 0.0, False),
    # Sports-1M mean, in B, G, R order
    "c3d": _Spec(False, (128, 171), 112, (90.25, 97.66, 101.41), 1.0, 0.1, True),
    # torchvision's Kinetics-400 weights (models/tv_video.py): their transforms' mean / std times
    # 255 and (H, W) resizes (the short side 256 of a 4:3 frame for MViT / Swin), centre-cropped
    "r2plus1d_18": _Spec(True, (128, 171), 112, *_TV_KINETICS, 0.0, True),
    "s3d": _Spec(True, (256, 256), 224, *_TV_KINETICS, 0.0, True),
    "mvit_v2_s": _Spec(True, (256, 341), 224, *_scaled((0.45,) * 3, (0.225,) * 3), 0.0, True),
    "swin3d_t": _Spec(True, (256, 341), 224, *_scaled(_IMAGENET_MEAN, _IMAGENET_STD), 0.0, True),
}


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
        raise InputError(f"unknown backbone {backbone!r}; use one of {tuple(SPECS)}")
    if size is None:
        return SPECS[backbone].resize, SPECS[backbone].crop
    (height, width), crop = size
    if not 0 < crop <= min(height, width):
        raise InputError(
            f"crop {crop} does not fit in the resized frame {height}x{width}: DATA.TRAIN_SIZE / "
            "DATA.TEST_SIZE are [resize_h, resize_w, crop] with crop <= min(resize_h, resize_w)"
        )
    return (int(height), int(width)), int(crop)


def resize_clip(frames, hw):
    """uint8 (T, H, W, C) -> (T, h, w, C), cv2 bilinear frame by frame; hw = (h, w).

    Each frame is resized straight into the output (no stacking copy); frames may be a crop view of
    a larger clip (rows need not be adjacent, as cv2 reads row by row): no copy of the crop either.
    """
    if frames.shape[1:3] == tuple(hw):
        return frames
    if frames.strides[1] <= 0 or frames.strides[2:] != (
        frames.shape[3] * frames.itemsize,
        frames.itemsize,
    ):
        # e.g. a flipped view: cv2 needs rows of adjacent pixels
        frames = np.ascontiguousarray(frames)
    out = np.empty((len(frames), hw[0], hw[1], frames.shape[3]), frames.dtype)
    for frame, dst in zip(frames, out):
        cv2.resize(frame, (hw[1], hw[0]), dst=dst, interpolation=cv2.INTER_LINEAR)
    return out


def _axis_window(src, out, start, size):
    """-> (i0, i1, o0, o1): outputs o0..o1-1 of the resize src -> out, covering [start, start +
    size), are the resize of source pixels i0..i1-1 to o1 - o0 outputs. Both ends sit on the
    resize's period (out/gcd outputs per src/gcd inputs, so the sub-resize has the same scale and
    the same interpolation phases), at least one output outside the crop (a bilinear window's border
    clamps only its outermost output); at a frame border the window stops there (the same clamping
    as the full resize). Coprime sizes give the whole axis, (0, src, 0, out)."""
    g = math.gcd(src, out)
    p_in, p_out = src // g, out // g
    o0 = (start - 1) // p_out * p_out if start > 0 else 0
    o1 = min(out, -(-(start + size + 1) // p_out) * p_out)
    return o0 // p_out * p_in, o1 // p_out * p_in, o0, o1


# (source hw, resize hw, crop box) -> window rows/cols if proven exact, else None
_EXACT_WINDOWS = {}


def _crop_window(src_hw, resize_hw, box):
    """-> ((i0, i1, o0, o1) rows, cols) of a source window whose resize holds the crop box of the
    full resize bit for bit, or None. Proven once per (sizes, box) and process on a noise frame:
    cv2's fixed-point coefficients come from float arithmetic on the absolute position, so the
    equality is checked, not assumed (a 1/2048 coefficient change flips ~4% of the pixels of a noise
    frame)."""
    key = (src_hw, resize_hw, box)
    if key not in _EXACT_WINDOWS:
        top, left, height, width = box
        rows = _axis_window(src_hw[0], resize_hw[0], top, height)
        cols = _axis_window(src_hw[1], resize_hw[1], left, width)
        window = (rows, cols)
        if rows == (0, src_hw[0], 0, resize_hw[0]) and cols == (0, src_hw[1], 0, resize_hw[1]):
            window = None  # nothing to save
        else:
            probe = np.random.default_rng(0).integers(0, 256, (2, *src_hw, 3), dtype=np.uint8)
            full = resize_clip(probe, resize_hw)[:, top : top + height, left : left + width]
            if not np.array_equal(_window_crop(probe, window, box), full):
                window = None
        _EXACT_WINDOWS[key] = window
    return _EXACT_WINDOWS[key]


def _window_crop(frames, window, box):
    (i0, i1, o0, o1), (j0, j1, p0, p1) = window
    top, left, height, width = box
    x = resize_clip(frames[:, i0:i1, j0:j1], (o1 - o0, p1 - p0))
    return x[:, top - o0 : top - o0 + height, left - p0 : left - p0 + width]


def resized_crop(frames, resize_hw, box):
    """uint8 (T, H, W, C) -> resize_clip(frames, resize_hw)[:, top:top + h, left:left + w], box =
    (top, left, h, w), bit for bit, resizing only the source window the crop needs where that is
    proven exact (a 224 crop of the 256x340 I3D resize: ~60-85% of the work), else the whole
    frame."""
    box = tuple(int(v) for v in box)
    window = _crop_window(tuple(frames.shape[1:3]), tuple(resize_hw), box)
    if window is None:
        top, left, height, width = box
        return resize_clip(frames, resize_hw)[:, top : top + height, left : left + width]
    return _window_crop(frames, window, box)


def crop_candidates(height, width, crop, scales=(1.0, 0.8), max_distort=1):
    """MultiScaleCrop (crop_h, crop_w) pairs for a height x width frame (TSN / opencv_videovision
    rule).

    Sides are int(min(height, width) * scale); a side fewer than 3 px from `crop` snaps to it; the
    pairs (i, j) of scale indices with |i - j| <= max_distort are kept. I3D: sides {256, 204}, C3D:
    {128, 102}."""
    base = min(height, width)
    sides = [crop if abs(int(base * s) - crop) < 3 else int(base * s) for s in scales]
    return [
        (h, w)
        for i, h in enumerate(sides)
        for j, w in enumerate(sides)
        if abs(i - j) <= max_distort
    ]


def fixed_offsets(height, width, crop_h, crop_w, more_fix_crop=False):
    """(top, left) of the fixed MultiScaleCrop positions: 4 corners + centre, or 13 with
    more_fix_crop."""
    hs, ws = (height - crop_h) // 4, (width - crop_w) // 4
    grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]
    if more_fix_crop:
        grid += [(2, 0), (2, 4), (4, 2), (0, 2), (1, 1), (1, 3), (3, 1), (3, 3)]
    return [(i * hs, j * ws) for i, j in grid]


def five_crop_offsets(height, width, crop):
    """(top, left) of the 4 corners + centre; the centre rounds like the official CenterCrop (C3D:
    8, 30)."""
    top, left = int(round((height - crop) / 2)), int(round((width - crop) / 2))
    return [
        (0, 0),
        (0, width - crop),
        (height - crop, 0),
        (height - crop, width - crop),
        (top, left),
    ]


def mirror(frames):
    """uint8 (..., H, W, C) -> a left-right mirrored copy, frame by frame with cv2.flip (a numpy
    copy of the reversed view moves 3-byte pixels one at a time: ~20x slower)."""
    out = np.empty(frames.shape, frames.dtype)
    for src, dst in zip(
        frames.reshape(-1, *frames.shape[-3:]), out.reshape(-1, *frames.shape[-3:])
    ):
        cv2.flip(src, 1, dst=dst)
    return out


def _grayscale(frames):
    """uint8 BGR (T, H, W, 3) -> the same with every channel set to the luma (cv2 BGR2GRAY
    weights)."""
    t, h, w, _ = frames.shape
    gray = cv2.cvtColor(np.ascontiguousarray(frames).reshape(t * h, w, 3), cv2.COLOR_BGR2GRAY)
    return np.repeat(gray.reshape(t, h, w, 1), 3, axis=-1)


def _to_tensor(frames, spec, normalise=True):
    """uint8 BGR (..., T, H, W, 3) -> normalised float32 tensor (..., 3, T, H, W); no /255
    (ClipToTensor). normalise=False: the uint8 frames as they are (BGR, channels last; a quarter of
    the bytes of float32 to ship to a GPU, and no transpose on the CPU); normalise(x, backbone) on
    any device then gives the same float32 values bit for bit."""
    if not normalise:
        return torch.from_numpy(np.ascontiguousarray(frames))
    x = frames[..., ::-1] if spec.rgb else frames
    # transpose as uint8: ~6x faster than as float32
    x = np.ascontiguousarray(np.moveaxis(x, -1, -4))
    mean, std = _stats(spec, None)
    x = x.astype(np.float32)
    x -= mean
    x /= std
    return torch.from_numpy(x)


_STATS = {}  # (spec, device) -> (mean (3, 1, 1, 1), std): built and copied to a device once


def _stats(spec, device):
    """-> cached float32 (mean shaped (3, 1, 1, 1), std): numpy for device None, else tensors on
    device."""
    key = (spec, None if device is None else str(device))
    if key not in _STATS:
        mean = np.asarray(spec.mean, dtype=np.float32).reshape(3, 1, 1, 1)
        # an array: CUDA would turn a scalar into * 1/std
        std = np.asarray(spec.std, dtype=np.float32)
        std = std.reshape(3, 1, 1, 1) if std.ndim else std
        _STATS[key] = (
            (mean, std)
            if device is None
            else (torch.from_numpy(mean).to(device), torch.from_numpy(std).to(device))
        )
    return _STATS[key]


def normalise(clips, backbone):
    """uint8 clips (..., T, H, W, 3) BGR from a transform with normalise=False -> float32 (..., 3,
    T, H, W) on clips' device, equal bit for bit to what the transform returns with normalise=True
    (same float32 operations). The result keeps the channels-last strides of its input: a 5-d batch
    comes out in torch.channels_last_3d, the layout cudnn's fast 3-d convolutions want, with no
    extra copy."""
    if clips.dtype != torch.uint8 or clips.dim() < 4 or clips.shape[-1] != 3:
        raise TypeError(
            "normalise expects the uint8 (..., T, H, W, 3) clips of a transform with"
            f" normalise=False, got {clips.dtype} {tuple(clips.shape)}"
        )
    spec = SPECS[backbone]
    if spec.rgb:
        clips = clips.flip(-1)
    x = clips.movedim(-1, -4).float()  # strides preserved: channels last
    mean, std = _stats(spec, x.device)
    x -= mean
    x /= std
    return x


def check_frames(frames):
    """Raises InputError unless `frames` are uint8 BGR frames of shape (T, H, W, 3)."""
    if not (
        isinstance(frames, np.ndarray)
        and frames.dtype == np.uint8
        and frames.ndim == 4
        and frames.shape[-1] == 3
    ):
        raise InputError(
            "expected uint8 BGR frames of shape (T, H, W, 3), got "
            f"{getattr(frames, 'dtype', type(frames))} {getattr(frames, 'shape', '')}"
        )


class TrainTransform:
    """frames uint8 (T, H, W, 3) BGR, rng -> float32 (3, T, crop, crop): resize, MultiScaleCrop,
    flip, (gray). normalise=False returns the uint8 BGR (T, crop, crop, 3); normalise(clips,
    backbone) finishes it on the device. The resize covers only the source window the crop needs
    (resized_crop: the same pixels)."""

    def __init__(
        self,
        backbone,
        size=None,
        scales=(1.0, 0.8),
        max_distort=1,
        more_fix_crop=False,
        normalise=True,
    ):
        self.resize, self.crop = _spec(backbone, size)
        self.spec = SPECS[backbone]
        self.candidates = crop_candidates(*self.resize, self.crop, scales, max_distort)
        self.more_fix_crop = more_fix_crop
        # False: uint8 out, datasets.transforms.normalise on the training device
        self.normalise = normalise

    def sample(self, rng):
        """One clip's parameters; draw order: crop size, crop position, flip, grayscale (C3D
        only)."""
        ch, cw = self.candidates[rng.integers(len(self.candidates))]
        offsets = fixed_offsets(*self.resize, ch, cw, self.more_fix_crop)
        top, left = offsets[rng.integers(len(offsets))]
        flip = bool(rng.random() < 0.5)
        gray = bool(rng.random() < self.spec.gray_p) if self.spec.gray_p > 0 else False
        return CropParams(int(top), int(left), int(ch), int(cw), flip, gray)

    def apply(self, frames, params):
        """Deterministic part: the same crop/flip/gray on every frame."""
        check_frames(frames)
        x = resized_crop(
            frames, self.resize, (params.top, params.left, params.height, params.width)
        )
        x = resize_clip(x, (self.crop, self.crop))
        if params.flip:
            x = mirror(x)
        if params.gray:
            x = _grayscale(x)
        return _to_tensor(x, self.spec, self.normalise)

    def __call__(self, frames, rng):
        return self.apply(frames, self.sample(rng))


class TestTransform:
    """frames uint8 (T, H, W, 3) BGR -> float32 (3, T, h, w), or (10, 3, T, crop, crop) with
    ten_crop (normalise=False / uint8(): uint8 BGR (T, h, w, 3) or (10, T, crop, crop, 3)).

    I3D: resize 240x320 (ShanghaiTech) or 256x340 (others), no crop; C3D: resize 128x171, centre
    crop 112. ten_crop (any backbone and dataset; official: UCF-C3D only, §6.18): the 4 corners +
    centre crops of the resized frame, then views 5..9 = views 0..4 mirrored (the same five crops of
    the flipped clip, each at the mirrored position; scores are averaged over views, so the order
    does not matter)."""

    __test__ = False  # not a pytest test class

    def __init__(self, backbone, dataset, ten_crop=False, size=None, normalise=True):
        self.resize, self.crop = _spec(backbone, size)
        self.backbone, self.spec = backbone, SPECS[backbone]
        # I3D tests at 240x320 on ShanghaiTech (datasets/specs.py), at the training resize elsewhere
        if size is None:
            self.resize = dataset_spec(dataset, own=True).test_resize.get(backbone, self.resize)
        self.centre_crop = self.spec.test_crop
        self.ten_crop = ten_crop
        # False: uint8 out, datasets.transforms.normalise on the model's device
        self.normalise = normalise

    def uint8(self):
        """-> a copy with uint8 output (utils.video_scoring ships such clips to a GPU and normalises
        there)."""
        raw = copy.copy(self)
        raw.normalise = False
        return raw

    def __call__(self, frames, rng=None):
        """rng is ignored (accepted so a train and a test transform are interchangeable)."""
        check_frames(frames)
        x = resize_clip(frames, self.resize)
        c = self.crop
        if self.ten_crop:
            views = np.stack(
                [
                    x[:, top : top + c, left : left + c]
                    for top, left in five_crop_offsets(*self.resize, c)
                ]
            )
            x = np.concatenate([views, mirror(views)])  # (10, T, c, c, 3)
        elif self.centre_crop:
            top, left = five_crop_offsets(*self.resize, c)[4]
            x = x[:, top : top + c, left : left + c]
        return _to_tensor(x, self.spec, self.normalise)
