"""--encoder i3d_r50: the network and the preprocessing against the reference code's golden vectors
(tests/golden/README.md §5), the strict weight loader, and an extraction stage 1 reads."""

import hashlib
import json

import numpy as np
import pytest
import torch

from datasets.features import open_features
from datasets.rtfm_transform import RTFMTransform, crop_offsets, normalise_rtfm
from engine.encoders import build_encoder
from models.i3d_r50 import I3DRes50Features, check_state_dict, load_i3d_r50
from models.weights import CheckpointError
from tests.golden_weights import GOLDEN, golden
from tests.i3d_r50_fixtures import clip_input, noise_frames, reference_keys_shapes, rule_state_dict
from utils import cli
from utils.config import load_cfg
from utils.video import read_video_frames
from run_tool import run_tool, tool_main

REAL = GOLDEN.parent / "data" / "videos" / "Normal_Videos020_x264_head100.mp4"

# 32x40 frames, 32x32 crops: layer4 1x1 (stage 1 reads any size)
TINY = ["DATA.NUM_WORKERS", "0", "TEST.BATCH_SIZE", "4", "DATA.TEST_SIZE", "[32, 40, 32]"]
DIGESTS = json.loads((GOLDEN / "i3d_r50.json").read_text())


@pytest.fixture(scope="module")
def ref():
    return golden("i3d_r50")


@pytest.fixture(scope="module")
def model():
    net = I3DRes50Features().eval()
    net.load_state_dict(rule_state_dict())
    return net


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """The seeded weights in the published file's layout: no num_batches_tracked counters."""
    path = tmp_path_factory.mktemp("i3d_r50") / "i3d_r50_kinetics.pth"
    torch.save(rule_state_dict(counters=False), path)
    return path


def sha256(array):
    return hashlib.sha256(np.ascontiguousarray(array).astype("<f4").tobytes()).hexdigest()


def assert_close(ours, ref, name):
    """max|ours - ref| <= 1e-5 * max(1, max|ref|) against the reference in float64 (README §3's
    rule; the float32 error is ~2e-6, another input seed moves the features by 0.19)."""
    err, limit = np.abs(ours.double().numpy() - ref).max(), 1e-5 * max(1.0, np.abs(ref).max())
    assert err <= limit, f"{name}: max|diff| {err:.3g} > {limit:.3g}"


def test_module_and_tensor_names_are_the_reference_state_dict():
    ours = [(k, tuple(v.shape)) for k, v in I3DRes50Features().state_dict().items()]
    assert ours == reference_keys_shapes()
    assert sum(p.numel() for p in I3DRes50Features().parameters()) == 28_043_472


@pytest.mark.parametrize("size", [64, 224])
def test_features_and_logits_equal_the_reference_forward(model, ref, size):
    with torch.no_grad():
        features = model(torch.from_numpy(clip_input(size, size)))
        assert_close(features, ref[f"features_{size}_f64"], f"features_{size}")
        assert_close(model.logits(features), ref[f"logits_{size}_f64"], f"logits_{size}")
        if size == 64:
            blocks = model.blocks(torch.from_numpy(clip_input(64, 64)))
            for name in ("layer1", "layer2", "layer3", "layer4"):
                mean_hw = blocks[name][0].mean(dim=(2, 3))
                assert_close(mean_hw, ref[f"block_{name}_64_mean_hw_f64"], name)
    assert features.shape == (1, 2048)


def test_normalise_is_the_reference_formula_for_every_uint8_value():
    values = np.arange(256)
    expected = (values.astype(np.float64) * 2 / 255 - 1).astype(np.float32)
    bgr = torch.from_numpy(np.repeat(values.astype(np.uint8), 3).reshape(1, 1, 256, 3))
    assert torch.equal(normalise_rtfm(bgr)[0, 0, 0], torch.from_numpy(expected))
    rgb = torch.tensor([[[[[10, 20, 30]]]]], dtype=torch.uint8)  # BGR in, RGB out
    assert torch.equal(normalise_rtfm(rgb).flatten(), torch.from_numpy(expected[[30, 20, 10]]))


def test_views_equal_the_reference_on_noise_frames(ref):
    transform = RTFMTransform(10)
    views = transform(noise_frames())
    assert views.shape == (10, 3, 16, 224, 224) and views.dtype == torch.float32
    np.testing.assert_array_equal(views[:, :, ::5, ::16, ::16], ref["noise_views_sample"])
    assert sha256(views) == DIGESTS["noise_views_sha256"]
    raw = transform.uint8()(noise_frames())
    assert raw.shape == (10, 16, 224, 224, 3) and raw.dtype == torch.uint8
    assert torch.equal(normalise_rtfm(raw), views)


def test_views_equal_the_reference_on_the_shipped_video(ref):
    frames = read_video_frames(REAL, 0, 16)
    assert hashlib.sha256(frames.tobytes()).hexdigest() == DIGESTS["real_frames_sha256"], (
        "OpenCV decodes tests/data's video differently from when the vectors were made"
    )
    transform = RTFMTransform(10)
    resized = normalise_rtfm(torch.from_numpy(transform.resized(frames)))
    assert sha256(resized.permute(1, 2, 3, 0)) == DIGESTS["real_resized_sha256"]
    views = transform(frames)
    assert sha256(views) == DIGESTS["real_views_sha256"]
    np.testing.assert_allclose(views.double().sum(dim=(1, 2, 3, 4)), ref["real_view_sums_f64"])


def test_clips_views_and_layout_of_a_whole_video_are_the_reference_run(ref):
    """The reference's run() with a network returning each view's mean: 100 frames -> clips of
    frames 0-15, ..., 80-95 (the last 4 dropped), (n_clips, 10 views, 2048)."""
    frames, transform = read_video_frames(REAL, 0, 100), RTFMTransform(10)
    means = torch.stack(
        [transform(frames[16 * k : 16 * k + 16]).mean(dim=(1, 2, 3, 4)) for k in range(6)]
    )
    assert ref["layout_shape"].tolist() == [6, 10, 2048]
    np.testing.assert_allclose(means.numpy(), ref["layout_means"], rtol=0, atol=1e-6)


def test_five_crops_are_the_first_five_views_and_one_is_the_centre():
    frames = noise_frames()[:, :60, :80]
    size = ((32, 40), 24)
    ten = RTFMTransform(10, size)(frames)
    assert torch.equal(RTFMTransform(5, size)(frames), ten[:5])
    assert torch.equal(RTFMTransform(1, size)(frames), ten[2])
    assert crop_offsets(256, 340, 224) == [(0, 0), (0, 116), (16, 58), (32, 0), (32, 116)]
    # views 5..9: the five crops of the mirrored frame
    mirrored = RTFMTransform(10, size)(np.ascontiguousarray(frames[:, :, ::-1]))
    assert torch.equal(ten[5:], mirrored[:5])


def _refusal(state, match):
    with pytest.raises(CheckpointError, match=match):
        check_state_dict(state, I3DRes50Features(), "w.pth")


def test_files_that_do_not_fit_are_refused_naming_the_tensor(tmp_path):
    state = rule_state_dict(counters=False)
    _refusal(
        {k: v for k, v in state.items() if k != "layer3.2.bn2.running_var"},
        r"w.pth lacks 1 tensor\(s\) of I3D ResNet-50: layer3.2.bn2.running_var",
    )
    _refusal({**state, "head.weight": torch.zeros(2)}, r"has 1 tensor\(s\) .*: head.weight")
    wrong = {**state, "layer2.0.conv1.weight": torch.zeros(128, 256, 1, 1, 1)}
    _refusal(
        wrong, r"layer2.0.conv1.weight has shape \(128, 256, 1, 1, 1\), .* \(128, 256, 3, 1, 1\)"
    )
    _refusal({**state, "layer2.1.nl.theta.weight": torch.zeros(1)}, "non-local .* i3d_r50_kinetics")
    torch.save({"conv3d_1a_7x7.conv3d.weight": torch.zeros(1)}, tmp_path / "i3d.pth")
    with pytest.raises(CheckpointError, match="Inception I3D or a MIST model: use --encoder i3d"):
        load_i3d_r50(tmp_path / "i3d.pth")


def test_the_command_line_refuses_another_network_in_one_line(tmp_path, capsys):
    torch.save({"fc.weight": torch.zeros(400, 2048)}, tmp_path / "fc.pth")
    args = [str(REAL), str(tmp_path / "out"), "--encoder", "i3d_r50", "--weights"]
    assert cli.run(tool_main("extract_features"), args + [str(tmp_path / "fc.pth")] + TINY) == 2
    missing = "bn1.bias, bn1.running_mean, bn1.running_var ... and 263 more"
    assert f"lacks 266 tensor(s) of I3D ResNet-50: {missing}" in capsys.readouterr().err


def test_extracted_npy_is_the_model_on_the_views_and_stage1_reads_it(weights, model, tmp_path):
    out = tmp_path / "feats"
    args = [str(REAL), str(out), "--encoder", "i3d_r50", "--weights", str(weights)]
    report = run_tool(
        "extract_features", args + ["--format", "npy", "--crops", "10", "--no-progress"] + TINY
    )
    assert report["dim"] == 2048 and report["clips"] == 6
    name = "Normal_Videos020_x264_head100"
    assert (out / "features.list").read_text() == f"{name}_i3d.npy\n"
    feats = np.load(out / f"{name}_i3d.npy")
    assert feats.shape == (6, 10, 2048) and feats.dtype == np.float32
    frames, transform = read_video_frames(REAL, 0, 96), RTFMTransform(10, ((32, 40), 32))
    views = torch.stack([transform(frames[16 * k : 16 * k + 16]) for k in range(6)])
    with torch.no_grad():
        # the video's own batches of TEST.BATCH_SIZE clips: 0-3, then 4-5
        expected = torch.cat([model(views[:4].flatten(0, 1)), model(views[4:].flatten(0, 1))])
    np.testing.assert_array_equal(feats, expected.view(6, 10, 2048).numpy())
    store = open_features(out / "features.list", [name], dim=2048)
    np.testing.assert_allclose(store.get(name), feats.mean(axis=1), rtol=1e-6)
    encoder = build_encoder("i3d_r50", weights, load_cfg(None, TINY), crops=5)
    assert (encoder.name, encoder.dim, encoder.transform.crops) == ("i3d", 2048, 5)
