"""C3D backbone (Sports-1M layout) as MIST's `models/C3D_STD.py` (docs/REFERENCE.md §3.3).

conv1a..conv5b, every conv 3x3x3 / padding 1 / bias, each followed by ReLU; no pool5 and no fc6/fc7
(the released MIST-C3D has 34.7 M parameters, not the 85 M of the paper, §7). Parameter names are
the official ones (`conv4b.weight`), so the authors' checkpoints load without renaming the backbone.
"""

from torch import nn
from torch.nn import functional as F

from models.i3d import scale_channels

# (name, out_channels) for convs; (name, kernel = stride) for max-pools, in forward order
LAYERS = (
    ("conv1a", 64),
    ("pool1", (1, 2, 2)),
    ("conv2a", 128),
    ("pool2", (2, 2, 2)),
    ("conv3a", 256),
    ("conv3b", 256),
    ("pool3", (2, 2, 2)),
    ("conv4a", 512),
    ("conv4b", 512),
    ("pool4", (2, 2, 2)),
    ("conv5a", 512),
    ("conv5b", 512),
)


class C3D(nn.Module):
    """C3D conv trunk. forward(x) -> (relu(conv5b), relu(conv4b)).

    width scales every channel count (width=1.0 is the official network); `out_channels` and
    `sga_channels` are the channel counts of conv5b and conv4b (512 and 512 at width 1).
    """

    def __init__(self, width=1.0):
        super().__init__()
        channels = 3
        for name, arg in LAYERS:
            if name.startswith("conv"):
                out = scale_channels(arg, width)
                self.add_module(name, nn.Conv3d(channels, out, 3, padding=1))
                channels = out
                if name == "conv4b":
                    self.sga_channels = channels
            else:
                self.add_module(name, nn.MaxPool3d(arg, arg))
        self.out_channels = channels

    def blocks(self, x):
        """Yields (name, output) in forward order; conv outputs are yielded *before* their ReLU (the
        official backbone applies one shared ReLU functionally, so its golden hooks see pre-ReLU
        values).

        x: (B, 3, T, H, W), BGR minus the Sports-1M mean (§3.5).
        """
        for name, layer in self.named_children():
            x = layer(x)
            yield name, x
            if name.startswith("conv"):
                x = F.relu(x)

    def forward(self, x):
        """x: (B, 3, 16, 112, 112) -> conv5b (B, 512, 2, 7, 7), conv4b (B, 512, 4, 14, 14), both
        after ReLU."""
        for name, x in self.blocks(x):
            if name == "conv4b":
                conv4b = x
        return F.relu(x), F.relu(conv4b)
