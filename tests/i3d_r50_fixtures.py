"""Seeded weights, inputs and frames of the I3D ResNet-50 golden vectors (tests/golden/README.md
§5), shared by tests/test_i3d_r50.py and tests/golden/make_i3d_r50.py.

Weights: entry i of the reference `I3Res50(num_classes=400, use_nl=False).state_dict()` (its order,
num_batches_tracked included, as listed in manifests/tushar_n_I3Res50.json) gets
rng = RandomState(2000 + i): running_var U(0.5, 1.5), running_mean N(0, 0.1), BatchNorm gamma
U(0.8, 1.2), BatchNorm beta and fc bias N(0, 0.01), tensors with >= 2 dims N(0, 1/sqrt(fan_in));
cast to float32; num_batches_tracked int64 0 (nothing drawn)."""

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from tests import golden_weights

GOLDEN = Path(__file__).parent / "golden"
MANIFEST = GOLDEN / "manifests" / "tushar_n_I3Res50.json"
BN_GAMMAS = ("bn1.weight", "bn2.weight", "bn3.weight", "downsample.1.weight")


def reference_keys_shapes():
    """-> [(key, shape)] of the reference state dict, in its order."""
    return [(k, tuple(s)) for k, s in json.loads(MANIFEST.read_text())["keys_shapes"]]


def rule_array(i, key, shape):
    """The module docstring's rule for entry i -> numpy array (tests/golden_weights.py's rule, from
    RandomState(2000 + i) and with the ResNet's BatchNorm gammas)."""
    return golden_weights.rule_array(i, key, shape, seed_base=2000, gammas=BN_GAMMAS)


def rule_state_dict(keys_shapes=None, counters=True):
    """-> OrderedDict of the rule's tensors; counters=False leaves out num_batches_tracked, as the
    published i3d_r50_kinetics.pth does."""
    out = OrderedDict()
    for i, (key, shape) in enumerate(keys_shapes or reference_keys_shapes()):
        if counters or not key.endswith("num_batches_tracked"):
            out[key] = torch.from_numpy(rule_array(i, key, shape))
    return out


def clip_input(height, width, seed=7):
    """(1, 3, 16, height, width) float32 in [-1, 1] from RandomState(seed)."""
    rng = np.random.RandomState(seed)
    return rng.uniform(-1, 1, (1, 3, 16, height, width)).astype(np.float32)


def noise_frames():
    """16 uint8 BGR frames (16, 240, 320, 3) of RandomState(11) noise: every pixel its own."""
    return np.random.RandomState(11).randint(0, 256, (16, 240, 320, 3)).astype(np.uint8)
