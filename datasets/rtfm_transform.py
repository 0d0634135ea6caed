"""The preprocessing of the RTFM-style I3D ResNet-50 features: uint8 BGR frames (T, H, W, 3) ->
float32 views (V, 3, T, 224, 224), as GowthamGottimukkala/I3D_Feature_Extraction_resnet
`extract_features.py` prepares a 16-frame chunk (every choice and its source: docs/i3d_r50.md):

  each frame resized to 256x340 (H x W, aspect ratio not kept) with PIL's Lanczos filter
  (`load_frame`: `Image.ANTIALIAS`, Pillow's old name of LANCZOS)
  views (`oversample_data`): the 224x224 crops top-left, top-right, centre (16, 58), bottom-left,
  bottom-right, then the same five crops of the horizontally flipped frame; crops 5 keeps the first
  five, crops 1 the centre crop (`run`, sample_mode 'center_crop')
  values: RGB, x * 2 / 255 - 1 in [-1, 1]

The resize works on each colour plane alone, so BGR frames are resized as they are and put in RGB
order by `normalise_rtfm`: the same pixels. `.uint8()` returns the views' uint8 BGR frames
(V, T, c, c, 3); `normalise_rtfm` turns them into the float32 values of the transform, bit for bit,
on any device. `size=((h, w), crop)` replaces 256x340 and 224 (DATA.TEST_SIZE [h, w, crop])."""

import copy

import numpy as np
import torch
from PIL import Image

from datasets.transforms import check_frames
from utils.errors import InputError

RESIZE = (256, 340)  # (H, W)
CROP = 224
CROPS = (1, 5, 10)
# (x - 127.5) / 127.5 in float32 equals float32(x * 2 / 255 - 1) computed in float64, as the
# reference does, for every uint8 x (tests/test_i3d_r50.py checks all 256)
CENTRE = 127.5


def crop_offsets(height, width, crop):
    """(top, left) of the five crops in the reference's order: top-left, top-right, centre,
    bottom-left, bottom-right; the centre is floor((height - crop) / 2), floor((width - crop) / 2)
    (16, 58 at 256x340, the reference's fixed [16:240, 58:282])."""
    bottom, right = height - crop, width - crop
    return [(0, 0), (0, right), (bottom // 2, right // 2), (bottom, 0), (bottom, right)]


def size_of(values):
    """DATA.TEST_SIZE -> the `size` argument: [] -> None (256x340, 224); [h, w, crop] -> ((h, w),
    crop); [h, w] -> ((h, w), min(h, w))."""
    if not values:
        return None
    crop = values[2] if len(values) == 3 else min(values[:2])
    return (int(values[0]), int(values[1])), int(crop)


def _check_size(size):
    if size is None:
        return RESIZE, CROP
    (height, width), crop = size
    if not 0 < crop <= min(height, width):
        raise InputError(
            f"crop {crop} does not fit in the resized frame {height}x{width}: DATA.TEST_SIZE is "
            "[resize_h, resize_w, crop] with crop <= min(resize_h, resize_w)"
        )
    return (int(height), int(width)), int(crop)


class RTFMTransform:
    """uint8 BGR frames (T, H, W, 3) -> float32 (3, T, c, c) (crops 1) or (V, 3, T, c, c) (crops V
    = 5 or 10) (module docstring); normalise=False / .uint8(): the uint8 BGR views (T, c, c, 3) or
    (V, T, c, c, 3)."""

    def __init__(self, crops=10, size=None, normalise=True):
        if crops not in CROPS:
            raise InputError(f"crops {crops}: use one of {CROPS}")
        self.crops, self.normalise = int(crops), normalise
        self.resize, self.crop = _check_size(size)

    def uint8(self):
        raw = copy.copy(self)
        raw.normalise = False
        return raw

    def resized(self, frames):
        """uint8 (T, H, W, 3) -> (T, h, w, 3): each frame through PIL's Lanczos resize."""
        height, width = self.resize
        out = np.empty((len(frames), height, width, 3), np.uint8)
        for frame, dst in zip(frames, out):
            image = Image.fromarray(np.ascontiguousarray(frame))
            dst[...] = np.asarray(image.resize((width, height), Image.Resampling.LANCZOS))
        return out

    def views(self, resized):
        """(T, h, w, 3) -> (V, T, c, c, 3) in the reference's order, or (T, c, c, 3) for crops 1."""
        c = self.crop
        offsets = crop_offsets(*self.resize, c)
        if self.crops == 1:
            top, left = offsets[2]
            return resized[:, top : top + c, left : left + c]
        five = [resized[:, top : top + c, left : left + c] for top, left in offsets]
        if self.crops == 5:
            return np.stack(five)
        flipped = resized[:, :, ::-1]
        mirrored = [flipped[:, top : top + c, left : left + c] for top, left in offsets]
        return np.stack(five + mirrored)

    def __call__(self, frames, rng=None):
        """rng is ignored (the test transforms' interface)."""
        check_frames(frames)
        x = torch.from_numpy(np.ascontiguousarray(self.views(self.resized(frames))))
        return normalise_rtfm(x).contiguous() if self.normalise else x


_CENTRES = {}  # device -> the 0-d float32 tensor 127.5 there


def normalise_rtfm(clips):
    """uint8 BGR views (..., T, H, W, 3) -> float32 RGB (..., 3, T, H, W) in [-1, 1] on clips'
    device: the reference's x * 2 / 255 - 1 (module docstring). The channels-last strides of the
    input are kept (no copy)."""
    if clips.dtype != torch.uint8 or clips.dim() < 4 or clips.shape[-1] != 3:
        raise TypeError(
            "normalise_rtfm expects uint8 (..., T, H, W, 3) clips of RTFMTransform.uint8(), got "
            f"{clips.dtype} {tuple(clips.shape)}"
        )
    key = str(clips.device)
    if key not in _CENTRES:
        # a tensor, not a Python scalar: CUDA turns division by a scalar into * (1 / scalar)
        _CENTRES[key] = torch.tensor(CENTRE, dtype=torch.float32, device=clips.device)
    centre = _CENTRES[key]
    x = clips.flip(-1).movedim(-1, -4).float()
    x -= centre
    x /= centre
    return x
