"""Rebuilds the golden vectors' official weights and inputs (tests/golden/README.md §1).

Weights: for the i-th entry of the *official* state_dict (official key order, num_batches_tracked
included), rng = RandomState(1000 + i) draws running_var U(0.5, 1.5), running_mean N(0, 0.1), BN
gamma U(0.8, 1.2), tensors with >= 2 dims N(0, 1/sqrt(fan_in)), other 1-D tensors N(0, 0.01); cast
to float32 afterwards."""

import hashlib
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

GOLDEN = Path(__file__).parent / "golden"


def manifest(name):
    """'official_I3D_SGA_STD' -> the parsed tests/golden/manifests/<name>.json."""
    return json.loads((GOLDEN / "manifests" / f"{name}.json").read_text())


def golden(name):
    """'i3d_sga_std' -> dict of arrays from tests/golden/<name>.npz."""
    with np.load(GOLDEN / f"{name}.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def rule_array(i, key, shape, seed_base=1000, gammas=(".batch3d.weight",)):
    """The golden weight rule for entry i of an official state dict -> float32 array (int64 0 for
    counters). seed_base and gammas (the BatchNorm weight suffixes; the official models' only ones
    are `.batch3d.weight`) let another network's golden vectors use the same rule."""
    if key.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=np.int64)
    rng = np.random.RandomState(seed_base + i)
    if key.endswith("running_var"):
        arr = rng.uniform(0.5, 1.5, shape)
    elif key.endswith("running_mean"):
        arr = rng.normal(0, 0.1, shape)
    elif key.endswith(tuple(gammas)):
        arr = rng.uniform(0.8, 1.2, shape)
    elif len(shape) >= 2:
        arr = rng.normal(0, 1 / np.sqrt(np.prod(shape[1:])), shape)
    else:
        arr = rng.normal(0, 0.01, shape)
    return arr.astype(np.float32)


def official_state_dict(name, check_sha=True):
    """Official-keyed state dict of manifest `name` filled by the weight rule, in the official
    order.

    check_sha: compare every generated array with the manifest's sha256 (proves the rule is
    reproduced)."""
    out = OrderedDict()
    for entry in manifest(name)["weight_rule_entries"]:
        arr = rule_array(entry["i"], entry["key"], tuple(entry["shape"]))
        if check_sha and entry["sha256_le"] is not None:
            digest = hashlib.sha256(arr.astype("<f4").tobytes()).hexdigest()
            assert digest == entry["sha256_le"], (
                f"weight rule mismatch at entry {entry['i']} {entry['key']}"
            )
        out[entry["key"]] = torch.from_numpy(arr)
    return out


def i3d_input(height, width):
    """Fresh RandomState(7) per size: (1, 3, 16, H, W) float32 in [-1, 1]."""
    return np.random.RandomState(7).uniform(-1, 1, (1, 3, 16, height, width)).astype(np.float32)


def c3d_input():
    """RandomState(8): (1, 3, 16, 112, 112) float32 ~ N(0, 50)."""
    return np.random.RandomState(8).normal(0, 50, (1, 3, 16, 112, 112)).astype(np.float32)


def sga_input():
    """RandomState(6): (2, 832, 4, 14, 14) float32 in [0, 2]."""
    return np.random.RandomState(6).uniform(0, 2, (2, 832, 4, 14, 14)).astype(np.float32)


def check_input(x, ref, name):
    """Asserts a regenerated input equals the stored fingerprint of golden file `name` (ref = its
    arrays)."""
    assert list(x.shape) == ref["input_shape"].tolist()
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(x64.sum(), ref["input_sum_f64"], rtol=1e-12)
    np.testing.assert_allclose((x64**2).sum(), ref["input_sumsq_f64"], rtol=1e-12)
    np.testing.assert_array_equal(x.reshape(-1)[:16], ref["input_first16"])
    np.testing.assert_array_equal(x.reshape(-1)[-16:], ref["input_last16"])
    digests = json.loads((GOLDEN / "inputs_sha256.json").read_text())
    assert hashlib.sha256(x.astype("<f4").tobytes()).hexdigest() == digests[f"{name}.input"]


def assert_golden(ours, ref, name):
    """max|ours - ref| <= 1e-5 * max(1, max|ref|) (tests/golden/README.md §3); ref is the `_f64`
    array."""
    ours = (
        ours.detach().double().numpy()
        if torch.is_tensor(ours)
        else np.asarray(ours, dtype=np.float64)
    )
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != golden {ref.shape}"
    err, limit = np.abs(ours - ref).max(), 1e-5 * max(1.0, np.abs(ref).max())
    assert err <= limit, f"{name}: max|diff| {err:.3g} > {limit:.3g}"
