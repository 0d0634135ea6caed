"""Calibrated alarm thresholds (utils/calibration.py) and their file from tools/test.py:
hand-computed cases."""

import json

import numpy as np
import pytest

from datasets.splits import Video
from tests.stage1_fixtures import make_tiny_dataset, tiny_opts
from utils.calibration import (
    allowed_false_alarms,
    calibrate,
    calibrate_split,
    event_ids,
    format_table,
    select_threshold,
    threshold_for_far,
)
from run_tool import run_tool


def test_threshold_is_the_smallest_score_within_the_target():
    normal = np.arange(1, 11) / 10  # 0.1 .. 1.0, shuffled order must not matter
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(normal)
    assert threshold_for_far(shuffled, 0.1) == (0.9, 0.1)  # one frame (1.0) may pass
    assert threshold_for_far(shuffled, 0.05) == (1.0, 0.0)  # none may pass: t = the maximum
    assert threshold_for_far(shuffled, 0.25) == (0.8, 0.2)  # k = floor(2.5) = 2
    # everything allowed: the minimum (strict >)
    assert threshold_for_far(shuffled, 1.0) == (0.1, 0.9)


def test_ties_at_the_threshold_give_a_lower_far():
    normal = [0.5, 0.5, 0.5, 0.5, 0.9, 0.9]
    assert threshold_for_far(normal, 0.2) == (0.9, 0.0)  # k = 1, but 0.9 twice: neither is > 0.9
    t, far = threshold_for_far(normal, 0.4)  # k = 2: t = 0.5, the two 0.9 pass
    assert (t, far) == (0.5, pytest.approx(2 / 6))


def test_allowed_false_alarms_survives_float_rounding():
    assert 0.29 * 100 < 29  # 28.999999999999996: a plain floor would allow 28
    assert allowed_false_alarms(100, 0.29) == 29
    assert allowed_false_alarms(1000, 0.001) == 1 and allowed_false_alarms(1000, 0.0005) == 0
    assert allowed_false_alarms(7, 0.0) == 0 and allowed_false_alarms(7, 1.0) == 7
    with pytest.raises(ValueError, match="must be in"):
        allowed_false_alarms(10, 1.5)


def test_events_never_cross_a_video_boundary():
    labels = np.array([0, 1, 1, 0, 1, 1, 1, 0])
    ids, n = event_ids(labels, [0, 5, 8])  # the run 4..6 spans videos 0 and 1: two events
    assert n == 3
    assert ids.tolist() == [-1, 0, 0, -1, 1, 2, 2, -1]


def test_calibrate_by_hand():
    # video 0 normal (frames 0-9), video 1 abnormal (frames 10-19) with events 12-13 and 16-18
    scores = np.array(
        [
            0.1,
            0.2,
            0.3,
            0.4,
            0.5,
            0.6,
            0.7,
            0.8,
            0.9,
            0.95,
            0.1,
            0.2,
            0.99,
            0.3,
            0.1,
            0.1,
            0.5,
            0.85,
            0.2,
            0.1,
        ]
    )
    labels = np.zeros(20, int)
    labels[[12, 13, 16, 17, 18]] = 1
    normal = np.arange(20) < 10
    out = calibrate(scores, labels, [0, 10, 20], normal, [0.1, 0.2, 0.5])
    assert (
        out["reference"],
        out["n_reference_frames"],
        out["n_anomalous_frames"],
        out["n_events"],
    ) == ("normal_videos", 10, 5, 2)
    rows = {r["target_far"]: r for r in out["thresholds"]}
    assert (
        rows[0.1]["threshold"] == 0.9
        and rows[0.1]["far"] == 0.1
        and rows[0.1]["false_alarm_frames"] == 1
    )
    assert rows[0.1]["frame_recall"] == 0.2 and rows[0.1]["events_detected"] == 1  # only .99 > .9
    assert (
        rows[0.2]["threshold"] == 0.8
        and rows[0.2]["frame_recall"] == 0.4
        and rows[0.2]["event_recall"] == 1.0
    )
    # .5 itself is not > .5
    assert rows[0.5]["threshold"] == 0.5 and rows[0.5]["frame_recall"] == 0.4
    assert len(format_table(out)) == 2 + 3


def test_without_normal_videos_negative_frames_are_the_reference():
    out = calibrate([0.1, 0.9, 0.2, 0.8], [0, 1, 0, 1], [0, 4], np.zeros(4, bool), [0.5])
    assert out["reference"] == "negative_frames" and out["n_reference_frames"] == 2
    # 0.2 may pass
    assert out["thresholds"][0]["threshold"] == 0.1 and out["thresholds"][0]["far"] == 0.5
    assert out["thresholds"][0]["frame_recall"] == 1.0


def test_calibrate_split_expands_clips_to_frames():
    videos = [Video("n", 0, 40), Video("a", 1, 40)]
    # 16-frame clips; 8 tail frames dropped
    clip_scores = {"n": np.array([0.1, 0.3]), "a": np.array([0.2, 0.9])}
    labels = {"n": np.zeros(40, np.uint8), "a": np.r_[np.zeros(20), np.ones(20)].astype(np.uint8)}
    out = calibrate_split(clip_scores, labels, videos, 16, [0.25])
    assert (
        out["n_reference_frames"] == 32 and out["n_anomalous_frames"] == 12 and out["n_events"] == 1
    )
    row = out["thresholds"][0]
    # k = 8, but 16 frames tie at 0.3: none pass
    assert row["threshold"] == 0.3 and row["far"] == 0.0
    assert row["frame_recall"] == 1.0 and row["event_recall"] == 1.0


def test_test_py_writes_the_calibration_file(tmp_path):
    paths = make_tiny_dataset(tmp_path / "data")
    videos = [line.split(",") for line in paths["test"].read_text().split()]
    rng = np.random.default_rng(1)
    scores = {
        name: rng.random(
            int(n) // 16 if int(n) > 0 else len(np.load(paths["masks"] / f"{name}.npy")) // 16
        )
        for name, _, n in videos
    }
    np.savez(tmp_path / "mine.npz", **scores)
    opts = tiny_opts(paths, tmp_path / "out") + [
        "TEST.SCORES",
        str(tmp_path / "mine.npz"),
        "TEST.CALIBRATION_FARS",
        "[0.001, 0.01, 0.1]",
    ]
    run_tool("test", opts)
    saved = json.loads((tmp_path / "out" / "test_mine_calibration.json").read_text())
    assert saved["source"].endswith("mine.npz") and [
        r["target_far"] for r in saved["thresholds"]
    ] == [0.001, 0.01, 0.1]
    normal = np.concatenate(
        [np.repeat(scores[name], 16) for name, label, _ in videos if label == "0"]
    )
    for row in saved["thresholds"]:
        t = row["threshold"]
        assert np.mean(normal > t) <= row["target_far"] == pytest.approx(row["target_far"])
        lower = normal[normal < t]  # any lower threshold (the next lower score) exceeds the target
        assert lower.size == 0 or np.mean(normal > lower.max()) > row["target_far"]
    assert (
        select_threshold(tmp_path / "out" / "test_mine_calibration.json", 0.01)
        == saved["thresholds"][1]
    )
    with pytest.raises(ValueError, match="has no threshold for FAR 0.05; it has 0.001, 0.01, 0.1"):
        select_threshold(tmp_path / "out" / "test_mine_calibration.json", 0.05)
