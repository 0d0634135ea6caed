"""CLIP image features of 16-frame clips (open_clip's image towers, weights from a local file).

A clip's feature is the mean of its 16 frames' image embeddings (the output of open_clip's
`encode_image`, not L2-normalised); `ClipFrames(clips, frames=True)` also returns the per-frame
embeddings. Frames are prepared as open_clip's own evaluation preprocessing does (docs/clip.md):
RGB, the short side resized to the model's input size (bicubic, torchvision on PIL images: the
same pixels as open_clip's transform), a centre crop, /255, then CLIP's mean and std.

Weights are read without running code: `.safetensors`, or a state dict through
torch.load(weights_only=True); OpenAI's TorchScript `.pt` archives are refused (docs/clip.md says
how to get a state dict instead). Every tensor of the file must be one the architecture has, with
its shape, and the architecture's every tensor must be in the file."""

import copy
import logging
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import CenterCrop, InterpolationMode, Resize

from datasets.transforms import five_crop_offsets, mirror
from models.weights import CheckpointError
from utils.errors import InputError

# open_clip's values for the OpenAI models (open_clip.constants.OPENAI_DATASET_MEAN / _STD)
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
# (width, patch) of visual.conv1.weight -> the name of a known image tower, for error messages
KNOWN_TOWERS = {(768, 16): "ViT-B/16", (1024, 14): "ViT-L/14", (768, 32): "ViT-B/32"}
# entries of OpenAI's TorchScript state dict that are settings, not tensors of the model
OPENAI_EXTRAS = ("input_resolution", "context_length", "vocab_size")
_SHOWN = 3  # tensors named in an error message before "... and N more"


class ClipTransform:
    """uint8 BGR frames (T, H, W, 3) -> float32 (3, T, size, size), or (V, 3, T, size, size) with
    crops V = 5 (corners + centre of the resized frame) or 10 (and their mirrors). The short side is
    resized to `size` (bicubic, PIL), then the centre crop (crops 1) or the crops are taken.
    .uint8() returns the uint8 BGR frames of the same geometry (T, size, size, 3) / (V, ...);
    `normalise_clip` turns them into the float32 values on any device, bit for bit."""

    def __init__(self, size, crops=1, normalise=True):
        self.size, self.crops, self.normalise = int(size), int(crops), normalise
        self.resize = Resize(self.size, interpolation=InterpolationMode.BICUBIC)
        self.centre = CenterCrop(self.size)

    def uint8(self):
        raw = copy.copy(self)
        raw.normalise = False
        return raw

    def __call__(self, frames, rng=None):
        """rng is ignored (the test transforms' interface)."""
        if not (isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4):
            raise TypeError(
                f"ClipTransform expects uint8 BGR frames (T, H, W, 3), got "
                f"{getattr(frames, 'dtype', type(frames))} {getattr(frames, 'shape', '')}"
            )
        resized = np.stack([self._resize(frame) for frame in frames])
        x = self._views(resized) if self.crops > 1 else resized
        x = torch.from_numpy(np.ascontiguousarray(x))
        return normalise_clip(x) if self.normalise else x

    def _resize(self, frame):
        """BGR (H, W, 3) -> BGR (h, w, 3), short side `size`; crops 1: centre-cropped too."""
        image = self.resize(Image.fromarray(np.ascontiguousarray(frame[..., ::-1])))
        if self.crops == 1:
            image = self.centre(image)
        return np.asarray(image)[..., ::-1]

    def _views(self, resized):
        """(T, h, w, 3) -> (V, T, size, size, 3): corners + centre (+ mirrors)."""
        c, (h, w) = self.size, resized.shape[1:3]
        views = np.stack([resized[:, t : t + c, s : s + c] for t, s in five_crop_offsets(h, w, c)])
        return np.concatenate([views, mirror(views)]) if self.crops == 10 else views


_STATS = {}  # device -> (mean, std) float32 (3, 1, 1, 1)


def normalise_clip(clips):
    """uint8 BGR clips (..., T, H, W, 3) -> float32 (..., 3, T, H, W) on clips' device: RGB, /255,
    minus MEAN, over STD (torchvision's ToTensor + Normalize, the same float32 operations)."""
    if clips.dtype != torch.uint8 or clips.dim() < 4 or clips.shape[-1] != 3:
        raise TypeError(
            f"normalise_clip expects uint8 (..., T, H, W, 3) clips, got {clips.dtype} "
            f"{tuple(clips.shape)}"
        )
    key = str(clips.device)
    if key not in _STATS:
        _STATS[key] = tuple(
            torch.tensor(v, dtype=torch.float32, device=clips.device).view(3, 1, 1, 1)
            for v in (MEAN, STD)
        )
    mean, std = _STATS[key]
    x = clips.flip(-1).movedim(-1, -4).float().div(255)
    return x.sub(mean).div(std)


class ClipFrames(nn.Module):
    """An open_clip image tower on clips: (N, 3, T, h, w) -> (N, D), the mean over T of the
    frames' embeddings; frames=True -> (that, the per-frame embeddings (N, T, D))."""

    def __init__(self, visual):
        super().__init__()
        self.visual = visual
        self.dim = int(visual.output_dim)
        self.image_size = int(np.atleast_1d(visual.image_size)[0])

    def forward(self, clips, frames=False):
        n, c, t, h, w = clips.shape
        images = clips.transpose(1, 2).reshape(n * t, c, h, w)
        per_frame = self.visual(images).view(n, t, -1)
        pooled = per_frame.mean(dim=1)
        return (pooled, per_frame) if frames else pooled


def read_state_dict(path):
    """A CLIP checkpoint file -> {name: tensor}, read without running code (module docstring)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if _is_torchscript(path):
        raise CheckpointError(
            f"{path} is a TorchScript archive (OpenAI's JIT .pt): loading it would run its code; "
            "use the same weights as a state dict, e.g. open_clip_model.safetensors of the Hugging "
            "Face repo docs/clip.md names for this model"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  pickle errors of many kinds: the file is not ours
        raise CheckpointError(
            f"{path} cannot be read as a state dict without running code ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]}); pass an open_clip state dict (.bin/.pt/.pth) or "
            ".safetensors file"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items() if k not in OPENAI_EXTRAS}


def _is_torchscript(path):
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in archive.namelist())


def check_state_dict(state, expected, path, arch):
    """Refuses `state` unless it has exactly the tensors of `expected` (a model's state dict), with
    their shapes; the message names the tensors, the file's architecture and the fix."""
    # the image tower's tensors first: the ones this encoder uses
    order = partial(sorted, key=lambda k: (not k.startswith("visual."), k))
    missing, extra = order(set(expected) - set(state)), order(set(state) - set(expected))
    shapes = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in order(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    problems = [
        (missing, "lacks"),
        (extra, "has tensors the architecture does not have:"),
        (shapes, "has tensors of other shapes:"),
    ]
    found = [f"{what} {_few(names)}" for names, what in problems if names]
    if found:
        raise CheckpointError(
            f"{path} does not fit the CLIP {arch} image encoder: it {'; it '.join(found)}. "
            f"{_fix(state)}"
        )


def _few(names):
    more = f" ... and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def _fix(state):
    """-> what the file seems to be, and what to pass instead."""
    if any(k.startswith(("vision_model.", "text_model.")) for k in state):
        return (
            "Its keys are Hugging Face transformers' (vision_model.*): pass the open_clip file of "
            "the same weights (docs/clip.md)"
        )
    if any(k.startswith(("patch_embed.", "blocks.")) for k in state):
        return (
            "Its keys are timm's (patch_embed.*, blocks.*): pass open_clip_model.safetensors or "
            "open_clip_pytorch_model.bin of the same repository instead"
        )
    conv = state.get("visual.conv1.weight")
    if conv is not None and conv.dim() == 4:
        tower = (int(conv.shape[0]), int(conv.shape[-1]))
        name = KNOWN_TOWERS.get(tower, f"a ViT of width {tower[0]} and patch {tower[1]}")
        return (
            f"The file holds {name} (visual.conv1.weight {tuple(conv.shape)}): choose its encoder"
        )
    return "Pass a full open_clip CLIP state dict of this architecture (docs/clip.md)"


def load_clip_visual(arch, path):
    """open_clip architecture name + checkpoint file -> ClipFrames in eval mode (float32, CPU). The
    model is built on the meta device (no memory, no download) and takes the file's tensors."""
    open_clip = _open_clip()
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        # open_clip warns that no pretrained weights were loaded: they are loaded just below
        with torch.device("meta"):
            model = open_clip.create_model(arch, pretrained=None, device="meta")
    finally:
        root.setLevel(level)
    state = read_state_dict(path)
    check_state_dict(state, model.state_dict(), path, arch)
    prefix = "visual."
    visual_state = {
        k[len(prefix) :]: v.float() if v.is_floating_point() else v
        for k, v in state.items()
        if k.startswith(prefix)
    }
    visual = model.visual
    visual.load_state_dict(visual_state, strict=True, assign=True)
    return ClipFrames(visual).eval()


def _open_clip():
    try:
        import open_clip
    except ImportError:
        raise InputError(
            "the CLIP encoders need open_clip: pip install -r requirements-optional.txt"
        ) from None
    return open_clip
