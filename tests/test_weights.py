"""Checkpoint formats -> our keys (models/weights.py, tools/convert_weights.py; docs/REFERENCE.md
§3.5).

Dummy checkpoints are built from the manifests' keys and shapes; every tensor holds a marker value
unique to its key, so a test can tell which checkpoint tensor landed in which model parameter. The
expected pairings come from the manifests (pretrained_key_mapping.json) and hand-written tables, not
from the code under test."""

from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from models.c3d import C3D
from models.i3d import I3D
from models.mist import MIST
from models.weights import (
    CheckpointError,
    convert_state_dict,
    detect_format,
    load_weights,
    to_official_state_dict,
    unwrap_checkpoint,
)
from tests.golden_weights import manifest
from utils.errors import UserError
from run_tool import run_tool

ROOT = Path(__file__).resolve().parents[1]
PIERGIAJ_PAIRS = manifest("pretrained_key_mapping")[
    "official I3D backbone <-> piergiaj InceptionI3d(400, in_channels=3)"
]["official_backbone_to_piergiaj"]
DAVIDEA_KEY_MAP = manifest("pretrained_key_mapping")[
    "load_c3d_pretrained_model(C3DBackbone) <- DavideA C3D state_dict"
]["key_map"]
# official full-model key -> ours (tests/golden/README.md §4.4: Conv_Atten.Conv_Atten.0)
OFFICIAL_HEADS = {
    "Conv_Atten.Conv_Atten.0.weight": "sga.conv_atten.weight",
    "Conv_Atten.Conv_Atten.0.bias": "sga.conv_atten.bias",
    "Conv_Atten.Att_1.0.weight": "sga.att_1.weight",
    "Conv_Atten.Att_1.0.bias": "sga.att_1.bias",
    "Conv_Atten.Att_2.weight": "sga.att_2.weight",
    "Conv_Atten.Att_2.bias": "sga.att_2.bias",
    "Conv_Atten.Att_3.0.weight": "sga.att_3.weight",
    "Conv_Atten.Att_3.0.bias": "sga.att_3.bias",
    "Regressor.1.weight": "head.weight",
    "Regressor.1.bias": "head.bias",
}


def dummy(manifest_name, drop_counters=False):
    """Manifest keys -> {key: tensor filled with marker i + 1}; stride-0 views keep memory and files
    tiny."""
    out = OrderedDict()
    for i, (key, shape) in enumerate(manifest(manifest_name)["keys_shapes"]):
        if key.endswith("num_batches_tracked"):
            if not drop_counters:  # old checkpoints (hassony2's model_rgb.pth) have no counters
                out[key] = torch.tensor(i + 1, dtype=torch.int64)
        else:
            out[key] = torch.tensor(float(i + 1)).expand(shape)
    return out


def save(obj, path):
    torch.save(obj, path)
    return path


def _empty_model(cls, *args):
    with torch.device("meta"):  # uninitialised memory: every test overwrites what it checks
        return cls(*args).to_empty(device="cpu")


@pytest.fixture(scope="module")
def mist_i3d():
    return _empty_model(MIST, "i3d")


@pytest.fixture(scope="module")
def mist_c3d():
    return _empty_model(MIST, "c3d")


def assert_landed(model, checkpoint, pairs, prefix=""):
    """pairs: checkpoint key -> our key; each model tensor must hold exactly that checkpoint
    tensor's marker."""
    state = model.state_dict()
    for ckpt_key, ours in pairs.items():
        target = state[ours[len(prefix) :]]
        assert torch.equal(target, checkpoint[ckpt_key].to(target.dtype).expand_as(target)), (
            f"{ckpt_key} -> {ours}"
        )


@pytest.mark.parametrize(
    "name,fmt",
    [
        ("hassony2_I3D_rgb_400", "hassony2_i3d"),
        ("piergiaj_InceptionI3d_400_rgb", "piergiaj_i3d"),
        ("DavideA_C3D", "davidea_c3d"),
        ("official_I3D_SGA_STD", "official_mist"),
        ("official_C3D_SGA_STD", "official_mist"),
    ],
)
def test_detect_format(name, fmt):
    assert detect_format(dummy(name)) == fmt


def test_hassony2_kinetics_loads_whole_backbone(mist_i3d, tmp_path):
    ckpt = dummy("hassony2_I3D_rgb_400", drop_counters=True)
    report = load_weights(mist_i3d, save(ckpt, tmp_path / "model_rgb.pth"))
    assert (report.format, report.backbone) == ("hassony2_i3d", "i3d")
    # pretrained_key_mapping.json: all 342 backbone entries load from identically named keys
    pairs = {k: "backbone." + k for k in ckpt if not k.startswith("conv3d_0c_1x1")}
    assert sorted(report.loaded) == sorted(pairs.values()) and len(pairs) == 342 - 57
    assert report.ignored == ["conv3d_0c_1x1.conv3d.weight", "conv3d_0c_1x1.conv3d.bias"]
    assert {k for k in report.left_at_init if not k.endswith("num_batches_tracked")} == set(
        OFFICIAL_HEADS.values()
    )
    assert_landed(mist_i3d, ckpt, pairs)


def test_piergiaj_layout_maps_by_documented_pairing(mist_i3d, tmp_path):
    ckpt = dummy("piergiaj_InceptionI3d_400_rgb")
    report = load_weights(mist_i3d, save(ckpt, tmp_path / "rgb_imagenet.pt"))
    assert report.format == "piergiaj_i3d" and report.ignored == [
        "logits.conv3d.weight",
        "logits.conv3d.bias",
    ]
    pairs = {pier: "backbone." + official for official, pier in PIERGIAJ_PAIRS}
    assert len(pairs) == 342 and sorted(report.loaded) == sorted(pairs.values())
    assert_landed(mist_i3d, ckpt, pairs)


def test_davidea_c3d_loads_conv1_conv2_too(mist_c3d, tmp_path):
    ckpt = dummy("DavideA_C3D")
    report = load_weights(mist_c3d, save(ckpt, tmp_path / "c3d.pickle"))
    assert (report.format, report.backbone) == ("davidea_c3d", "c3d")
    # conv3a..conv5b as the official loader pairs them; conv1/conv2 it skips
    # (tests/golden/README.md §4.7), we load
    pairs = {ckpt_key: "backbone." + ours for ours, ckpt_key in DAVIDEA_KEY_MAP if ckpt_key}
    pairs.update(
        {
            "conv1.weight": "backbone.conv1a.weight",
            "conv1.bias": "backbone.conv1a.bias",
            "conv2.weight": "backbone.conv2a.weight",
            "conv2.bias": "backbone.conv2a.bias",
        }
    )
    assert sorted(report.loaded) == sorted(pairs.values()) and len(report.loaded) == 16
    assert sorted(report.ignored) == sorted(k for k in ckpt if k.startswith("fc"))
    assert sorted(report.left_at_init) == sorted(OFFICIAL_HEADS.values())
    assert_landed(mist_c3d, ckpt, pairs)


@pytest.mark.parametrize(
    "backbone,name", [("i3d", "official_I3D_SGA_STD"), ("c3d", "official_C3D_SGA_STD")]
)
def test_official_mist_checkpoint_with_module_prefix(backbone, name, mist_i3d, mist_c3d, tmp_path):
    model = mist_i3d if backbone == "i3d" else mist_c3d
    ckpt = dummy(name)
    # the released files: {'model': state_dict} saved from DataParallel (docs/REFERENCE.md §8,
    # #5/#6)
    path = save(
        {"model": OrderedDict(("module." + k, v) for k, v in ckpt.items())}, tmp_path / "SHT.pth"
    )
    report = load_weights(model, path)
    assert report.format == "official_mist" and report.left_at_init == [] and report.ignored == []
    pairs = {k: OFFICIAL_HEADS.get(k, k) for k in ckpt}
    assert sorted(report.loaded) == sorted(pairs.values())
    assert_landed(model, ckpt, pairs)
    # the inverse mapping restores the official names in the official order (C3D: Regressor before
    # SGA)
    converted, _ = convert_state_dict(ckpt, backbone)
    assert list(to_official_state_dict(converted, backbone)) == list(ckpt)


def test_our_training_checkpoint_round_trip(tmp_path):
    source = MIST("c3d", width=0.25, expand_k=4)
    path = save(
        {
            "model": source.state_dict(),
            "optimizer": {"state": {}, "param_groups": []},
            "epoch": 3,
            "cfg": "MODEL:\n  BACKBONE: c3d\n",
        },
        tmp_path / "last.pth",
    )
    target = MIST("c3d", width=0.25, expand_k=4)
    report = load_weights(target, path)
    assert report.format == "mist" and report.left_at_init == []
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_module_prefix_stripped_from_our_layout():
    sd = unwrap_checkpoint(
        {"module.backbone.conv1a.weight": torch.zeros(1), "module.module.head.bias": torch.zeros(2)}
    )
    assert list(sd) == ["backbone.conv1a.weight", "head.bias"]


def test_bare_backbone_targets(tmp_path):
    i3d, c3d = _empty_model(I3D), _empty_model(C3D)
    official = dummy("official_I3D_SGA_STD")
    report = load_weights(i3d, save({"model": official}, tmp_path / "mist.pth"))
    assert sorted(report.ignored) == sorted(OFFICIAL_HEADS) and report.left_at_init == []
    assert_landed(
        i3d, official, {k: k for k in official if k.startswith("backbone.")}, prefix="backbone."
    )
    davidea = dummy("DavideA_C3D")
    load_weights(c3d, save(davidea, tmp_path / "c3d.pickle"))
    assert torch.equal(c3d.conv1a.weight, davidea["conv1.weight"])
    assert torch.equal(c3d.conv5b.bias, davidea["conv5b.bias"])


@pytest.mark.parametrize(
    "into,name,found",
    [
        ("i3d", "DavideA_C3D", "C3D"),
        ("c3d", "hassony2_I3D_rgb_400", "I3D"),
        ("c3d", "official_I3D_SGA_STD", "I3D"),
    ],
)
def test_wrong_backbone_is_an_error(into, name, found, mist_i3d, mist_c3d, tmp_path):
    path = save(dummy(name), tmp_path / "weights.pth")
    with pytest.raises(
        CheckpointError, match=rf"weights\.pth.*holds {found} weights.*backbone is {into.upper()}"
    ):
        load_weights(mist_i3d if into == "i3d" else mist_c3d, path)


def test_shape_mismatch_names_file_and_key(mist_i3d, tmp_path):
    ckpt = dummy("hassony2_I3D_rgb_400")
    ckpt["mixed_4f.branch_1.1.conv3d.weight"] = torch.zeros(320, 160, 3, 3, 1)
    path = save(ckpt, tmp_path / "bad.pth")
    first = mist_i3d.backbone.conv3d_1a_7x7.conv3d.weight  # comes before the bad key in the file
    with torch.no_grad():
        first.fill_(-7.0)
    with pytest.raises(
        CheckpointError,
        match=r"bad\.pth: 'mixed_4f\.branch_1\.1\.conv3d\.weight' has shape "
        r"\(320, 160, 3, 3, 1\).*\(320, 160, 3, 3, 3\)",
    ):
        load_weights(mist_i3d, path)
    # nothing is copied before every check has passed
    assert (first == -7.0).all()


def test_unused_backbone_key_is_an_error(mist_i3d, mist_c3d, tmp_path):
    ckpt = dummy("hassony2_I3D_rgb_400")
    ckpt["mixed_4f.branch_4.conv3d.weight"] = torch.zeros(1)
    with pytest.raises(
        CheckpointError, match=r"extra\.pth: checkpoint key 'mixed_4f\.branch_4\.conv3d\.weight'"
    ):
        load_weights(mist_i3d, save(ckpt, tmp_path / "extra.pth"))
    c3d = dummy("DavideA_C3D")
    c3d["conv6a.weight"] = torch.zeros(1)
    with pytest.raises(
        CheckpointError, match=r"'conv6a\.weight' \(ours 'backbone\.conv6a\.weight'\) has no place"
    ):
        load_weights(mist_c3d, save(c3d, tmp_path / "c3d_extra.pth"))


def test_missing_backbone_tensor_is_an_error(mist_c3d, tmp_path):
    ckpt = dummy("DavideA_C3D")
    del ckpt["conv4b.bias"]
    with pytest.raises(
        CheckpointError, match=r"lacks 1 backbone tensors \(backbone\.conv4b\.bias\)"
    ):
        load_weights(mist_c3d, save(ckpt, tmp_path / "short.pth"))


def test_unknown_layout_and_pickled_code_are_refused(mist_i3d, tmp_path):
    with pytest.raises(CheckpointError, match="unrecognised checkpoint layout"):
        load_weights(
            mist_i3d, save({"encoder.layer1.weight": torch.zeros(1)}, tmp_path / "other.pth")
        )
    with pytest.raises(
        CheckpointError, match=r"cannot read .*code\.pth: it holds a Python object \(pathlib"
    ) as err:
        load_weights(mist_i3d, save({"model": Path("x")}, tmp_path / "code.pth"))
    # torch's unsafe advice dropped
    assert "weights_only" not in str(err.value) and "False" not in str(err.value)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes((tmp_path / "code.pth").read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"truncated\.pth: not a readable PyTorch checkpoint"):
        load_weights(mist_i3d, truncated)
    with pytest.raises(CheckpointError, match="expected a state dict"):
        convert_state_dict({"epoch": 3}, "i3d")


def test_convert_weights_tool_round_trip(mist_c3d, tmp_path, capsys):
    official = dummy("official_C3D_SGA_STD")
    src = save(
        {"model": OrderedDict(("module." + k, v) for k, v in official.items())}, tmp_path / "in.pth"
    )
    out = tmp_path / "out" / "mist_c3d.pth"
    run_tool("convert_weights", [str(src), str(out), "--backbone", "c3d"])
    assert "official_mist" in capsys.readouterr().out
    converted = torch.load(out, map_location="cpu", weights_only=True)
    assert list(converted) == list(mist_c3d.state_dict())  # our names, our order
    restored = to_official_state_dict(converted, "c3d")
    assert list(restored) == list(official) and all(
        torch.equal(restored[k], official[k]) for k in official
    )
    assert load_weights(mist_c3d, out).format == "mist"
    with pytest.raises(UserError, match="exists; pass --force"):
        run_tool("convert_weights", [str(src), str(out)])
    run_tool(
        "convert_weights",
        [str(save(dummy("DavideA_C3D"), tmp_path / "c3d.pickle")), str(out), "--force"],
    )
    backbone_keys = [f"backbone.{k}" for k in _empty_model(C3D).state_dict()]
    assert list(torch.load(out, weights_only=True)) == backbone_keys
    with pytest.raises(UserError, match="holds C3D weights"):
        run_tool(
            "convert_weights",
            [str(tmp_path / "c3d.pickle"), str(tmp_path / "x.pth"), "--backbone", "i3d"],
        )
    assert not (tmp_path / "x.pth").exists()
