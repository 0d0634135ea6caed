"""engine.api: a checkpoint from Python -> frame scores and alarm intervals, equal to the tools'."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from configs.defaults import get_cfg_defaults
from engine.api import frame_scores_of, load
from models.mil_generator import MILGenerator
from tests.stage2_fixtures import tiny_mist_on_the_real_video
from utils.checkpoint import save_checkpoint
from utils.errors import InputError
from utils.video import read_video_frames

REAL = Path(__file__).parent / "data" / "videos" / "Normal_Videos020_x264_head100.mp4"


@pytest.fixture(scope="module")
def stage2(tmp_path_factory):
    """A tiny stage-2 checkpoint with its config, and tools/test.py's scores of the real video."""
    cfg = get_cfg_defaults()
    cfg.MODEL.BACKBONE, cfg.MODEL.WIDTH, cfg.MODEL.EXPAND_K = "c3d", 0.0625, 2
    cfg.DATA.DATASET, cfg.DATA.TEST_SIZE = "ucf_crime", [32, 40, 32]
    net, scores = tiny_mist_on_the_real_video()
    path = tmp_path_factory.mktemp("api") / "s2.pth"
    save_checkpoint(path, kind="stage2", model=net.state_dict(), cfg=cfg.dump(), epoch=1)
    return path, scores


def test_a_video_file_and_its_frames_score_as_tools_test_does(stage2):
    path, ref = stage2
    detector = load(path, threshold=float(np.median(ref)))
    result = detector.score_video(REAL)
    np.testing.assert_allclose(result.clip_scores, ref, atol=1e-6)
    # 100 frames: 6 clips of 16, the last 4 frames take the last clip's score
    assert len(result.frame_scores) == 100 and result.frame_scores[99] == result.clip_scores[5]
    np.testing.assert_array_equal(result.frame_scores[16:32], result.clip_scores[1])
    same = detector.score_frames(read_video_frames(REAL))
    np.testing.assert_allclose(same.clip_scores, ref, atol=1e-6)
    # alarms: the clips strictly above the threshold (the median), merged into runs
    above = ref > np.median(ref)
    covered = np.zeros(len(ref), bool)
    for alarm in result.alarms:
        covered[alarm.start_frame // 16 : alarm.end_frame // 16] = True
    assert np.array_equal(covered, above)


def test_the_threshold_comes_from_a_calibration_file(stage2, tmp_path):
    path, _ = stage2
    cal = tmp_path / "cal.json"
    rows = [{"target_far": 0.001, "threshold": 0.25}, {"target_far": 0.01, "threshold": 0.125}]
    cal.write_text(json.dumps({"thresholds": rows}))
    assert load(path, calibration=cal, far=0.01).threshold == 0.125
    with pytest.raises(InputError, match="needs far="):
        load(path, calibration=cal)


def test_a_stage1_generator_scores_features(tmp_path):
    cfg = get_cfg_defaults()
    cfg.DATA.FEATURE_DIM, cfg.DATA.L2_NORM = 8, True
    torch.manual_seed(0)
    net = MILGenerator(in_dim=8, dropout=0.6).eval()
    save_checkpoint(tmp_path / "s1.pth", kind="stage1", model=net.state_dict(), cfg=cfg.dump())
    features = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    result = load(tmp_path / "s1.pth").score_features(features)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    with torch.no_grad():
        expected = net(torch.from_numpy(unit)).reshape(-1).numpy()
    np.testing.assert_allclose(result.clip_scores, expected, atol=1e-6)
    assert len(result.frame_scores) == 80
    with pytest.raises(InputError, match=r"features must be \(n_clips, 8\)"):
        load(tmp_path / "s1.pth").score_features(features[:, :4])


def test_frame_scores_by_hand():
    assert frame_scores_of(np.array([0.1, 0.9]), 35).tolist() == [0.1] * 16 + [0.9] * 19
