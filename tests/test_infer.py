"""tools/infer.py, engine/infer.py: the alarm state machine by hand, the reader thread, and online
scoring of the shipped video."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from datasets.frames import open_frames
from datasets.transforms import TestTransform, normalise
from models.mist import MIST
from engine import infer
from utils.alarms import AlarmTracker, alarms_from_scores, min_duration_frames
from tests.stage2_fixtures import tiny_mist_on_the_real_video
from utils.stream import FrameReader, source_kind, source_name
from utils.video_scoring import score_videos_on_frames
from utils.errors import UserError
from run_tool import run_tool

REAL = Path(__file__).parent / "data" / "videos" / "Normal_Videos020_x264_head100.mp4"
ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "MODEL.BACKBONE",
    "c3d",
    "MODEL.WIDTH",
    "0.0625",
    "MODEL.EXPAND_K",
    "2",
    "DATA.TEST_SIZE",
    "[32, 40, 32]",
]


def _spans(alarms):
    return [(a.start_frame, a.end_frame, a.raised_frame, a.peak_score) for a in alarms]


def test_alarm_threshold_hysteresis_and_min_duration_by_hand():
    # 16-frame windows every 16 frames; alarm above 0.5, held above 0.3, raised once 32 frames long
    scores = [0.1, 0.6, 0.4, 0.2, 0.7, 0.1, 0.9, 0.8, 0.35, 0.1]
    tracker, transitions = AlarmTracker(0.5, 0.3, min_frames=32), []
    for k, score in enumerate(scores):
        transitions += [(kind, 16 * k) for kind, _ in tracker.update(16 * k, 16 * k + 16, score)]
    assert transitions == [("start", 32), ("end", 48), ("start", 112), ("end", 144)]
    # 0.6 then 0.4 (held by hysteresis) = frames 16..47; the lone 0.7 (16 frames) is never raised;
    # 0.9, 0.8, 0.35 = 96..143, raised when the 0.8 window ends (frame 128)
    assert _spans(tracker.alarms) == [(16, 48, 48, 0.6), (96, 144, 128, 0.9)]
    assert tracker.finish() == [] and not tracker.active


def test_alarm_without_hysteresis_on_overlapping_windows():
    alarms = alarms_from_scores([0, 8, 16, 24, 32], [0.6, 0.6, 0.2, 0.7, 0.1], 16, threshold=0.5)
    assert _spans(alarms) == [(0, 24, 16, 0.6), (24, 40, 40, 0.7)]
    assert alarms[0].to_dict(fps=8.0)["end_time"] == 3.0


def test_alarm_open_at_the_end_is_closed_and_flagged():
    tracker = AlarmTracker(0.5, min_frames=48)
    assert tracker.update(0, 16, 0.9) == [] and tracker.update(16, 32, 0.9) == []  # 32 < 48 frames
    assert tracker.update(32, 48, 0.8)[0][0] == "start" and tracker.active
    ((kind, alarm),) = tracker.finish()
    assert kind == "end" and (alarm.start_frame, alarm.end_frame, alarm.open_at_end) == (
        0,
        48,
        True,
    )
    # never long enough
    assert alarms_from_scores([0, 16], [0.9, 0.9], 16, 0.5, min_frames=48) == []
    with pytest.raises(ValueError, match="low threshold 0.6 exceeds the alarm threshold 0.5"):
        AlarmTracker(0.5, 0.6)


def test_min_duration_takes_the_larger_of_frames_and_seconds():
    assert min_duration_frames(16, 1.0, 30.0) == 30
    assert min_duration_frames(16, 0.5, 25.0) == 16  # 12.5 -> 13 frames < 16
    assert min_duration_frames(0, 0.52, 25.0) == 13


def test_sources_are_told_apart():
    assert [source_kind(s) for s in ("0", "rtsp://cam/live", "HTTP://x/y.mjpg", "clip.mp4")] == [
        "camera",
        "stream",
        "stream",
        "file",
    ]
    assert (
        source_name("1"),
        source_name("rtsp://cam.local:554/live"),
        source_name("/a/b c.mp4"),
    ) == ("camera1", "cam.local_554_live", "b_c")


class FakeCapture:
    """n tiny frames, as fast as they are asked for."""

    def __init__(self, n):
        self.n, self.i = n, 0

    def read(self):
        self.i += 1
        return (
            (True, np.full((4, 4, 3), self.i - 1, np.uint8)) if self.i <= self.n else (False, None)
        )

    def release(self):
        pass


def _drain(reader):
    items = []
    while (item := reader.get(timeout=0.05)) is not None:
        items.append(item[0])
    return items


@pytest.mark.parametrize("drop", [False, True])
def test_reader_blocks_or_drops_the_oldest_frames(drop):
    reader = FrameReader(FakeCapture(50), queue_size=4, drop=drop).start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and reader.read < (50 if drop else 4):
        time.sleep(0.01)  # a slow consumer: the queue fills up
    received = _drain(reader)
    reader.stop()
    if drop:  # live source: the newest frames survive, the oldest are dropped
        assert received == [46, 47, 48, 49] and reader.dropped == 46
    else:
        assert received == list(range(50)) and reader.dropped == 0


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny MIST-C3D checkpoint and the scores engine/evaluate.py's scoring gives the real video's
    6 clips."""
    path = tmp_path_factory.mktemp("model") / "mist.pth"
    net, scores = tiny_mist_on_the_real_video()
    torch.save({"model": net.state_dict()}, path)
    return path, scores


@pytest.fixture(scope="module")
def run_real(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("infer")
    result = run_tool(
        "infer",
        [
            str(REAL),
            "--model",
            str(model[0]),
            "--out",
            str(out),
            "--quiet",
            "--video",
            *TINY,
            "INFER.STRIDE",
            "8",
            "INFER.BATCH_SIZE",
            "4",
        ],
    )
    return out, result


def test_online_scores_equal_the_offline_evaluation(model, run_real):
    out, result = run_real
    frames, scores = result["windows"]["frame"], np.array(result["windows"]["score"])
    assert frames == list(range(0, 81, 8))  # every 16-frame window of the 100 frames, stride 8
    # stride-16 windows = test.py's clips
    np.testing.assert_allclose(scores[::2], model[1], atol=2e-6)
    assert result["stats"]["frames_read"] == result["stats"]["frames_processed"] == 100
    assert result["stats"]["windows"] == 11 and result["stats"]["frames_dropped"] == 0
    assert result["fps"] == 30.0 and not result["interrupted"]
    rows = (out / "timeline.csv").read_text().split()
    assert rows[0] == "frame,end_frame,time,score,alarm" and rows[3].startswith("16,32,0.5333,")
    lines = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines if "score" in line] == frames
    assert json.loads((out / "timeline.json").read_text())["windows"]["frame"] == frames
    cap = cv2.VideoCapture(str(out / "annotated.mp4"))
    size = (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
    count = sum(1 for _ in iter(lambda: cap.read()[0], False))
    assert (count, size) == (100, (240, 320))


def test_calibrated_threshold_drives_the_alarms(model, run_real, tmp_path):
    scores = np.array(run_real[1]["windows"]["score"])
    distinct = np.unique(scores)
    # between two scores
    threshold = float(distinct[len(distinct) // 2 : len(distinct) // 2 + 2].mean())
    low = float(distinct[1:3].mean())
    (tmp_path / "cal.json").write_text(
        json.dumps(
            {
                "thresholds": [
                    {"target_far": 0.01, "threshold": 9.0},
                    {"target_far": 0.001, "threshold": threshold},
                ]
            }
        )
    )
    result = run_tool(
        "infer",
        [
            str(REAL),
            "--model",
            str(model[0]),
            "--out",
            str(tmp_path),
            "--quiet",
            *TINY,
            "--calibration",
            str(tmp_path / "cal.json"),
            "--far",
            "0.001",
            "INFER.STRIDE",
            "8",
            "INFER.LOW_THRESHOLD",
            str(low),
            "INFER.MIN_FRAMES",
            "24",
        ],
    )
    assert result["threshold"] == threshold and result["calibration"]["target_far"] == 0.001
    frames, got = result["windows"]["frame"], np.array(result["windows"]["score"])
    np.testing.assert_allclose(got, scores, atol=1e-6)
    expected = alarms_from_scores(frames, got, 16, threshold, low, 24)
    assert expected and result["alarms"] == [a.to_dict(30.0) for a in expected]
    events = [
        json.loads(x)
        for x in (tmp_path / "scores.jsonl").read_text().splitlines()
        if '"event"' in x
    ]
    assert [e["event"] for e in events] == ["alarm_start", "alarm_end"] * len(expected)
    with pytest.raises(UserError, match="go together"):
        run_tool("infer", [str(REAL), "--model", str(model[0]), "--far", "0.001", *TINY])
    with pytest.raises(UserError, match="not a file, a camera index"):
        run_tool("infer", [str(tmp_path / "missing.mp4"), "--model", str(model[0]), *TINY])


def test_ctrl_c_ends_a_live_run_cleanly(model, tmp_path):
    """A demo video read at its frame rate (as from a camera); SIGINT after the first score."""
    demo_videos = pytest.importorskip("datasets.demo_videos")
    demo = demo_videos.make_demo_videos(tmp_path / "demo", 0, 1, 0, 1)
    video = max(
        Path(demo["out_dir"], "videos").glob("*.mp4"), key=lambda p: cv2.VideoCapture(str(p)).get(7)
    )
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "infer.py"),
        str(video),
        "--model",
        str(model[0]),
        "--out",
        str(tmp_path / "run"),
        *TINY,
        "INFER.REALTIME",
        "True",
        "INFER.DROP",
        "drop",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    first = json.loads(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    result = json.loads((tmp_path / "run" / "timeline.json").read_text())
    n_frames = int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT))
    assert first["frame"] == 0 and result["interrupted"] and "interrupted:" in err
    # stopped before the end of the video
    assert 1 <= len(result["windows"]["frame"]) < n_frames // 16
    rows = (tmp_path / "run" / "timeline.csv").read_text().split()[1:]
    assert len(rows) == len(result["windows"]["frame"]) == result["stats"]["windows"]


class _ListReader:
    """FrameReader's interface over a list of (index, time, frame, tensor) items."""

    def __init__(self, items):
        self.items = list(items)

    def get(self, stop=None):
        return None if (stop is not None and stop.is_set()) or not self.items else self.items.pop(0)

    def empty(self):
        return not self.items

    def stop(self):
        pass


def test_ctrl_c_while_a_window_is_written_ends_after_it_and_writes_each_window_once(tmp_path):
    """SIGINT in the middle of scoring a batch: the batch is written once, whole; no frame after it
    is read."""
    stop = threading.Event()
    previous = infer.stop_on_signals(stop)
    try:

        def scorer(clips):  # Ctrl-C arrives while the batch is scored
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            return torch.arange(len(clips), dtype=torch.float64) / 10

        items = [(k, 0.0, None, torch.zeros(3, 1, 2, 2)) for k in range(64)]
        outputs = infer.Outputs(tmp_path, 8.0, 0.5, True, False)
        kept, interrupted, latencies = infer.run(
            _ListReader(items), scorer, AlarmTracker(0.5), outputs, 8, 2, stop
        )
        outputs.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # windows 0..15 and 8..23 scored as one batch, then the run ends
    assert interrupted and kept == 24
    assert outputs.frames == [0, 8] and outputs.scores == [0.0, 0.1] and len(latencies) == 2
    rows = (tmp_path / "timeline.csv").read_text().split()[1:]
    assert [r.split(",")[:2] for r in rows] == [["0", "16"], ["8", "24"]]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("backbone,ten_crop", [("c3d", False), ("c3d", True), ("i3d", False)])
def test_scoring_with_uint8_clips_normalised_on_the_device_gives_the_same_scores(
    backbone, ten_crop, monkeypatch
):
    import utils.video_scoring as video_scoring

    calls = []
    monkeypatch.setattr(
        video_scoring,
        "normalise",
        lambda clips, b: calls.append(clips.dtype) or normalise(clips, b),
    )
    torch.manual_seed(0)
    net = MIST(backbone, expand_k=2, width=0.0625).eval()
    frames = open_frames([REAL], kind="video")
    transform = TestTransform(backbone, "ucf_crime", ten_crop=ten_crop, size=((32, 40), 32))
    scores = [
        score_videos_on_frames(
            net, frames, frames.names, transform, torch.device("cpu"), uint8=uint8
        )
        for uint8 in (False, True)
    ]
    name = "Normal_Videos020_x264_head100"
    assert len(scores[0][name]) == 6 and np.array_equal(scores[0][name], scores[1][name])
    # a copy: the caller's transform is unchanged
    assert transform.normalise and not transform.uint8().normalise
    # the uint8 run normalised its clips after the loader
    assert calls and set(calls) == {torch.uint8}


def _stage1_message(path, what="a stage-1 checkpoint", checkpoint=None):
    return (
        f"{path} is {what} (the MIL generator, which scores pre-extracted clip features), but "
        "online inference (tools/infer.py) needs a stage-2 MIST model, which scores video frames: "
        "a checkpoints/*.pth of tools/train_stage2.py, the authors' MIST checkpoint, or a "
        "tools/export.py file of one (.onnx / .pt). To score features with this generator, run "
        f"tools/test.py --cfg <its config> TEST.CHECKPOINT {checkpoint or path} DATA.FEATURES "
        "<feature file>"
    )


def test_a_stage1_checkpoint_is_refused_with_what_runs_it(tmp_path):
    from configs.defaults import get_cfg_defaults
    from models.build import build_generator
    from utils.checkpoint import save_checkpoint

    cfg = get_cfg_defaults()
    path = tmp_path / "last.pth"
    save_checkpoint(path, kind="stage1", model=build_generator(cfg).state_dict(), cfg=cfg.dump())
    with pytest.raises(UserError) as err:
        run_tool("infer", [str(REAL), "--model", str(path), "--out", str(tmp_path / "o")])
    # was "unrecognised checkpoint layout (first keys [...])"
    assert str(err.value) == _stage1_message(path)
    assert not (tmp_path / "o").exists()


def test_an_export_of_a_stage1_generator_is_refused_with_what_runs_it(tmp_path):
    import zipfile

    path = tmp_path / "generator.pt"
    # what is_torchscript recognises (a zip holding code/); it is refused before being loaded
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("generator/code/__torch__.py", "")
    path.with_suffix(".json").write_text(json.dumps({"kind": "stage1"}))
    with pytest.raises(UserError) as err:
        infer.load_scorer(path, None, torch.device("cpu"))
    assert str(err.value) == _stage1_message(
        path,
        what="an export of a stage-1 generator",
        checkpoint="<the stage-1 checkpoint it was exported from>",
    )
