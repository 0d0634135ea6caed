"""Stage-2 models against the official golden vectors (docs/REFERENCE.md §3.1-3.4,
tests/golden/README.md §2.6-2.8).

Official weights are rebuilt with the golden rule (tests/golden_weights.py), renamed by our mapping
(models/weights.py) and loaded strictly, so every test also proves the key mapping.
"""

import pytest
import torch

from models.c3d import C3D
from models.i3d import I3D, same_padding
from models.mist import MIST, anomaly_score
from models.sga import SelfGuidedAttention
from models.weights import OFFICIAL_SGA_NAMES, convert_state_dict, to_official_state_dict
from tests.golden_weights import (
    assert_golden,
    c3d_input,
    check_input,
    golden,
    i3d_input,
    manifest,
    official_state_dict,
    sga_input,
)

torch.backends.cuda.matmul.allow_tf32 = False  # tests/golden/README.md §3; no-ops on the CPU
torch.backends.cudnn.allow_tf32 = False


def _golden_mist(backbone, name):
    with torch.device("meta"):  # skip the random init: every tensor is replaced below
        model = MIST(backbone, expand_k=8, dropout=0.8).eval()
    state_dict, report = convert_state_dict(official_state_dict(name), backbone)
    assert report.format == "official_mist" and not report.ignored
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model


@pytest.fixture(scope="module")
def mist_i3d():
    return _golden_mist("i3d", "official_I3D_SGA_STD")


@pytest.fixture(scope="module")
def mist_c3d():
    return _golden_mist("c3d", "official_C3D_SGA_STD")


def _run_with_blocks(model, x):
    """x: numpy clip -> (MIST output dict, {backbone child name: its output}) in one eval
    forward."""
    blocks = {}
    hooks = [
        module.register_forward_hook(lambda m, i, o, name=name: blocks.__setitem__(name, o))
        for name, module in model.backbone.named_children()
    ]
    try:
        with torch.no_grad():
            out = model(torch.from_numpy(x))
    finally:
        for hook in hooks:
            hook.remove()
    return out, blocks


def _compare_full_model(out, blocks, ref):
    """Every golden array of a full-model file against its _f64 reference."""
    fmap = out["feature_map"]
    ours = {}  # blocks first, so a failure names the first block where the implementations diverge
    block_names = [
        k[len("block_") : -len("_shape")]
        for k in ref
        if k.startswith("block_") and k.endswith("_shape")
    ]
    assert sorted(block_names) == sorted(blocks), (
        "backbone children differ from the official blocks"
    )
    for name in block_names:
        assert list(blocks[name].shape) == ref[f"block_{name}_shape"].tolist(), name
        ours[f"block_{name}_mean_hw"] = blocks[name][0].mean(dim=(2, 3))
    ours.update(
        {
            "logits_raw": out["logits"],
            "atten_logits_raw": out["guided_logits"],
            "logits": torch.softmax(out["logits"], 1),
            "atten_logits": torch.softmax(out["guided_logits"], 1),
            "atten_map": out["attention"],
            "feat_map": fmap,
            "feat_map_mean_hw": fmap.mean(dim=(3, 4)),
            "feat_map_gap": fmap.mean(dim=(2, 3, 4)),
            "sga_m": out["sga_m"],
        }
    )
    for key, value in ours.items():
        assert_golden(value, ref[f"{key}_f64"], key)


@pytest.mark.parametrize(
    "name,height,width",
    [
        ("i3d_sga_std", 224, 224),
        ("i3d_sga_std_240x320", 240, 320),
        ("i3d_sga_std_256x340", 256, 340),
    ],
)
def test_mist_i3d_matches_official(mist_i3d, name, height, width):
    ref = golden(name)
    x = i3d_input(height, width)
    check_input(x, ref, name)
    out, blocks = _run_with_blocks(mist_i3d, x)
    _compare_full_model(out, blocks, ref)


def test_mist_c3d_matches_official(mist_c3d):
    ref = golden("c3d_sga_std")
    x = c3d_input()
    check_input(x, ref, "c3d_sga_std")
    out, blocks = _run_with_blocks(mist_c3d, x)
    _compare_full_model(out, blocks, ref)


def test_sga_module_matches_official():
    sga = SelfGuidedAttention(832, expand_k=8, out_t=2).eval()
    official = official_state_dict("official_SGA_module_832_k8_t2")
    renamed = {}
    for key, value in official.items():
        module, param = key.rsplit(".", 1)
        renamed[f"{OFFICIAL_SGA_NAMES[module]}.{param}"] = value
    sga.load_state_dict(renamed, strict=True)
    ref = golden("sga_module")
    x = sga_input()
    check_input(x, ref, "sga_module")
    with torch.no_grad():
        att_map, guided_logits, m = sga(torch.from_numpy(x))
    assert_golden(att_map, ref["att_map_f64"], "att_map")
    assert_golden(guided_logits, ref["guided_logits_f64"], "guided_logits")
    assert_golden(m, ref["m_f64"], "m")


def test_guided_logits_average_channel_groups():
    """Channels 0..k-1 -> class 0, k..2k-1 -> class 1 (§3.1): with att_2 = identity, logits are
    group means."""
    sga = SelfGuidedAttention(4, expand_k=3).eval()
    with torch.no_grad():
        sga.att_2.weight.copy_(torch.eye(6).view(6, 6, 1, 1, 1))
        sga.att_2.bias.zero_()
        x = torch.rand(2, 4, 4, 6, 6)
        _, logits, m = sga(x)
    heads = m.mean(dim=(2, 3, 4))
    torch.testing.assert_close(
        logits, torch.stack([heads[:, :3].mean(1), heads[:, 3:].mean(1)], dim=1)
    )


@pytest.mark.parametrize(
    "backbone,manifest_name,n_params",
    [("i3d", "official_I3D_SGA_STD", 30_993_827), ("c3d", "official_C3D_SGA_STD", 34_743_875)],
)
def test_parameter_counts_and_official_key_order(backbone, manifest_name, n_params):
    with torch.device("meta"):
        model = MIST(backbone)
    assert sum(p.numel() for p in model.parameters()) == n_params
    official = to_official_state_dict(model.state_dict(), backbone)
    expected = manifest(manifest_name)["keys_shapes"]
    assert [(k, list(v.shape)) for k, v in official.items()] == [(k, s) for k, s in expected]


@pytest.mark.parametrize(
    "backbone,height,width,hw5,hw4",
    [
        ("i3d", 224, 224, (7, 7), (14, 14)),
        ("i3d", 240, 320, (8, 10), (15, 20)),
        ("c3d", 112, 112, (7, 7), (14, 14)),
        ("i3d", 64, 96, (2, 3), (4, 6)),
        ("c3d", 64, 80, (4, 5), (8, 10)),
    ],
)
def test_output_shapes(backbone, height, width, hw5, hw4):
    """Shapes from the meta device (no compute) at the test sizes, plus small demo sizes."""
    with torch.device("meta"):
        model = MIST(backbone, expand_k=4)
        out = model(torch.empty(3, 3, 16, height, width))
        f5, f4 = model.backbone(torch.empty(3, 3, 16, height, width))
    c5 = 1024 if backbone == "i3d" else 512
    assert tuple(f5.shape) == (3, c5, 2, *hw5)
    assert tuple(f4.shape) == (3, 832 if backbone == "i3d" else 512, 4, *hw4)
    assert tuple(out["logits"].shape) == tuple(out["guided_logits"].shape) == (3, 2)
    assert tuple(out["attention"].shape) == (3, 1, 1, *hw5)
    assert tuple(out["feature_map"].shape) == (3, c5, 2, *hw5)
    assert tuple(out["sga_m"].shape) == (3, 8, 2, *hw5)


@pytest.mark.parametrize(
    "cls,width,c5,c4", [(I3D, 0.25, 256, 208), (I3D, 0.1, 102, 84), (C3D, 0.25, 128, 128)]
)
def test_width_multiplier(cls, width, c5, c4):
    backbone = cls(width=width)
    assert (backbone.out_channels, backbone.sga_channels) == (c5, c4)
    model = MIST("i3d" if cls is I3D else "c3d", width=width).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 16, 32, 32))
    assert out["feature_map"].shape[1] == c5 and model.sga.conv_atten.in_channels == c4
    assert torch.isfinite(out["logits"]).all()


def test_hassony2_padding_differs_from_tf_same_on_odd_sizes():
    """Width 85 with a 3/2 max-pool: hassony2 pads (0, 1) where TF-SAME pads (1, 1)
    (tests/golden/README.md §2.7); time follows TF-SAME from T mod stride (7 steps, kernel 3,
    stride 2 -> 1 + 1)."""
    assert same_padding((1, 3, 3), (1, 2, 2), 8) == (0, 1, 0, 1, 0, 0)
    assert same_padding((3, 3, 3), (2, 2, 2), 7) == (0, 1, 0, 1, 1, 1)
    assert same_padding((3, 3, 3), (2, 2, 2), 8) == (0, 1, 0, 1, 0, 1)
    assert same_padding((7, 7, 7), (2, 2, 2), 16) == (2, 3, 2, 3, 2, 3)


def test_anomaly_score_and_dropout_only_in_training(mist_c3d):
    x = torch.from_numpy(c3d_input())[:, :, :, :64, :64]
    with torch.no_grad():
        out = mist_c3d(x)
        again = mist_c3d(x)
    torch.testing.assert_close(anomaly_score(out), torch.softmax(out["logits"], 1)[:, 1])
    torch.testing.assert_close(anomaly_score(out["logits"]), anomaly_score(out))
    assert torch.equal(out["logits"], again["logits"])  # eval: dropout off
