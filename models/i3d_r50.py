"""I3D ResNet-50 (Kinetics-400, no non-local blocks): the network of the RTFM-style 2048-d features.

The architecture of Tushar-N/pytorch-resnet3d `models/resnet.py` (`I3Res50`, itself a port of the
Caffe2 `i3d_baseline_32x2_IN_pretrain_400k` model of facebookresearch/video-nonlocal-net), written
here with the same module names, so that its converted weight file `i3d_r50_kinetics.pth` loads
without renaming (docs/i3d_r50.md):

  conv1 (5x7x7, stride 2) bn1 ReLU, maxpool1 (2x3x3, stride 2, no padding)
  layer1 (3 bottlenecks of 64), maxpool2 (2x1x1 over time), layer2 (4 of 128, stride 2),
  layer3 (6 of 256, stride 2), layer4 (3 of 512, stride 2): 2048 channels
  features = layer4 averaged over time and space (B, 2048); fc (2048 -> 400) only in `logits`

A bottleneck's first convolution is temporal (3x1x1, padding 1) or not (1x1x1) by the per-block
pattern TEMPORAL; its 3x3 convolution carries the stride; a projection shortcut (`downsample`: 1x1x1
convolution + BatchNorm) is used where the channels or the stride change.

`load_i3d_r50(path)` reads such a file without running its code and refuses any other (a missing,
extra or wrongly shaped tensor is named); the published file has no `num_batches_tracked` counters,
which inference does not use, so those alone may be absent."""

import torch.nn.functional as F
from torch import nn

from models.weights import CheckpointError, read_state_dict

# per layer: (bottleneck width, blocks' temporal kernel flags, spatial stride of the first block)
TEMPORAL = {
    "layer1": (64, (1, 1, 1), 1),
    "layer2": (128, (1, 0, 1, 0), 2),
    "layer3": (256, (1, 0, 1, 0, 1, 0), 2),
    "layer4": (512, (0, 1, 0), 2),
}
EXPANSION = 4
FEATURE_DIM = 512 * EXPANSION
_SHOWN = 3  # tensors named in an error message before "... and N more"


class Bottleneck(nn.Module):
    """x (B, C_in, T, H, W) -> (B, 4 * planes, T, H / stride, W / stride)."""

    def __init__(self, inplanes, planes, stride, temporal):
        super().__init__()
        t = 1 + 2 * temporal
        self.conv1 = nn.Conv3d(inplanes, planes, (t, 1, 1), padding=(temporal, 0, 0), bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(
            planes, planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False
        )
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes * EXPANSION:
            self.downsample = nn.Sequential(
                nn.Conv3d(inplanes, planes * EXPANSION, 1, stride=(1, stride, stride), bias=False),
                nn.BatchNorm3d(planes * EXPANSION),
            )

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


def _layer(inplanes, planes, temporal, stride):
    blocks = [Bottleneck(inplanes, planes, stride, temporal[0])]
    blocks += [Bottleneck(planes * EXPANSION, planes, 1, t) for t in temporal[1:]]
    return nn.Sequential(*blocks)


class I3DRes50Features(nn.Module):
    """clips (B, 3, T, H, W), RGB in [-1, 1] (datasets/rtfm_transform.py) -> features (B, 2048):
    the global average of layer4, as the reference's feature path. `blocks(x)` -> every stage's
    output; `logits(features)` -> the Kinetics classifier (B, num_classes)."""

    def __init__(self, num_classes=400):
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, (5, 7, 7), stride=2, padding=(2, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool1 = nn.MaxPool3d((2, 3, 3), stride=2)
        self.maxpool2 = nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1))
        inplanes = 64
        for name, (planes, temporal, stride) in TEMPORAL.items():
            self.add_module(name, _layer(inplanes, planes, temporal, stride))
            inplanes = planes * EXPANSION
        self.fc = nn.Linear(FEATURE_DIM, num_classes)
        self.dim = self.out_channels = FEATURE_DIM

    def blocks(self, x):
        """-> {stage name: its output (B, C, t, h, w)} in forward order, 'layer4' last."""
        out = {"stem": self.maxpool1(self.relu(self.bn1(self.conv1(x))))}
        out["layer1"] = self.layer1(out["stem"])
        out["layer2"] = self.layer2(self.maxpool2(out["layer1"]))
        out["layer3"] = self.layer3(out["layer2"])
        out["layer4"] = self.layer4(out["layer3"])
        return out

    def forward(self, clips):
        return F.adaptive_avg_pool3d(self.blocks(clips)["layer4"], 1).flatten(1)

    def logits(self, features):
        """features (B, 2048) -> Kinetics logits (B, num_classes); the reference drops out before
        fc only in training."""
        return self.fc(features)


def _few(keys):
    keys = sorted(keys)
    more = f" ... and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def _other_network(keys, path):
    """-> the fix for a file of a known other network, or None."""
    if any(".nl." in k for k in keys):
        return (
            f"{path} is the non-local I3D ResNet-50 (i3d_r50_nl_kinetics.pth: '.nl.' tensors); "
            "--encoder i3d_r50 takes the baseline i3d_r50_kinetics.pth (docs/i3d_r50.md)"
        )
    if any(k.startswith(("conv3d_1a_7x7", "Conv3d_1a_7x7", "backbone.", "mixed_")) for k in keys):
        return f"{path} holds an Inception I3D or a MIST model: use --encoder i3d or mist"
    return None


def check_state_dict(state, model, path):
    """CheckpointError unless `state` has every tensor of `model` (num_batches_tracked may be
    absent) with its shape, and nothing else."""
    expected = model.state_dict()
    fix = _other_network(state, path)
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    extra = [k for k in state if k not in expected]
    if fix and (missing or extra):
        raise CheckpointError(fix)
    if missing:
        raise CheckpointError(
            f"{path} lacks {len(missing)} tensor(s) of I3D ResNet-50: {_few(missing)}; the file "
            "is truncated or of another network: use i3d_r50_kinetics.pth (docs/i3d_r50.md)"
        )
    if extra:
        raise CheckpointError(
            f"{path} has {len(extra)} tensor(s) I3D ResNet-50 does not: {_few(extra)}; pass the "
            "bare i3d_r50_kinetics.pth state dict (docs/i3d_r50.md)"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{path}: tensor {key} has shape {tuple(value.shape)}, I3D ResNet-50 expects "
                f"{tuple(expected[key].shape)}: the file is of another network or was converted "
                "wrongly (docs/i3d_r50.md)"
            )


def load_i3d_r50(path):
    """-> I3DRes50Features in eval mode with the weights of `path` (an i3d_r50_kinetics.pth layout),
    read without running code; CheckpointError naming the tensor if the file does not fit."""
    state = read_state_dict(path)
    fc = state.get("fc.weight")
    model = I3DRes50Features(num_classes=400 if fc is None or fc.dim() != 2 else fc.shape[0])
    check_state_dict(state, model, path)
    model.load_state_dict(state, strict=False)
    return model.eval()
