"""Inflated Inception-v1 (I3D) backbone, laid out as MIST's `models/I3D_STD.py` (docs/REFERENCE.md
§3.2).

MIST's backbone is hassony2/kinetics_i3d_pytorch `src/i3dpt.py` with the classifier removed, so
module and parameter names here are hassony2's (`mixed_4f.branch_1.1.batch3d.running_var`): Kinetics
checkpoints and the authors' MIST checkpoints load without renaming the backbone.

Padding (why this is not plain TF-SAME): hassony2 pads each spatial axis by a fixed max(k - s, 0),
split top = pad // 2, bottom = the rest, and its max-pools use ceil_mode. That equals TF-SAME
whenever the input size is divisible by the stride (224x224, 240x320) but aligns the pooling windows
differently when it is not (width 85 at `maxPool3d_3a_3x3` for 256x340 input;
tests/golden/README.md §2.7). Time is padded TF-SAME from T mod stride, as MIST does. The 256x340
golden vectors pin this behaviour down."""

from collections import OrderedDict
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

# (branch_0, branch_1 reduce, branch_1, branch_2 reduce, branch_2, branch_3) output channels,
# Inception-v1
MIXED_SPECS = OrderedDict(
    [
        ("mixed_3b", (64, 96, 128, 16, 32, 32)),
        ("mixed_3c", (128, 128, 192, 32, 96, 64)),
        ("mixed_4b", (192, 96, 208, 16, 48, 64)),
        ("mixed_4c", (160, 112, 224, 24, 64, 64)),
        ("mixed_4d", (128, 128, 256, 24, 64, 64)),
        ("mixed_4e", (112, 144, 288, 32, 64, 64)),
        ("mixed_4f", (256, 160, 320, 32, 128, 128)),
        ("mixed_5b", (256, 160, 320, 32, 128, 128)),
        ("mixed_5c", (384, 192, 384, 48, 128, 128)),
    ]
)


def scale_channels(channels, width):
    """Channel count times the width multiplier, rounded, at least 1 (width=1.0 leaves it
    unchanged)."""
    return max(1, int(round(channels * width)))


def _pad_split(total):
    """TF puts the smaller half of an odd padding before the data."""
    return total // 2, total - total // 2


def same_padding(kernel, stride, time_steps):
    """F.pad tuple (w0, w1, h0, h1, t0, t1) for a (kt, kh, kw) window with (st, sh, sw) stride on T
    steps.

    Space: hassony2's static max(k - s, 0). Time: TF-SAME, max(k - (s if T % s == 0 else T % s), 0).
    """
    rem = time_steps % stride[0]
    t_pad = max(kernel[0] - (stride[0] if rem == 0 else rem), 0)
    h_pad = max(kernel[1] - stride[1], 0)
    w_pad = max(kernel[2] - stride[2], 0)
    return (*_pad_split(w_pad), *_pad_split(h_pad), *_pad_split(t_pad))


class Unit3D(nn.Module):
    """Conv3d (no bias) -> BatchNorm3d(eps 1e-3) -> ReLU with TF-style SAME padding (hassony2
    `Unit3Dpy`)."""

    def __init__(self, in_channels, out_channels, kernel=(1, 1, 1), stride=(1, 1, 1)):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        # stride 1 with odd kernels pads symmetrically, which the conv can do itself (no extra copy)
        self.symmetric = all(s == 1 for s in self.stride) and all(k % 2 for k in self.kernel)
        padding = tuple(k // 2 for k in self.kernel) if self.symmetric else 0
        self.conv3d = nn.Conv3d(
            in_channels, out_channels, self.kernel, self.stride, padding, bias=False
        )
        self.batch3d = nn.BatchNorm3d(out_channels, eps=1e-3)

    def forward(self, x):
        """x: (B, C_in, T, H, W) -> (B, C_out, ceil(T/st), ceil(H/sh), ceil(W/sw)) for even H, W."""
        if not self.symmetric:
            x = F.pad(x, same_padding(self.kernel, self.stride, x.shape[2]))
        return F.relu(self.batch3d(self.conv3d(x)), inplace=True)


class MaxPool3dSame(nn.Module):
    """Zero padding then MaxPool3d(ceil_mode=True), as hassony2's `MaxPool3dTFPadding` (§3.2).

    Zero padding equals -inf padding here because every input follows a ReLU.
    """

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x):
        """x: (B, C, T, H, W) -> (B, C, T', H', W') with the hassony2 window alignment."""
        x = F.pad(x, same_padding(self.kernel, self.stride, x.shape[2]))
        return F.max_pool3d(x, self.kernel, self.stride, ceil_mode=True)


class Mixed(nn.Module):
    """Inception block: four branches concatenated along channels (hassony2 `Mixed`)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        c0, c1r, c1, c2r, c2, c3 = out_channels
        self.branch_0 = Unit3D(in_channels, c0)
        self.branch_1 = nn.Sequential(Unit3D(in_channels, c1r), Unit3D(c1r, c1, (3, 3, 3)))
        self.branch_2 = nn.Sequential(Unit3D(in_channels, c2r), Unit3D(c2r, c2, (3, 3, 3)))
        self.branch_3 = nn.Sequential(MaxPool3dSame((3, 3, 3), (1, 1, 1)), Unit3D(in_channels, c3))
        self.out_channels = c0 + c1 + c2 + c3

    def forward(self, x):
        """x: (B, C_in, T, H, W) -> (B, c0+c1+c2+c3, T, H, W)."""
        return torch.cat(
            [self.branch_0(x), self.branch_1(x), self.branch_2(x), self.branch_3(x)], dim=1
        )


class I3D(nn.Module):
    """I3D RGB backbone without the classifier. forward(x) -> (mixed_5c, mixed_4f).

    width scales every channel count (`scale_channels`); width=1.0 is exactly the official network.
    `out_channels` (1024 at width 1) and `sga_channels` (832) give the two returned feature sizes.
    """

    def __init__(self, width=1.0):
        super().__init__()
        c = partial(scale_channels, width=width)
        self.conv3d_1a_7x7 = Unit3D(3, c(64), (7, 7, 7), (2, 2, 2))
        self.maxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.conv3d_2b_1x1 = Unit3D(c(64), c(64))
        self.conv3d_2c_3x3 = Unit3D(c(64), c(192), (3, 3, 3))
        self.maxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        channels = c(192)
        for name, spec in MIXED_SPECS.items():
            if name == "mixed_4b":
                self.maxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
            if name == "mixed_5b":
                self.sga_channels = channels
                self.maxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
            block = Mixed(channels, [c(n) for n in spec])
            self.add_module(name, block)
            channels = block.out_channels
        self.out_channels = channels

    def blocks(self, x):
        """Yields (name, output) for every child in forward order; x: (B, 3, T, H, W) scaled to [-1,
        1]."""
        for name, block in self.named_children():
            x = block(x)
            yield name, x

    def forward(self, x):
        """x: (B, 3, 16, H, W) -> mixed_5c (B, 1024, 2, ~H/32, ~W/32), mixed_4f (B, 832, 4, ~H/16,
        ~W/16)."""
        for name, x in self.blocks(x):
            if name == "mixed_4f":
                mixed_4f = x
        return x, mixed_4f
