"""tools/test.py on videos: our stage-2 checkpoints, the authors' checkpoint layout, 10-crop, raw
videos."""

import json

import numpy as np
import pytest
import torch

from datasets.frames import open_frames
from models.weights import to_official_state_dict
from tests.stage2_fixtures import make_tiny_videos, tiny_stage2_opts
from run_tool import run_tool


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("s2")
    videos = make_tiny_videos(root / "data")
    results = run_tool("train_stage2", tiny_stage2_opts(videos, root / "run", epochs=2))
    return videos, root / "run", results


def _test(videos, out, checkpoint, **extra):
    return run_tool(
        "test", tiny_stage2_opts(videos, out, **extra) + ["TEST.CHECKPOINT", str(checkpoint)]
    )


def test_checkpoint_reproduces_the_training_evaluation(trained, tmp_path):
    videos, run, results = trained
    metrics = _test(videos, tmp_path, run / "checkpoints" / "last.pth")
    for key in ("auc", "ap", "far", "far_normal_videos", "n_frames", "n_clips"):
        assert metrics[key] == pytest.approx(results["test"][key], abs=1e-6), key
    saved = np.load(tmp_path / "test_last_scores.npz")
    frames = open_frames(videos["frames"])
    assert {k: len(v) for k, v in saved.items()} == {n: frames.num_segments(n) for n in saved.files}
    assert json.loads((tmp_path / "test_last.json").read_text())["ten_crop"] is False


def test_authors_checkpoint_layout_gives_the_same_scores(trained, tmp_path):
    videos, run, _ = trained
    ours = torch.load(run / "checkpoints" / "last.pth", weights_only=True)["model"]
    official = {f"module.{k}": v for k, v in to_official_state_dict(ours, "c3d").items()}
    torch.save({"model": official, "optimizer": {}}, tmp_path / "UCF_C3D_like.pth")
    a = _test(videos, tmp_path / "a", run / "checkpoints" / "last.pth")
    b = _test(
        videos,
        tmp_path / "b",
        tmp_path / "UCF_C3D_like.pth",
        **{"MODEL.WIDTH": 0.0625, "MODEL.EXPAND_K": 2},
    )
    assert a["auc"] == b["auc"] and a["far"] == b["far"]


@pytest.mark.parametrize("backbone", ["c3d", "i3d"])
def test_ten_crop_scores_every_clip_from_ten_views(trained, tmp_path, backbone):
    videos, _, _ = trained
    from models.build import build_model
    from utils.config import load_cfg

    cfg = load_cfg(None, tiny_stage2_opts(videos, tmp_path, backbone=backbone)[2:])
    torch.save({"model": build_model(cfg).state_dict()}, tmp_path / "init.pth")
    single = _test(videos, tmp_path / "one", tmp_path / "init.pth", **{"MODEL.BACKBONE": backbone})
    ten = _test(
        videos,
        tmp_path / "ten",
        tmp_path / "init.pth",
        **{"MODEL.BACKBONE": backbone, "TEST.TEN_CROP": True, "DATA.TEST_SIZE": "[40, 48, 32]"},
    )
    assert ten["n_clips"] == single["n_clips"]
    s1, s10 = (
        np.load(tmp_path / "one" / "test_init_scores.npz"),
        np.load(tmp_path / "ten" / "test_init_scores.npz"),
    )
    assert any(not np.array_equal(s1[k], s10[k]) for k in s1.files)  # really different views


def test_raw_videos_and_h5_give_the_same_evaluation(tmp_path):
    """A frames h5 made by make_h5 from the video files, or the files themselves
    (DATA.FRAMES_KIND)."""
    import cv2

    from engine.frames_h5 import make_h5

    videos = make_tiny_videos(tmp_path / "data", n_train=2, n_test=1)
    frames = open_frames(videos["frames"])
    paths = []
    for name in frames.names:  # write each video as MJPG .avi (near-lossless round trip)
        clip = frames.read_segments(name, 0, frames.num_segments(name))
        path = tmp_path / "vids" / f"{name}.avi"
        path.parent.mkdir(exist_ok=True)
        writer = cv2.VideoWriter(
            str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (clip.shape[2], clip.shape[1])
        )
        for frame in clip:
            writer.write(frame)
        writer.release()
        paths.append(path)
    make_h5(paths, tmp_path / "from_videos.h5", progress=False)
    from models.build import build_model
    from utils.config import load_cfg

    cfg = load_cfg(None, tiny_stage2_opts(videos, tmp_path)[2:])
    torch.save({"model": build_model(cfg).state_dict()}, tmp_path / "m.pth")
    opts = {"DATA.TEST_SPLIT": videos["train"].parent / "test.txt"}
    by_h5 = _test(
        videos,
        tmp_path / "h5",
        tmp_path / "m.pth",
        **{"DATA.FRAMES": tmp_path / "from_videos.h5"},
        **opts,
    )
    by_video = _test(
        videos,
        tmp_path / "v",
        tmp_path / "m.pth",
        **{"DATA.FRAMES": tmp_path / "vids", "DATA.FRAMES_KIND": "video"},
        **opts,
    )
    assert by_h5["n_clips"] == by_video["n_clips"]
    assert by_h5["auc"] == pytest.approx(by_video["auc"], abs=0.05)
