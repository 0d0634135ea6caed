"""Feature encoders of tools/extract_features.py: `--encoder NAME` -> an `Encoder` record.

ENCODERS maps each name to a builder (weights path, cfg, crops) -> Encoder. Adding an encoder = a
builder + an entry here (CONTRIBUTING.md); engine/extract.py only runs what the record holds:

  module     normalised clips (N, 3, 16, h, w) -> (N, dim) features, in eval mode
  dim        the feature dimension (DATA.FEATURE_DIM of stage 1)
  transform  uint8 BGR frames (16, H, W, 3) -> one view (3, 16, h, w) or views (V, 3, 16, c, c);
             .uint8() gives the same geometry as uint8 BGR frames (channels last)
  normalise  uint8 clips from transform.uint8() -> the float32 input of `module`, on any device
  name       the file suffix of the npy layout ('<video>_<name>.npy') and the config's backbone
  frames     True when module(clips, frames=True) -> (features (N, dim), per-frame (N, 16, dim)),
             the features being the mean of the frames' (--frame-features writes those too)
"""

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from torch import nn

from datasets.build import test_transform
from datasets.rtfm_transform import RTFMTransform, normalise_rtfm, size_of
from datasets.transforms import normalise
from models.c3d_fc6 import load_c3d_fc6
from models.clip_features import ClipTransform, load_clip_visual, normalise_clip
from models.i3d import I3D
from models.i3d_r50 import load_i3d_r50
from models.loading import load_mist
from models.tv_video import TORCHVISION, TorchvisionBackbone
from models.weights import load_weights
from utils.errors import InputError, NotFoundError
from utils.registry import choose


@dataclass
class Encoder:
    """What engine/extract.py needs of an encoder (module docstring)."""

    module: nn.Module
    dim: int
    transform: object
    normalise: Callable
    name: str
    frames: bool = False


class PooledI3D(nn.Module):
    """Vanilla I3D features: clips (B, 3, 16, H, W) -> mixed_5c averaged over time and space (B,
    1024)."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.dim = backbone.out_channels

    def forward(self, clips):
        return self.backbone(clips)[0].mean(dim=(2, 3, 4))


class PooledMIST(nn.Module):
    """Fine-tuned MIST features: clips -> the head's input (B, C): the global average of
    (1 + A) * F5 (models/mist.py `pooled`)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.dim = model.backbone.out_channels

    def forward(self, clips):
        return self.model(clips)["pooled"]


class PooledTorchvision(nn.Module):
    """A torchvision video model's features: clips -> the input of its Kinetics classifier (B, C)
    (models/tv_video.py `encode`)."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.dim = backbone.out_channels

    def forward(self, clips):
        return self.backbone.encode(clips)[2]


class FirstViews:
    """The first `n` views of a ten-crop transform (--crops 5: the corners and centre, no
    mirrors)."""

    def __init__(self, transform, n):
        self.transform, self.n, self.backbone = transform, n, transform.backbone

    def __call__(self, frames):
        return self.transform(frames)[: self.n]

    def uint8(self):
        return FirstViews(self.transform.uint8(), self.n)


def make_transform(cfg, backbone, crops):
    """-> frames uint8 (16, H, W, 3) -> (3, 16, h, w) for crops 1, or (crops, 3, 16, c, c); .uint8()
    as TestTransform's."""
    transform = test_transform(cfg, backbone=backbone, ten_crop=crops > 1)
    return transform if crops in (1, 10) else FirstViews(transform, crops)


def _record(module, cfg, backbone, crops):
    """-> the Encoder of a module with .dim that takes `backbone`'s test transform."""
    return Encoder(
        module.eval(),
        module.dim,
        make_transform(cfg, backbone, crops),
        partial(normalise, backbone=backbone),
        backbone,
    )


def i3d_encoder(weights, cfg, crops):
    """Kinetics I3D (any I3D layout of models/weights.py): mixed_5c global average, 1024-d."""
    backbone = I3D(width=cfg.MODEL.WIDTH)
    load_weights(backbone, weights)
    return _record(PooledI3D(backbone), cfg, "i3d", crops)


def c3d_encoder(weights, cfg, crops):
    """Sports-1M C3D with its fc6 (DavideA c3d.pickle): pool5 -> fc6 -> ReLU, 4096-d."""
    model = load_c3d_fc6(weights, cfg.MODEL.WIDTH)
    model.dim = model.fc6.out_features
    return _record(model, cfg, "c3d", crops)


def i3d_r50_encoder(weights, cfg, crops):
    """I3D ResNet-50 (i3d_r50_kinetics.pth, models/i3d_r50.py): layer4 global average, 2048-d, at
    the RTFM-style preprocessing (datasets/rtfm_transform.py: its own 10-crop order); written as
    '<video>_i3d.npy' as in the RTFM lists (docs/i3d_r50.md)."""
    model = load_i3d_r50(weights)
    transform = RTFMTransform(crops, size_of(cfg.DATA.TEST_SIZE))
    return Encoder(model, model.dim, transform, normalise_rtfm, "i3d")


def mist_encoder(weights, cfg, crops):
    """A MIST checkpoint (stage 2): the global average of (1 + A) * F5, the head's input."""
    model, model_cfg = load_mist(weights, cfg)
    return _record(PooledMIST(model.eval()), cfg, model_cfg.MODEL.BACKBONE, crops)


def torchvision_encoder(name):
    """-> the builder of torchvision's Kinetics-400 `name` model (its published file,
    models/tv_video.py) as an encoder: the input of its classifier, at its own test transform."""

    def build(weights, cfg, crops):
        backbone = TorchvisionBackbone(name)
        load_weights(backbone, weights)
        return _record(PooledTorchvision(backbone), cfg, name, crops)

    return build


def clip_encoder(arch, name):
    """-> the builder of the open_clip image tower `arch` (OpenAI CLIP weights: QuickGELU) as an
    encoder `name`: the mean of the 16 frames' embeddings at CLIP's own preprocessing
    (models/clip_features.py, docs/clip.md); DATA.TEST_SIZE does not apply."""

    def build(weights, cfg, crops):
        model = load_clip_visual(arch, weights)
        transform = ClipTransform(model.image_size, crops)
        return Encoder(model, model.dim, transform, normalise_clip, name, frames=True)

    return build


# --encoder NAME -> builder(weights, cfg, crops) -> Encoder
ENCODERS = {
    "i3d": i3d_encoder,
    "c3d": c3d_encoder,
    "i3d_r50": i3d_r50_encoder,
    "mist": mist_encoder,
    "clip_vit_b16": clip_encoder("ViT-B-16-quickgelu", "clip_vit_b16"),
    "clip_vit_l14": clip_encoder("ViT-L-14-quickgelu", "clip_vit_l14"),
    **{name: torchvision_encoder(name) for name in TORCHVISION},
}


def build_encoder(kind, weights, cfg, crops=1):
    """--encoder `kind` with the checkpoint `weights` -> its Encoder."""
    builder = choose(ENCODERS, "--encoder", kind)
    if crops not in (1, 5, 10):
        raise InputError(f"--crops {crops}: use 1, 5 (corners + centre) or 10 (and their mirrors)")
    if not Path(weights).is_file():
        raise NotFoundError(
            f"--weights {str(weights)!r} does not exist: pass the encoder's checkpoint file"
        )
    return builder(weights, cfg, crops)
