"""CLIP frame features (models/clip_features.py, --encoder clip_*): the preprocessing and features
equal open_clip's own on the same frames, the extraction writes clip and per-frame features (h5,
npy, resumed), stage 1 trains on them, mismatched or unsafe weight files are refused."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

open_clip = pytest.importorskip("open_clip")
from open_clip.transform import PreprocessCfg, image_transform_v2  # noqa: E402
from safetensors.torch import save_file  # noqa: E402  (comes with open_clip)

from datasets.frames import open_frames  # noqa: E402
from engine import encoders  # noqa: E402
from engine import extract as ef  # noqa: E402
from models.clip_features import (  # noqa: E402
    ClipTransform,
    check_state_dict,
    load_clip_visual,
    normalise_clip,
    read_state_dict,
)
from models.weights import CheckpointError  # noqa: E402
from tests.stage1_fixtures import train_on_demo_features  # noqa: E402
from tests.stage2_fixtures import make_tiny_videos  # noqa: E402
from utils.config import load_cfg  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.video import read_video_frames  # noqa: E402
from run_tool import run_tool  # noqa: E402

REAL = Path(__file__).parent / "data" / "videos" / "Normal_Videos020_x264_head100.mp4"
TINY = "mist-test-tiny-clip"  # a 2-layer ViT of width 64 on 32x32 images (patch 8)
TINY_CFG = {
    "embed_dim": 16,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}
OPTS = ["DATA.NUM_WORKERS", "0", "TEST.BATCH_SIZE", "4"]
W = ["MODEL.WIDTH", "0.0625"]  # the tiny I3D


def open_clip_preprocess(size):
    """open_clip's evaluation transform as it builds it for the OpenAI ViT-B/16 weights (the
    'openai' tag's preprocessing config), at `size`."""
    tag = open_clip.get_pretrained_cfg("ViT-B-16", "openai")
    keys = ("mean", "std", "interpolation", "resize_mode")
    cfg = PreprocessCfg(size=size, **{k: tag[k] for k in keys})
    return image_transform_v2(cfg, is_train=False)


def pil_frames(frames):
    """uint8 BGR (T, H, W, 3) -> RGB PIL images, as an image loader gives them to open_clip."""
    return [Image.fromarray(np.ascontiguousarray(f[..., ::-1])) for f in frames]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny architecture registered with open_clip, its random weights as .pt and .safetensors
    and the model itself."""
    root = tmp_path_factory.mktemp("clip")
    (root / f"{TINY}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(root / f"{TINY}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY, pretrained=None).eval()
    state = model.state_dict()
    torch.save(state, root / "tiny.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, root / "tiny.safetensors")
    return {"model": model, "pt": root / "tiny.pt", "st": root / "tiny.safetensors", "root": root}


@pytest.fixture
def clip_tiny(tiny, monkeypatch):
    """--encoder clip_tiny: the tiny architecture as the registry's CLIP entries build theirs."""
    monkeypatch.setitem(encoders.ENCODERS, "clip_tiny", encoders.clip_encoder(TINY, "clip_tiny"))
    return tiny


def test_preprocessing_equals_open_clips_own_bit_for_bit():
    """The real video's 320x240 frames at 224 (short side 240 -> 224: 298x224, centre 224) and at
    32: the float values of open_clip's transform exactly, through the float and the uint8 paths."""
    frames = read_video_frames(REAL, 0, 16)
    for size in (224, 32):
        theirs = torch.stack([open_clip_preprocess(size)(im) for im in pil_frames(frames)])
        ours = ClipTransform(size)(frames)
        assert ours.shape == (3, 16, size, size)
        assert torch.equal(ours.transpose(0, 1), theirs)
        raw = ClipTransform(size).uint8()(frames)
        assert raw.dtype == torch.uint8 and raw.shape == (16, size, size, 3)
        assert torch.equal(normalise_clip(raw), ours)


def test_clip_feature_is_the_mean_of_open_clips_frame_embeddings(tiny):
    """Two clips of the real video: the clip features are the mean of open_clip's encode_image of
    their 16 preprocessed frames (float32, tolerance 1e-6: one batch of 32 images either way), and
    frames=True returns those embeddings; .pt and .safetensors give the same model."""
    frames = read_video_frames(REAL, 0, 32)
    clips = torch.stack([ClipTransform(32)(frames[16 * k : 16 * k + 16]) for k in range(2)])
    images = torch.stack([open_clip_preprocess(32)(im) for im in pil_frames(frames)])
    with torch.no_grad():
        theirs = tiny["model"].encode_image(images).view(2, 16, -1)
        for weights in (tiny["pt"], tiny["st"]):
            module = load_clip_visual(TINY, weights)
            pooled, per_frame = module(clips, frames=True)
            torch.testing.assert_close(per_frame, theirs, rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(pooled, theirs.mean(dim=1), rtol=1e-6, atol=1e-6)
            assert torch.equal(module(clips), pooled) and module.dim == 16


def test_ten_crop_views_are_the_corners_centre_and_mirrors():
    frames = read_video_frames(REAL, 0, 16)
    views = ClipTransform(32, crops=10).uint8()(frames)  # short side 240 -> 32: 42x32
    resized = ClipTransform(32, crops=5).uint8()(frames)
    assert views.shape == (10, 16, 32, 32, 3) and torch.equal(views[:5], resized)
    assert torch.equal(views[5:], views[:5].flip(-2))  # mirrored left-right
    assert not torch.equal(views[0], views[1])  # left and right corners differ


def _run(source, out, *extra):
    args = [str(source), str(out), "--encoder", "clip_tiny", "--no-progress", *extra]
    return run_tool("extract_features", args + OPTS)


def _h5(path):
    with h5py.File(path, "r") as f:
        clips = {k: f[k][()] for k in f.keys() if k.endswith(".npy")}
        frames = {k: f["frames"][k][()] for k in f.get("frames", {})}
    return clips, frames


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_tiny_videos(tmp_path_factory.mktemp("videos"), n_train=2, n_test=1)


def test_extraction_writes_clip_and_frame_features_and_resumes(
    clip_tiny, videos, tmp_path, monkeypatch
):
    weights = ["--weights", str(clip_tiny["pt"]), "--frame-features"]
    report = _run(videos["frames"], tmp_path / "full.h5", *weights)
    clips, frames = _h5(tmp_path / "full.h5")
    assert report["dim"] == 16 and len(clips) == len(frames) == 6 and set(clips) == set(frames)
    for key, feats in clips.items():
        # frames of clip k are rows 16k..16k+15; the clip feature is their mean
        assert frames[key].shape == (16 * len(feats), 16)
        np.testing.assert_allclose(feats, frames[key].reshape(-1, 16, 16).mean(1), atol=1e-6)
    # the encoder on the transformed clips, batched as the video's clips 0-3, 4-...
    module = load_clip_visual(TINY, clip_tiny["pt"])
    video = open_frames(videos["frames"]).read_segments("tr_0001", 0, len(clips["tr_0001.npy"]))
    x = torch.stack(
        [ClipTransform(32)(video[16 * k : 16 * k + 16]) for k in range(len(video) // 16)]
    )
    with torch.no_grad():
        expected = torch.cat([module(x[i : i + 4]) for i in range(0, len(x), 4)]).numpy()
    np.testing.assert_allclose(clips["tr_0001.npy"], expected, rtol=1e-5, atol=1e-6)

    out, write, calls = tmp_path / "resumed.h5", ef.H5Writer.write, []

    def interrupt_on_the_third(self, name, features, frames=None):
        calls.append(name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        write(self, name, features, frames)

    monkeypatch.setattr(ef.H5Writer, "write", interrupt_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        _run(videos["frames"], out, *weights)
    monkeypatch.setattr(ef.H5Writer, "write", write)
    with h5py.File(out, "a") as f:  # a kill between a video's two commits: frames, no clips
        f["frames"].create_dataset(f"{calls[2]}.npy", data=np.zeros((1, 16), np.float32))
        f["frames"].create_dataset("te_0000.npy.partial", data=np.zeros((1, 16), np.float32))
    assert sorted(_h5(out)[0]) == sorted(f"{n}.npy" for n in calls[:2])
    report = _run(videos["frames"], out, *weights)
    assert (report["videos_written"], report["videos_already_done"]) == (4, 2)
    resumed = _h5(out)
    for ref, got in zip(_h5(tmp_path / "full.h5"), resumed):
        assert sorted(ref) == sorted(got)
        assert all(ref[k].tobytes() == got[k].tobytes() for k in ref)
    with pytest.raises(UserError, match=r"other settings \(frames: True -> None\).*--force"):
        _run(videos["frames"], out, "--weights", str(clip_tiny["pt"]))


def test_npy_folder_with_crops_and_frame_files(clip_tiny, videos, tmp_path):
    out = tmp_path / "npy"
    _run(videos["frames"], out, "--weights", str(clip_tiny["st"]), "--format", "npy")
    _run(videos["frames"], tmp_path / "npy5", "--weights", str(clip_tiny["st"]), "--format", "npy",
         "--crops", "5", "--frame-features")  # fmt: skip
    listed = (out / "features.list").read_text().split()
    assert listed == sorted(f"{n}_clip_tiny.npy" for n in open_frames(videos["frames"]).names)
    assert not list(out.glob("*_frames.npy"))  # only when asked
    five = np.load(tmp_path / "npy5" / "te_0001_clip_tiny.npy")
    frames = np.load(tmp_path / "npy5" / "te_0001_clip_tiny_frames.npy")
    assert five.shape[1:] == (5, 16) and frames.shape == (16 * len(five), 5, 16)
    np.testing.assert_allclose(five, frames.reshape(len(five), 16, 5, 16).mean(1), atol=1e-6)
    # view 4 (the centre) of 5 crops at a short side of 32 is the single-crop clip
    np.testing.assert_allclose(five[:, 4], np.load(out / "te_0001_clip_tiny.npy"), atol=1e-6)
    assert (tmp_path / "npy5" / "features.list").read_text().split() == listed


def test_stage1_trains_on_clip_features(clip_tiny, tmp_path):
    demo_videos = pytest.importorskip("datasets.demo_videos")
    demo = demo_videos.make_demo_videos(tmp_path / "demo", 2, 2, 1, 1)
    feats = tmp_path / "clip.h5"
    # the per-frame group in the h5 too: stage 1 reads the clip features beside it
    weights = ["--weights", str(clip_tiny["pt"]), "--frame-features"]
    report = _run(Path(demo["out_dir"]) / "videos", feats, *weights)
    results = train_on_demo_features(feats, demo, report["dim"], tmp_path / "stage1")
    with h5py.File(feats, "r") as f:
        test = Path(demo["test_split"]).read_text()
        n_test = sum(len(f[k]) for k in f.keys() if k[:-4] in test)
    assert report["dim"] == 16 and results["test"]["n_clips"] == n_test
    assert 0.0 <= results["test"]["auc"] <= 1.0
    assert (tmp_path / "stage1" / "pseudo_labels.npz").exists()


def test_torchrun_parts_are_merged_with_their_frame_features(tmp_path):
    """Rank part files holding 'frames/<video>.npy' (what each rank writes) -> the output has
    both arrays of every video, and the parts are gone."""
    out, config = tmp_path / "out.h5", {"encoder": "clip_tiny"}
    parts = tmp_path / "out.h5.parts"
    parts.mkdir()
    for rank in range(2):
        part = ef.H5Writer(parts / f"rank-{rank}-of-2.h5", config)
        part.write(
            f"v{rank}", np.full((2, 4), rank, np.float32), np.full((32, 4), rank, np.float32)
        )
    writer = ef.H5Writer(out, config)
    ef.merge_parts(writer, config)
    clips, frames = _h5(out)
    assert writer.finished == {"v0", "v1"} and not parts.exists()
    assert frames["v1.npy"].shape == (32, 4) and (frames["v1.npy"] == 1).all()
    assert sorted(clips) == sorted(frames) == ["v0.npy", "v1.npy"]


def test_mismatched_weight_files_are_refused_naming_the_tensor(tiny, tmp_path):
    state = torch.load(tiny["pt"], weights_only=True)
    expected = tiny["model"].state_dict()
    for edit, message in (
        (lambda s: s.pop("visual.proj"), r"lacks visual\.proj\b"),
        (lambda s: s.update(extra=torch.zeros(1)), "does not have: extra"),
        (
            lambda s: s.update({"visual.ln_post.weight": torch.zeros(65)}),
            r"other shapes: visual\.ln_post\.weight \(65,\) \(expected \(64,\)\)",
        ),
    ):
        bad = dict(state)
        edit(bad)
        torch.save(bad, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=f"bad.pt does not fit .*{message}"):
            load_clip_visual(TINY, tmp_path / "bad.pt")
    # a ViT-L/14 file for ViT-B/16 (shapes from open_clip's meta models, nothing allocated)
    with torch.device("meta"):
        b16 = open_clip.create_model("ViT-B-16-quickgelu", device="meta").state_dict()
        l14 = open_clip.create_model("ViT-L-14-quickgelu", device="meta").state_dict()
    with pytest.raises(CheckpointError) as err:
        check_state_dict(l14, b16, "ViT-L-14.bin", "ViT-B-16-quickgelu")
    assert "does not have: visual.transformer.resblocks.12.attn.in_proj_bias," in str(err.value)
    assert "other shapes: visual.class_embedding (1024,) (expected (768,))" in str(err.value)
    assert "lacks" not in str(err.value) and str(err.value).endswith(
        "The file holds ViT-L/14 (visual.conv1.weight (1024, 3, 14, 14)): choose its encoder"
    )
    timm = {"patch_embed.proj.weight": torch.zeros(1), "blocks.0.norm1.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="keys are timm's .*open_clip_model.safetensors"):
        check_state_dict(timm, expected, "model.safetensors", TINY)


def test_files_that_would_run_code_are_refused_without_running_it(tmp_path):
    scripted = torch.jit.script(torch.nn.Linear(2, 3))
    scripted.save(str(tmp_path / "ViT-B-16.pt"))
    with pytest.raises(CheckpointError, match="TorchScript archive.*would run its code"):
        read_state_dict(tmp_path / "ViT-B-16.pt")
    torch.save(torch.nn.Linear(2, 3), tmp_path / "module.pt")  # a pickled object, not a dict
    with pytest.raises(CheckpointError, match="cannot be read as a state dict without running"):
        read_state_dict(tmp_path / "module.pt")
    torch.save({"state_dict": {"module.a": torch.ones(1)}, "epoch": 3}, tmp_path / "ckpt.pt")
    assert list(read_state_dict(tmp_path / "ckpt.pt")) == ["a"]  # open_clip training checkpoint


def test_frame_features_of_a_whole_clip_encoder_are_refused(tmp_path, videos):
    from models.i3d import I3D

    torch.save(I3D(0.0625).state_dict(), tmp_path / "i3d.pth")
    args = [str(videos["frames"]), str(tmp_path / "x.h5"), "--encoder", "i3d", "--weights"]
    with pytest.raises(UserError, match="--frame-features: the i3d encoder encodes whole clips"):
        run_tool("extract_features", args + [str(tmp_path / "i3d.pth"), "--frame-features"] + W)


def test_the_real_vit_b16_gives_512_d_features(tmp_path):
    """open_clip's ViT-B-16 (QuickGELU) with random weights, through the registry's builder: one
    224x224 frame -> 512-d, equal to the tower applied to it."""
    with torch.device("meta"):
        shapes = open_clip.create_model("ViT-B-16-quickgelu", device="meta").state_dict()
    gen = torch.Generator().manual_seed(0)
    save_file(
        {k: 0.02 * torch.randn(v.shape, generator=gen) for k, v in shapes.items()},
        tmp_path / "open_clip_model.safetensors",
    )
    cfg = load_cfg(None, OPTS)
    encoder = encoders.build_encoder("clip_vit_b16", tmp_path / "open_clip_model.safetensors", cfg)
    assert (encoder.dim, encoder.name, encoder.frames) == (512, "clip_vit_b16", True)
    frame = read_video_frames(REAL, 0, 1)
    clip = encoder.transform(frame)  # a 1-frame clip keeps the test fast
    assert clip.shape == (3, 1, 224, 224)
    with torch.no_grad():
        feats = encoder.module(clip[None])
        direct = encoder.module.visual(clip.transpose(0, 1))
    assert feats.shape == (1, 512) and torch.equal(feats, direct)
