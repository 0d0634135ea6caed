"""torchvision's video models as MIST backbones (models/tv_video.py): torchvision's forward with SGA
off, the SGA on their maps, their published weight layout, its refusals, stage 2 and extraction."""

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from datasets.frames import open_frames
from datasets.transforms import TestTransform
from models.mist import MIST
from models.tv_video import TORCHVISION, torchvision_reference
from models.weights import CheckpointError, load_weights
from tests.stage2_fixtures import make_tiny_videos, tiny_stage2_opts
from utils.errors import InputError
from run_tool import run_tool

# the smallest square input each takes: s3d's AvgPool3d(2, 7, 7) needs 7x7 at the end, MViT's
# relative positions are built for 224 only
SIZES = {"r2plus1d_18": 32, "swin3d_t": 32, "s3d": 224, "mvit_v2_s": 224}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """name -> (torchvision's model with seeded random weights, its state dict saved as torchvision
    publishes it: every tensor, the classifier included)."""
    root, files = tmp_path_factory.mktemp("tv"), {}
    for i, name in enumerate(TORCHVISION):
        torch.manual_seed(i)
        ref = torchvision_reference(name)
        # non-trivial BatchNorm statistics, so that eval mode uses them
        for module in ref.modules():
            if isinstance(module, nn.BatchNorm3d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        torch.save(ref.state_dict(), root / f"{name}_seeded.pth")
        files[name] = (ref, root / f"{name}_seeded.pth")
    return files


def torchvision_head(ref, name):
    """torchvision's classifier as a Linear on its input (S3D's is a 1x1x1 Conv3d, averaged after:
    the same map)."""
    head = getattr(ref, TORCHVISION[name].classifier)
    head = head[-1] if isinstance(head, nn.Sequential) else head
    if isinstance(head, nn.Conv3d):
        linear = nn.Linear(head.in_channels, head.out_channels)
        linear.weight.data = head.weight.data.flatten(1)
        linear.bias.data = head.bias.data
        return linear
    return head


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_sga_off_with_torchvisions_head_is_torchvisions_forward(published, name):
    ref, path = published[name]
    model = MIST(name, use_sga=False)
    report = load_weights(model, path)
    assert report.format == "torchvision" and report.backbone == name
    assert all(k.startswith(TORCHVISION[name].classifier + ".") for k in report.ignored)
    model.head = torchvision_head(ref, name)
    torch.manual_seed(10)
    clips = torch.randn(1, 3, 16, SIZES[name], SIZES[name])
    with torch.no_grad():
        expected, out = ref(clips), model.eval()(clips)
    assert out["logits"].shape == (1, 400)
    torch.testing.assert_close(out["logits"], expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["r2plus1d_18", "swin3d_t"])
def test_sga_weights_the_last_map_and_pools_the_fourth_to_four_steps(published, name):
    model = MIST(name).eval()
    load_weights(model, published[name][1])
    clips = torch.randn(2, 3, 16, 64, 64)
    with torch.no_grad():
        out = model(clips)
        f5, f4, summary = model.backbone.encode(clips)
        attention, guided, _ = model.sga(f4)
    # r2plus1d_18: layer3 (256, 4, 8, 8), layer4 (512, 2, 4, 4); swin3d_t: stage 3 has 8 steps
    c4, c5, t5 = {"r2plus1d_18": (256, 512, 2), "swin3d_t": (384, 768, 8)}[name]
    hw4 = {"r2plus1d_18": 8, "swin3d_t": 4}[name]
    assert f4.shape == (2, c4, 4, hw4, hw4) and f5.shape == (2, c5, t5, hw4 // 2, hw4 // 2)
    assert out["attention"].shape == (2, 1, 1, hw4 // 2, hw4 // 2)
    torch.testing.assert_close(out["guided_logits"], guided, rtol=0, atol=0)
    torch.testing.assert_close(out["pooled"], summary + (attention * f5).mean(dim=(2, 3, 4)))
    # for an averaging backbone that is MIST's mean((1 + A) * F5)
    torch.testing.assert_close(out["pooled"], out["feature_map"].mean(dim=(2, 3, 4)))
    torch.testing.assert_close(out["logits"], model.head(out["pooled"]), rtol=0, atol=0)


def test_mvit_pools_the_class_token_and_refuses_other_sizes(published):
    model = MIST("mvit_v2_s").eval()
    with pytest.raises(InputError, match=r"mvit_v2_s takes \(16, 224, 224\) clips .* got"):
        model(torch.zeros(1, 3, 16, 112, 112))
    with pytest.raises(InputError, match="MODEL.WIDTH = 0.5: torchvision backbone 'swin3d_t'"):
        MIST("swin3d_t", width=0.5)


def test_a_config_they_cannot_take_is_refused_when_loaded():
    """Before a run folder exists (configs/defaults.py), naming the key and the fix."""
    from utils.config import ConfigError, load_cfg

    with pytest.raises(ConfigError, match=r"DATA.TRAIN_SIZE = \[32, 40, 32\] gives 32x32 clips"):
        load_cfg(None, ["MODEL.BACKBONE", "mvit_v2_s", "DATA.TRAIN_SIZE", "[32, 40, 32]"])
    with pytest.raises(ConfigError, match=r"DATA.TEST_SIZE = \[240, 320\] gives 240x240 clips"):
        load_cfg(None, ["MODEL.BACKBONE", "mvit_v2_s", "DATA.TEST_SIZE", "[240, 320]"])
    with pytest.raises(ConfigError, match="MODEL.WIDTH = 0.5: torchvision backbone 'r2plus1d_18'"):
        load_cfg(None, ["MODEL.BACKBONE", "r2plus1d_18", "MODEL.WIDTH", "0.5"])
    assert load_cfg(None, ["MODEL.BACKBONE", "mvit_v2_s"]).MODEL.BACKBONE == "mvit_v2_s"


def test_weight_files_that_do_not_fit_are_refused_naming_the_tensor(published, tmp_path):
    _, path = published["r2plus1d_18"]
    state = torch.load(path, weights_only=True)
    model = MIST("r2plus1d_18")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cases = {
        "shape": ({**state, "layer2.0.conv1.0.0.weight": torch.zeros(3, 3)}, "'layer2.0.conv1.0.0"),
        "missing": ({k: v for k, v in state.items() if k != "layer4.1.conv1.1.weight"}, "lacks 1"),
        "extra": ({**state, "layer5.0.weight": torch.zeros(1)}, "'layer5.0.weight'"),
    }
    for case, (broken, match) in cases.items():
        torch.save(broken, tmp_path / f"{case}.pth")
        with pytest.raises(CheckpointError, match=match):
            load_weights(model, tmp_path / f"{case}.pth")
    # a file of another network names both
    with pytest.raises(CheckpointError, match="holds SWIN3D_T weights but the model's backbone is"):
        load_weights(model, published["swin3d_t"][1])
    # nothing was copied by a refused load
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_file_named_as_torchvision_publishes_it_is_checked_against_its_sha256(
    published, tmp_path
):
    """torchvision's file names hold the sha256's first 8 hex digits, as our releases do."""
    import hashlib
    import shutil

    _, path = published["swin3d_t"]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    named = tmp_path / f"swin3d_t-{digest[:8]}.pth"
    shutil.copy(path, named)
    assert load_weights(MIST("swin3d_t"), named).format == "torchvision"
    # the published name on other bytes: a corrupt or changed download
    shutil.copy(path, tmp_path / TORCHVISION["swin3d_t"].weights_file)
    with pytest.raises(CheckpointError, match="its name says sha256 7615ae03"):
        load_weights(MIST("swin3d_t"), tmp_path / TORCHVISION["swin3d_t"].weights_file)


def test_stage2_starts_from_the_published_file_and_trains(published, tmp_path):
    """One frozen epoch: the backbone in the checkpoint is the file's, the SGA and head moved."""
    videos = make_tiny_videos(tmp_path / "videos", n_train=2, n_test=1)
    out = tmp_path / "run"
    path = published["r2plus1d_18"][1]
    opts = {"MODEL.WIDTH": 1.0, "MODEL.PRETRAINED": path, "STAGE2.FREEZE_EPOCHS": 1}
    opts["STAGE2.ACCUMULATE"] = 1  # 2 optimizer steps in the epoch
    results = run_tool(
        "train_stage2", tiny_stage2_opts(videos, out, "r2plus1d_18", epochs=1, **opts)
    )
    checkpoint = torch.load(out / "checkpoints" / "last.pth", weights_only=True)
    published_state = torch.load(path, weights_only=True)
    for key, value in published_state.items():
        if not key.startswith("fc."):
            assert torch.equal(checkpoint["model"][f"backbone.{key}"], value), key
    # Adam stepped exactly the SGA's 8 tensors and the head's 2, with non-zero gradients
    moments = [s["exp_avg"] for s in checkpoint["optimizer"]["state"].values()]
    assert len(moments) == 10 and all(m.abs().sum() > 0 for m in moments)
    assert 0.0 <= results["test"]["auc"] <= 1.0 and results["test"]["n_clips"] > 0


def test_extracted_features_are_torchvisions_classifier_input(published, tmp_path):
    videos = make_tiny_videos(tmp_path / "videos", n_train=1, n_test=1)
    ref, path = published["r2plus1d_18"]
    out = tmp_path / "feats.h5"
    (tmp_path / "one.txt").write_text("tr_0001,1\n")  # one video: 3-5 clips, batches of 2
    size = ["DATA.TEST_SIZE", "[32, 40, 32]", "TEST.BATCH_SIZE", "2", "DATA.NUM_WORKERS", "0"]
    args = [str(videos["frames"]), str(out), "--encoder", "r2plus1d_18", "--weights", str(path)]
    report = run_tool("extract_features", [*args, "--names", str(tmp_path / "one.txt"), *size])
    assert report["dim"] == 512 and report["videos_written"] == 1
    inputs = []
    ref.fc.register_forward_hook(lambda module, args, result: inputs.append(args[0]))
    transform = TestTransform("r2plus1d_18", "shanghaitech", size=((32, 40), 32))
    frames = open_frames(videos["frames"])
    n = frames.num_segments("tr_0001")
    video = frames.read_segments("tr_0001", 0, n)
    clips = torch.stack([transform(video[16 * k : 16 * k + 16]) for k in range(n)])
    with torch.no_grad():
        for i in range(0, n, 2):
            ref(clips[i : i + 2])
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["tr_0001.npy"][()], torch.cat(inputs).numpy(), atol=1e-5)


def test_the_test_transform_normalises_as_torchvisions_preset():
    """Frames already at the resize size: the centre crop and the normalisation equal torchvision's
    VideoClassification preset (its resize is then the identity)."""
    from torchvision.models.video import R2Plus1D_18_Weights, Swin3D_T_Weights

    rng = np.random.default_rng(0)
    for name, weights, hw in (
        ("r2plus1d_18", R2Plus1D_18_Weights.KINETICS400_V1, (128, 171)),
        ("swin3d_t", Swin3D_T_Weights.KINETICS400_V1, (256, 341)),
    ):
        frames = rng.integers(0, 256, (16, *hw, 3), dtype=np.uint8)
        ours = TestTransform(name, "shanghaitech")(frames)
        preset = weights.transforms()
        rgb = torch.from_numpy(np.ascontiguousarray(frames[..., ::-1])).permute(0, 3, 1, 2)
        if name == "swin3d_t":  # the preset resizes the short side: 256 of a 256 x 341 frame
            assert preset.resize_size == [256]
        torch.testing.assert_close(ours, preset(rgb), rtol=0, atol=2e-6)
