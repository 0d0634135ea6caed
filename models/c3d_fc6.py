"""Sports-1M C3D fc6 features, the 4096-d "C3D features" of the public UCF-Crime / ShanghaiTech
sets.

MIST's C3D (models/c3d.py) ends at conv5b, so models/weights.py drops the checkpoint's fc6-fc8. For
vanilla feature extraction this module adds back the C3D head up to fc6, as DavideA/c3d-pytorch (the
`c3d.pickle` layout, ported from the Caffe model):

    conv5b (B, C, 2, 7, 7) -> ReLU -> pool5 MaxPool3d(kernel (2,2,2), stride (2,2,2), padding
    (0,1,1))
    -> (B, C, 1, 4, 4) -> flatten (B, 16 C = 8192) -> fc6 Linear(8192, 4096) -> ReLU  = the feature

The Caffe extractor read blob fc6-1 after its in-place ReLU, so the public features are post-ReLU
(>= 0). pool5 pads H and W by 1 (with -inf), which turns 7x7 into 4x4; 112x112 crops (the C3D test
transform) are the only input size fc6 accepts."""

from collections import OrderedDict

from torch import nn
from torch.nn import functional as F

from models.c3d import C3D
from models.weights import CheckpointError, load_weights, read_state_dict
from utils.errors import InputError


class C3DFc6(nn.Module):
    """C3D trunk + pool5 + fc6. forward(clips (B, 3, 16, 112, 112)) -> (B, fc6_out) features after
    ReLU."""

    def __init__(self, width=1.0, fc6_in=8192, fc6_out=4096):
        super().__init__()
        self.backbone = C3D(width=width)
        self.pool5 = nn.MaxPool3d((2, 2, 2), stride=(2, 2, 2), padding=(0, 1, 1))
        self.fc6 = nn.Linear(fc6_in, fc6_out)

    def forward(self, clips):
        conv5b, _ = self.backbone(clips)  # already after ReLU
        x = self.pool5(conv5b).flatten(1)
        if x.shape[1] != self.fc6.in_features:
            raise InputError(
                f"C3D fc6 takes {self.fc6.in_features} pool5 values per clip but this input gives "
                f"{x.shape[1]} (input {tuple(clips.shape[-3:])}); use the C3D test transform "
                "(resize 128x171, centre crop 112, DATA.TEST_SIZE [])"
            )
        return F.relu(self.fc6(x))


def _fc6_tensors(path):
    """-> (weight, bias) of fc6 in the checkpoint at `path` (plain, `module.` or `backbone.`
    prefixed)."""
    state = read_state_dict(path)
    for prefix in ("", "backbone."):
        if f"{prefix}fc6.weight" in state and f"{prefix}fc6.bias" in state:
            return state[f"{prefix}fc6.weight"], state[f"{prefix}fc6.bias"]
    raise CheckpointError(
        f"{path}: no fc6.weight / fc6.bias; vanilla C3D features need the Sports-1M "
        "classifier's fc6 (DavideA c3d.pickle). A MIST-C3D checkpoint has none: extract its "
        "features with --encoder mist (512-d pooled (1 + A) * conv5b)"
    )


def load_c3d_fc6(path, width=1.0):
    """Sports-1M C3D checkpoint (any C3D layout of models/weights.py, with fc6) -> C3DFc6 in eval
    mode."""
    weight, bias = _fc6_tensors(path)
    if weight.dim() != 2:
        raise CheckpointError(
            f"{path}: fc6.weight has shape {tuple(weight.shape)}; expected (out, in)"
        )
    model = C3DFc6(width, fc6_in=weight.shape[1], fc6_out=weight.shape[0])
    load_weights(model.backbone, path)
    model.fc6.load_state_dict(OrderedDict(weight=weight, bias=bias))
    return model.eval()
