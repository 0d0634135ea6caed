"""torchvision's Kinetics-400 video models as MIST backbones (docs/backbones.md).

Each backbone is torchvision's own network (torchvision.models.video), built without weights and
without its classifier, so its parameter names are torchvision's: the published files
(`r2plus1d_18-91a641e6.pth`, ...) load as they are, under `backbone.` in a MIST model. forward
returns the two maps MIST needs, as I3D and C3D do:

  f4  the 4th stage (B, C4, T4, H4, W4), the SGA's input
  f5  the last stage (B, C5, T5, H5, W5), weighted by (1 + A)

| name        | f4                      | f5                          | summary(f5): head input  |
|-------------|-------------------------|-----------------------------|--------------------------|
| r2plus1d_18 | layer3, 256 x 4x14x14   | layer4, 512 x 2x7x7         | global average           |
| s3d         | Mixed_4f, 832 x 4x14x14 | Mixed_5c, 1024 x 2x7x7      | mean of AvgPool3d(2,7,7) |
| mvit_v2_s   | block 13, 384 x 8x14x14 | norm(block 15), 768 x 8x7x7 | class token (after norm) |
| swin3d_t    | stage 3, 384 x 8x14x14  | norm(stage 4), 768 x 8x7x7  | global average           |

(sizes for a 16-frame clip at the weights' crop: 112 for r2plus1d_18, 224 for the others.)

Two adaptations make MIST's SGA (docs/REFERENCE.md §3.1) fit them unchanged:
  - f4 is average-pooled in time to 4 steps when it has more (MViT and Swin keep 8): the SGA's
    3-step convolution and 2-step head then give one attention map per clip, as for I3D and C3D.
  - pooled = summary(f5) + mean(A * f5): for the averaging backbones this is MIST's
    mean((1 + A) * f5); for MViT, whose head reads the class token, A weights the patch tokens'
    average added to it. With SGA off (A = 0) pooled is exactly torchvision's head input, so a MIST
    model with torchvision's classifier as its head computes torchvision's forward (tested).
"""

from dataclasses import dataclass

from torch import nn
from torch.nn import functional as F
from torchvision.models import video

from utils.errors import InputError

SGA_STEPS = 4  # time steps of f4 that MIST's SGA takes (a 16-frame I3D clip's Mixed_4f)


@dataclass(frozen=True)
class TorchvisionSpec:
    """One torchvision video model: its builder, classifier and the weights' published file."""

    builder: str  # torchvision.models.video.<builder>
    classifier: str  # the child module dropped (the Kinetics-400 classifier)
    marker: str  # a key only this model's state dict has (format detection)
    sga_channels: int
    out_channels: int
    weights_file: str  # download.pytorch.org/models/<file>: the name holds sha256[:8]


TORCHVISION = {
    "r2plus1d_18": TorchvisionSpec(
        "r2plus1d_18", "fc", "stem.0.weight", 256, 512, "r2plus1d_18-91a641e6.pth"
    ),
    "s3d": TorchvisionSpec(
        "s3d", "classifier", "features.0.0.0.weight", 832, 1024, "s3d-d76dad2f.pth"
    ),
    "mvit_v2_s": TorchvisionSpec(
        "mvit_v2_s", "head", "conv_proj.weight", 384, 768, "mvit_v2_s-ae3be167.pth"
    ),
    "swin3d_t": TorchvisionSpec(
        "swin3d_t", "head", "patch_embed.proj.weight", 384, 768, "swin3d_t-7615ae03.pth"
    ),
}
MVIT_CLIP = (16, 224, 224)  # (T, H, W) of mvit_v2_s's input
S3D_MIXED_4F = 12  # index of Mixed_4f in torchvision's S3D.features


class TorchvisionBackbone(nn.Module):
    """torchvision's `name` model without its classifier -> (f5, f4) (module docstring).

    width is refused unless 1.0: torchvision's models have one width. mvit_v2_s takes 16x224x224
    clips only (torchvision builds its relative positions for that size); the others take any size
    from 16x32x32 up (s3d from 16x224x224: its AvgPool3d(2, 7, 7))."""

    def __init__(self, name, width=1.0):
        super().__init__()
        if width != 1.0:
            raise InputError(
                f"MODEL.WIDTH = {width}: torchvision backbone {name!r} has one width; set "
                "MODEL.WIDTH 1.0 (tiny runs shrink DATA.TRAIN_SIZE / DATA.TEST_SIZE instead)"
            )
        spec = TORCHVISION[name]
        net = getattr(video, spec.builder)(weights=None)
        for child, module in net.named_children():
            if child != spec.classifier:
                self.add_module(child, module)
        self.name = name
        self.sga_channels, self.out_channels = spec.sga_channels, spec.out_channels

    def forward(self, clips):
        """clips (B, 3, T, H, W) -> (f5, f4), as I3D and C3D."""
        f5, f4, _ = self.encode(clips)
        return f5, f4

    def encode(self, clips):
        """clips (B, 3, T, H, W) -> (f5, f4 with at most SGA_STEPS time steps, summary (B, C5): the
        input of torchvision's classifier)."""
        f5, f4, summary = getattr(self, f"_{self.name}")(clips)
        if f4.shape[2] > SGA_STEPS:
            f4 = F.adaptive_avg_pool3d(f4, (SGA_STEPS, *f4.shape[3:]))
        return f5, f4, summary

    def _r2plus1d_18(self, x):
        f4 = self.layer3(self.layer2(self.layer1(self.stem(x))))
        f5 = self.layer4(f4)
        return f5, f4, f5.mean(dim=(2, 3, 4))

    def _s3d(self, x):
        f4 = self.features[: S3D_MIXED_4F + 1](x)
        f5 = self.features[S3D_MIXED_4F + 1 :](f4)
        return f5, f4, self.avgpool(f5).mean(dim=(2, 3, 4))

    def _swin3d_t(self, x):
        f4 = self.features[:5](self.pos_drop(self.patch_embed(x)))
        f5 = self.norm(self.features[5:](f4)).permute(0, 4, 1, 2, 3)
        return f5, f4.permute(0, 4, 1, 2, 3), f5.mean(dim=(2, 3, 4))

    def _mvit_v2_s(self, x):
        if tuple(x.shape[2:]) != MVIT_CLIP:
            raise InputError(
                f"mvit_v2_s takes {MVIT_CLIP} clips (torchvision builds its relative positions "
                f"for that size) but got {tuple(x.shape[2:])}: use 16-frame clips with "
                "DATA.TRAIN_SIZE's crop 224 and a 224x224 test view (DATA.TEST_SIZE "
                "[256, 341, 224])"
            )
        x = self.pos_encoding(self.conv_proj(x).flatten(2).transpose(1, 2))
        thw = (self.pos_encoding.temporal_size, *self.pos_encoding.spatial_size)
        for i, block in enumerate(self.blocks):
            x, thw = block(x, thw)
            if i == len(self.blocks) - 3:  # the last block of the 384-channel stage
                f4 = _token_map(x, thw)
        x = self.norm(x)
        return _token_map(x, thw), f4, x[:, 0]


def _token_map(tokens, thw):
    """(B, 1 + T*H*W, C) tokens with a class token first -> the patch tokens as (B, C, T, H, W)."""
    return tokens[:, 1:].transpose(1, 2).reshape(tokens.shape[0], -1, *thw)


def torchvision_backbone(name):
    """-> a builder (width) of the torchvision backbone `name` (models/mist.py BACKBONES)."""

    def build(width=1.0):
        return TorchvisionBackbone(name, width=width)

    build.torchvision = TORCHVISION[name]
    return build


def torchvision_reference(name):
    """-> torchvision's own `name` model (weights=None, eval): what the tests compare a MIST model
    with SGA off and torchvision's head against."""
    return getattr(video, TORCHVISION[name].builder)(weights=None).eval()
