"""tools/extract_features.py: exact pooling of each encoder, the real video, resuming, and stage 1
on the output (torchrun sharding: tests/test_extract_sharded.py)."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from datasets.features import open_features
from datasets.frames import open_frames
from datasets.transforms import TestTransform
from models.c3d import C3D
from models.c3d_fc6 import C3DFc6, load_c3d_fc6
from models.i3d import I3D
from models.mist import MIST
from models.weights import CheckpointError
from tests.stage1_fixtures import train_on_demo_features
from tests.stage2_fixtures import make_tiny_videos
from engine import extract as ef
from engine.encoders import PooledI3D, build_encoder
from utils import cli
from utils.config import load_cfg
from utils.errors import UserError
from utils.video import read_video_frames
from run_tool import run_tool, tool_main

REAL = Path(__file__).parent / "data" / "videos" / "Normal_Videos020_x264_head100.mp4"
W = 0.0625  # channel width of the tiny encoders
C3D_SIZE = ["DATA.TEST_SIZE", "[32, 40, 32]"]  # 32x32 crops: conv5b 2x2, pool5 (padded) 2x2
TINY = [
    "MODEL.WIDTH",
    str(W),
    "MODEL.EXPAND_K",
    "2",
    "DATA.NUM_WORKERS",
    "0",
    "TEST.BATCH_SIZE",
    "4",
]


def c3d_checkpoint(path, fc6_out=16, seed=0):
    """A width-reduced C3D in DavideA's c3d.pickle layout (conv1, conv2, conv3a, ..., fc6-fc8)."""
    torch.manual_seed(seed)
    state = {}
    for key, value in C3D(W).state_dict().items():
        layer, rest = key.split(".", 1)
        state[f"{ {'conv1a': 'conv1', 'conv2a': 'conv2'}.get(layer, layer) }.{rest}"] = value
    channels = C3D(W).out_channels
    state.update(
        {
            "fc6.weight": 0.1 * torch.randn(fc6_out, channels * 4),
            "fc6.bias": 0.1 * torch.randn(fc6_out),
            "fc7.weight": torch.randn(8, fc6_out),
            "fc7.bias": torch.zeros(8),
            "fc8.weight": torch.randn(5, 8),
            "fc8.bias": torch.zeros(5),
        }
    )
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(1)
    torch.save(I3D(W).state_dict(), root / "i3d_kinetics.pth")  # hassony2 layout: a bare backbone
    torch.save({"model": MIST("c3d", expand_k=2, width=W).state_dict()}, root / "mist_c3d.pth")
    return {
        "i3d": root / "i3d_kinetics.pth",
        "c3d": c3d_checkpoint(root / "c3d.pickle"),
        "mist": root / "mist_c3d.pth",
    }


def pool5_by_hand(conv5b):
    """(B, C, 2, h, w) -> (B, C * ceil((h+1)/2) * ...): window (i, j) = max over time, rows
    2i-1..2i, columns 2j-1..2j (pool5's padding of 1 on each side of H and W), flattened
    channel-major."""
    b, c, _, h, w = conv5b.shape
    out = conv5b.new_empty(b, c, (h + 2) // 2, (w + 2) // 2)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            window = conv5b[:, :, :, max(2 * i - 1, 0) : 2 * i + 1, max(2 * j - 1, 0) : 2 * j + 1]
            out[:, :, i, j] = window.amax(dim=(2, 3, 4))
    return out.flatten(1)


def test_c3d_fc6_is_pool5_then_fc6_relu():
    torch.manual_seed(0)
    model = C3DFc6(width=W, fc6_in=32 * 16, fc6_out=24).eval()
    conv5b = torch.randn(2, 32, 2, 7, 7)
    # 7x7 -> 4x4, 8192 at width 1
    assert torch.equal(model.pool5(conv5b).flatten(1), pool5_by_hand(conv5b))
    clips = torch.randn(2, 3, 16, 112, 112)
    with torch.no_grad():
        feats = model(clips)
        by_hand = torch.relu(model.fc6(pool5_by_hand(model.backbone(clips)[0])))
    assert feats.shape == (2, 24) and torch.equal(feats, by_hand) and (feats >= 0).all()
    with pytest.raises(
        ValueError, match="C3D fc6 takes 512 pool5 values per clip but this input gives 128"
    ):
        model(torch.randn(1, 3, 16, 32, 32))


def test_c3d_fc6_loads_the_davidea_layout(weights):
    model = load_c3d_fc6(weights["c3d"], W)
    state = torch.load(weights["c3d"], weights_only=True)
    # conv1 -> conv1a (§3.5)
    assert torch.equal(model.backbone.conv1a.weight, state["conv1.weight"])
    assert torch.equal(model.fc6.weight, state["fc6.weight"]) and model.fc6.out_features == 16
    with pytest.raises(CheckpointError, match="--encoder mist"):
        load_c3d_fc6(weights["mist"], W)


def test_i3d_and_mist_features_are_global_averages(weights):
    cfg = load_cfg(None, TINY)
    i3d = build_encoder("i3d", weights["i3d"], cfg).module
    mist_encoder = build_encoder(
        "mist", weights["mist"], load_cfg(None, TINY + ["MODEL.BACKBONE", "c3d"])
    )
    mist, backbone = mist_encoder.module, mist_encoder.name
    x = torch.randn(2, 3, 16, 32, 32)
    with torch.no_grad():
        # 1024 x W
        assert torch.equal(i3d(x), i3d.backbone(x)[0].mean(dim=(2, 3, 4))) and i3d.dim == 64
        out = mist.model(x)
        assert torch.equal(mist(x), out["feature_map"].mean(dim=(2, 3, 4)))
    assert (backbone, mist.dim) == ("c3d", 32)  # 512 x W: MIST-C3D ends at conv5b


def _run(source, out, encoder, weights, *extra, opts=()):
    return run_tool(
        "extract_features",
        [
            str(source),
            str(out),
            "--encoder",
            encoder,
            "--weights",
            str(weights),
            "--no-progress",
            *extra,
            *TINY,
            *opts,
        ],
    )


def _h5(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f.keys()}


def test_real_video_features_match_the_encoder_on_its_clips(weights, tmp_path):
    """The shipped 100-frame video: 6 whole clips (frames 0-95), each = the encoder on its
    test-transformed clip, bit for bit: uint8 clips normalised after the loader give the float
    transform's values, and the clips go through the encoder in the video's own batches of
    TEST.BATCH_SIZE (clips 0-3, then 4-5)."""
    report = _run(
        REAL, tmp_path / "i3d.h5", "i3d", weights["i3d"], opts=["DATA.TEST_SIZE", "[32, 40]"]
    )
    feats = _h5(tmp_path / "i3d.h5")["Normal_Videos020_x264_head100.npy"]
    assert feats.shape == (6, 64) and report["clips"] == 6 and report["dim"] == 64
    encoder = PooledI3D(I3D(W))
    encoder.backbone.load_state_dict(torch.load(weights["i3d"], weights_only=True))
    transform = TestTransform("i3d", "shanghaitech", size=((32, 40), 32))
    frames = read_video_frames(REAL, 0, 96)
    clips = torch.stack([transform(frames[16 * k : 16 * k + 16]) for k in range(6)])
    with torch.no_grad():
        expected = torch.cat([encoder.eval()(clips[:4]), encoder(clips[4:])]).numpy()
    np.testing.assert_array_equal(feats, expected)

    _run(REAL, tmp_path / "c3d10.h5", "c3d", weights["c3d"], "--crops", "10", opts=C3D_SIZE)
    ten = _h5(tmp_path / "c3d10.h5")["Normal_Videos020_x264_head100.npy"]
    assert ten.shape == (6, 10, 16) and (ten >= 0).all()  # fc6 after ReLU, one per view
    assert not np.allclose(ten[:, 0], ten[:, 5])  # view 5 is view 0 mirrored: other features


@pytest.fixture(scope="module")
def tiny_videos(tmp_path_factory):
    return make_tiny_videos(tmp_path_factory.mktemp("videos"), n_train=3, n_test=2)


def test_interrupted_run_leaves_only_finished_videos_and_resumes(
    weights, tiny_videos, tmp_path, monkeypatch, capsys
):
    full = tmp_path / "full.h5"
    _run(tiny_videos["frames"], full, "c3d", weights["c3d"], opts=C3D_SIZE)
    reference = _h5(full)
    assert len(reference) == 10 and all(v.shape[1] == 16 for v in reference.values())
    assert json.loads(h5py.File(full, "r").attrs["extract_config"])["encoder"] == "c3d"

    out, write = tmp_path / "resumed.h5", ef.H5Writer.write
    calls = []

    def interrupt_on_the_third(self, name, features):
        calls.append(name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        write(self, name, features)

    monkeypatch.setattr(ef.H5Writer, "write", interrupt_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_videos["frames"], out, "c3d", weights["c3d"], opts=C3D_SIZE)
    assert f"interrupted: the finished videos are in {out}" in capsys.readouterr().err
    monkeypatch.setattr(ef.H5Writer, "write", write)
    partial = _h5(out)
    # readable, finished videos only
    assert sorted(partial) == sorted(f"{n}.npy" for n in calls[:2])
    with h5py.File(out, "a") as f:  # what a hard kill mid-write would leave
        f.create_dataset("te_0000.npy.partial", data=np.zeros((1, 16), np.float32))
    report = _run(tiny_videos["frames"], out, "c3d", weights["c3d"], opts=C3D_SIZE)
    assert (report["videos_written"], report["videos_already_done"]) == (8, 2)
    resumed = _h5(out)
    assert sorted(resumed) == sorted(reference)
    for key in reference:  # each video's own batches: the same bytes whatever was done before
        assert resumed[key].tobytes() == reference[key].tobytes(), key
    with pytest.raises(UserError, match="other settings.*crops: 1 -> 5.*--force"):
        _run(tiny_videos["frames"], out, "c3d", weights["c3d"], "--crops", "5", opts=C3D_SIZE)
    args = [
        str(tiny_videos["frames"]),
        str(out),
        "--encoder",
        "c3d",
        "--weights",
        str(tmp_path / "nope.pth"),
    ]
    assert cli.run(tool_main("extract_features"), args + TINY) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("nope.pth' does not exist: pass the encoder's checkpoint file")
    )


def test_uint8_clips_give_the_float_paths_features_bit_for_bit(weights, tiny_videos, tmp_path):
    """C3D (the tiny model where a channels-last input takes other CPU kernels, other bits): every
    video's features equal the encoder on the float transform's clips, batched as the video's clips
    0-3, 4-7, ..."""
    _run(tiny_videos["frames"], tmp_path / "c3d.h5", "c3d", weights["c3d"], opts=C3D_SIZE)
    feats = _h5(tmp_path / "c3d.h5")
    encoder = build_encoder("c3d", weights["c3d"], load_cfg(None, TINY + C3D_SIZE)).module
    transform = TestTransform("c3d", "shanghaitech", size=((32, 40), 32))
    frames = open_frames(tiny_videos["frames"])
    for name in frames.names:
        n = frames.num_segments(name)
        video = frames.read_segments(name, 0, n)
        clips = [transform(video[16 * k : 16 * k + 16]) for k in range(n)]
        with torch.no_grad():
            expected = torch.cat(
                [encoder(torch.stack(clips[i : i + 4])) for i in range(0, len(clips), 4)]
            )
        assert feats[f"{name}.npy"].tobytes() == expected.numpy().tobytes(), name


def test_npy_folder_is_an_rtfm_list_stage1_reads(weights, tiny_videos, tmp_path):
    names = ["tr_0000", "tr_0001"]
    (tmp_path / "few.txt").write_text("".join(f"{n},{i % 2}\n" for i, n in enumerate(names)))
    report = _run(
        tiny_videos["frames"],
        tmp_path / "npy",
        "mist",
        weights["mist"],
        "--format",
        "npy",
        "--crops",
        "5",
        "--names",
        str(tmp_path / "few.txt"),
        opts=C3D_SIZE + ["MODEL.BACKBONE", "c3d"],
    )
    assert report["videos_written"] == 2 and report["dim"] == 32
    listed = (tmp_path / "npy" / "features.list").read_text().split()
    assert listed == ["tr_0000_c3d.npy", "tr_0001_c3d.npy"]
    # crops averaged (DATA.CROP -1)
    store = open_features(tmp_path / "npy" / "features.list", names, dim=32)
    raw = np.load(tmp_path / "npy" / "tr_0001_c3d.npy")
    np.testing.assert_allclose(store.get("tr_0001"), raw.mean(axis=1), rtol=1e-6)
    # the 5 views are the corners + centre of the 10-crop transform (no mirrors), each through the
    # encoder
    cfg = load_cfg(None, TINY + C3D_SIZE + ["MODEL.BACKBONE", "c3d"])
    encoder = build_encoder("mist", weights["mist"], cfg).module
    frames = open_frames(tiny_videos["frames"]).read_segments("tr_0001", 0, len(raw))
    ten = TestTransform("c3d", "shanghaitech", ten_crop=True, size=((32, 40), 32))
    views = torch.stack([ten(frames[16 * k : 16 * k + 16])[:5] for k in range(len(raw))])
    with torch.no_grad():
        expected = encoder(views.flatten(0, 1)).view(len(raw), 5, 32).numpy()
    np.testing.assert_allclose(raw, expected, rtol=1e-5, atol=1e-6)


def test_stage1_trains_on_features_extracted_from_the_demo_videos(weights, tmp_path):
    demo_videos = pytest.importorskip("datasets.demo_videos")

    demo = demo_videos.make_demo_videos(tmp_path / "demo", 2, 2, 1, 1)
    report = _run(
        Path(demo["out_dir"]) / "videos",
        tmp_path / "feats.h5",
        "c3d",
        weights["c3d"],
        opts=C3D_SIZE,
    )
    assert report["videos_written"] == 6
    results = train_on_demo_features(
        tmp_path / "feats.h5", demo, report["dim"], tmp_path / "stage1"
    )
    test_clips = sum(
        len(v)
        for k, v in _h5(tmp_path / "feats.h5").items()
        if k[:-4] in Path(demo["test_split"]).read_text()
    )
    assert results["test"]["n_clips"] == test_clips and 0.0 <= results["test"]["auc"] <= 1.0
    assert (tmp_path / "stage1" / "pseudo_labels.npz").exists()
