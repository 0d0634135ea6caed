"""tools/visualize.py and utils/gradcam.py: figures, the HTML report, and Grad-CAM colours (official
bug §6.27)."""

import json

import cv2
import numpy as np
import pytest
import torch

from datasets.build import load_splits
from datasets.build import test_ground_truth as ground_truth
from datasets.transforms import TestTransform
from models.build import build_model
from tests.stage1_fixtures import make_tiny_dataset, tiny_opts
from tests.stage2_fixtures import make_tiny_videos, tiny_stage2_opts
from engine import visualize
from utils.checkpoint import save_checkpoint
from utils.config import load_cfg
from utils.evaluation import evaluate
from utils.gradcam import denormalise, grad_cam, gradcam_panel, heatmap, overlay
from utils.errors import UserError
from run_tool import run_tool

COLOUR = (10, 60, 200)  # BGR: a red-dominant colour, so a channel swap is visible


def _fake_run(run, opts, videos, labels, rng):
    """A finished run folder without training: config.yaml, test scores that follow the GT,
    results.json."""
    run.mkdir(parents=True)
    cfg = load_cfg(None, opts)
    (run / "config.yaml").write_text(cfg.dump())
    scores = {}
    for v in videos:
        n_clips = len(labels[v.name]) // 16
        clip_gt = labels[v.name][: 16 * n_clips].reshape(n_clips, 16).mean(axis=1)
        scores[v.name] = np.clip(0.7 * clip_gt + rng.uniform(0, 0.4, n_clips), 0, 1)
    np.savez(run / "test_scores.npz", **scores)
    return cfg, scores


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("vis")
    tiny = make_tiny_dataset(root / "data", n_train=4, n_test=4)
    cfg = load_cfg(None, tiny_opts(tiny, root / "run")[2:])
    _, videos = load_splits(cfg, need_train=False)
    labels = ground_truth(cfg, videos)
    cfg, scores = _fake_run(
        root / "run", tiny_opts(tiny, root / "run")[2:], videos, labels, np.random.default_rng(0)
    )
    table = {
        "last": {"epoch": 6, "auc": 0.9, "ap": 0.8, "far": 0.01},
        "best": None,
        "best_val": None,
    }
    (root / "run" / "results.json").write_text(json.dumps({"test_by_checkpoint": table}))
    return root / "run", evaluate(scores, labels, videos)


def test_figures_and_report(stage1_run):
    run, metrics = stage1_run
    result = run_tool("visualize", [str(run), "--max-videos", "4"])
    out = run / "figures"
    # no categories: no per-class bars
    assert result["images"] == ["score_curves.png", "roc.png", "pr.png"]
    for name in result["images"]:
        image = cv2.imread(str(out / name))
        assert image is not None and image.shape[0] > 100 and (out / name).stat().st_size < 200_000
    page = (out / "report.html").read_text()
    assert f"{100 * metrics['auc']:.2f}%" in page and f"{100 * metrics['ap']:.2f}%" in page
    # AUC is the headline outside XD-Violence
    assert page.index("<td>AUC</td>") < page.index("<td>AP</td>")
    assert all(f"src='{name}'" in page for name in result["images"]) and "Checkpoint choice" in page


def test_helpers_choose_videos_and_runs(stage1_run):
    assert [tuple(map(int, r)) for r in visualize.anomalous_runs([0, 1, 1, 0, 1])] == [
        (1, 3),
        (4, 5),
    ]
    run, _ = stage1_run
    _, videos = load_splits(load_cfg(run / "config.yaml"), need_train=False)
    chosen = visualize.choose_videos(videos, [], 4)
    assert [v.label for v in chosen] == [1, 1, 1, 0]
    with pytest.raises(UserError, match="not in the test split"):
        visualize.choose_videos(videos, ["nope"], 4)
    with pytest.raises(UserError, match="VIDEO:SEGMENT"):
        visualize.parse_clip("te_0001")


@pytest.mark.parametrize("backbone", ["i3d", "c3d"])
def test_overlay_keeps_the_frame_colour(backbone, tmp_path):
    """I3D normalises RGB as (x-128)/128, C3D BGR minus the Sports-1M mean: both must come back as
    the frame's own BGR colour, and the written file must hold it in BGR order (the official code
    did neither)."""
    frames = np.empty((16, 32, 40, 3), np.uint8)
    frames[:] = COLOUR
    clip = TestTransform(backbone, "shanghaitech", size=((32, 40), 32))(frames)
    restored = denormalise(clip, backbone)
    assert restored.dtype == np.uint8 and (restored == np.array(COLOUR, np.uint8)).all()
    # JET(0) = BGR (128, 0, 0)
    blend = overlay(restored[8], heatmap(np.zeros((7, 7)), restored.shape[1:3]))
    cv2.imwrite(str(tmp_path / "o.png"), blend)
    # 0.3 * (128, 0, 0) + 0.5 * (10, 60, 200) = (43.4, 30, 100): red stays in the red channel
    assert (cv2.imread(str(tmp_path / "o.png")) == np.array([43, 30, 100], np.uint8)).all()


@pytest.fixture(scope="module")
def stage2_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("vis2")
    paths = make_tiny_videos(root / "data", n_train=2, n_test=2)
    opts = tiny_stage2_opts(paths, root / "run")[2:]
    cfg = load_cfg(None, opts)
    _, videos = load_splits(cfg, need_train=False)
    labels = ground_truth(cfg, videos)
    _fake_run(root / "run", opts, videos, labels, np.random.default_rng(1))
    torch.manual_seed(0)
    model = build_model(cfg)
    save_checkpoint(
        root / "run" / "checkpoints" / "last.pth",
        kind="stage2",
        model=model.state_dict(),
        cfg=cfg.dump(),
    )
    return root / "run", cfg, model


def test_gradcam_panel_from_a_stage2_checkpoint(stage2_run):
    run, cfg, _ = stage2_run
    result = run_tool("visualize", [str(run), "--gradcam", "te_0001:1", "--max-videos", "2"])
    panel = cv2.imread(str(run / "figures" / "gradcam_te_0001_1.png"))
    assert "gradcam_te_0001_1.png" in result["images"]
    assert panel.shape == (32, 3 * 32, 3)  # frame | Grad-CAM | attention, at the C3D test crop
    assert "gradcam_te_0001_1.png" in (run / "figures" / "report.html").read_text()


def test_grad_cam_values_and_the_model_without_sga(stage2_run):
    _, cfg, model = stage2_run
    clip = torch.from_numpy(
        np.random.default_rng(0).normal(0, 30, (3, 16, 32, 32)).astype(np.float32)
    )
    cam, attention, score = grad_cam(model, clip)
    assert cam.shape == attention.shape == (2, 2) and 0 <= score <= 1
    # the head is linear on the mean of F, so the Grad-CAM weights are its abnormal row: ReLU(sum_c
    # w_c F_c)
    with torch.no_grad():
        fmap = model.eval()(clip[None])["feature_map"][0]
    expected = (
        torch.relu(torch.einsum("c,cthw->thw", model.head.weight[1].detach(), fmap))
        .mean(dim=0)
        .numpy()
    )
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_allclose(cam, expected, atol=1e-3)
    no_sga_cfg = cfg.clone()
    no_sga_cfg.defrost()
    no_sga_cfg.MODEL.SGA = False
    panel, _ = gradcam_panel(build_model(no_sga_cfg), clip, "c3d")
    assert panel.shape == (32, 2 * 32, 3)  # frame | Grad-CAM: no attention map without SGA
