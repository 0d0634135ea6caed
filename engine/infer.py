"""Online anomaly detection on a video file, a camera or a stream with a stage-2 model.

SOURCE: a video file, a camera index (0, 1, ...) or a stream URL (rtsp://, http://, ...). A reader
thread takes frames as they come into a bounded queue (INFER.QUEUE_SIZE; INFER.DROP: drop the
oldest frame when full for cameras and streams, block for files). Every 16-frame window starting
every INFER.STRIDE frames is scored (batched up to INFER.BATCH_SIZE windows when frames are waiting)
with the test transform of the model's backbone (DATA.DATASET, DATA.TEST_SIZE, TEST.TEN_CROP).
Alarms: utils/alarms.py (INFER.THRESHOLD, or the threshold for --far in a --calibration file written
by tools/test.py; INFER.LOW_THRESHOLD hysteresis; INFER.MIN_FRAMES / INFER.MIN_SECONDS minimum
duration).
MODEL: a stage-2 checkpoint (any layout models/weights.py reads; ours carry their config, others
take the MODEL keys of the config), or a file of tools/export.py (.onnx via onnxruntime, .pt
TorchScript; its .json beside it gives the transform).
Output: one JSON line per window on stdout ({"time", "frame", "end_frame", "score", "alarm"};
time = first frame / fps) and one per alarm transition ({"event": "alarm_start" | "alarm_end",
...}); in the output folder (default output/infer/<source name>): scores.jsonl (the same lines),
timeline.csv (one row per window, written as it goes), timeline.json (settings, alarms, throughput
and latency, written at the end) and with video=True annotated.mp4 (score curve overlay). Ctrl-C
(or SIGTERM) ends the run cleanly: every file is completed.
"""

import csv
import json
import logging
import signal
import sys
import threading
import time
import zipfile
from collections import deque
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from datasets.build import test_transform
from models.loading import inference_amp, load_mist, stage1_refusal
from models.mist import anomaly_score
from utils.alarms import AlarmTracker, min_duration_frames
from utils.calibration import select_threshold
from utils.checkpoint import write_json
from utils.env import resolve_device
from utils.errors import ExistsError, InputError, NotFoundError
from utils.stream import AnnotatedWriter, FrameReader, open_source, source_name
from utils.video_scoring import autocast

CLIP_LEN = 16
DEFAULT_FPS = 25.0
# its own stderr handler (_console_logger), not propagated: the "mist" console writes to stdout,
# which carries the JSON lines
logger = logging.getLogger("mist.infer")


class TorchScorer:
    """MIST in PyTorch: clips (N, 3, 16, H, W) -> scores (N,) numpy."""

    def __init__(self, model, device, amp):
        self.model, self.device, self.amp = model.to(device).eval(), device, amp

    @torch.inference_mode()
    def __call__(self, clips):
        with autocast(self.device, self.amp):
            out = self.model(clips.to(self.device, non_blocking=True))
        return anomaly_score(out["logits"].float()).cpu().numpy()


class TorchScriptScorer:
    """A tools/export.py TorchScript file (outputs score, logits)."""

    def __init__(self, path, device):
        self.model = torch.jit.load(str(path), map_location=device).eval()
        self.device = device

    @torch.inference_mode()
    def __call__(self, clips):
        return self.model(clips.to(self.device))[0].float().cpu().numpy()


class OnnxScorer:
    """A tools/export.py ONNX file run by onnxruntime (its CUDA provider when DEVICE is CUDA and
    onnxruntime has one)."""

    def __init__(self, path, device):
        try:
            import onnxruntime as ort
        except ImportError:
            raise InputError(
                "running an .onnx model needs onnxruntime: pip install -r requirements-optional.txt"
            ) from None
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), providers=providers)
        self.input = self.session.get_inputs()[0].name

    def __call__(self, clips):
        return self.session.run(["score"], {self.input: clips.numpy()})[0]


def is_torchscript(path):
    """TorchScript archives are zip files holding code/; torch.save checkpoints hold none."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def load_export(path, device):
    """A tools/export.py file -> (scorer, transform settings from the .json beside it, backend
    name)."""
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        raise NotFoundError(
            f"{meta_path} (written by tools/export.py beside {path.name}) is "
            "missing; it tells how to preprocess frames for this exported model"
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("kind") == "stage1":
        raise stage1_refusal(
            path,
            "online inference (tools/infer.py)",
            what="an export of a stage-1 generator",
            checkpoint="<the stage-1 checkpoint it was exported from>",
        )
    if meta.get("kind") != "stage2":
        raise InputError(
            f"{path} is an export of a {meta.get('kind')} model; infer.py runs "
            "stage-2 (MIST) models"
        )
    onnx = path.suffix.lower() == ".onnx"
    scorer = OnnxScorer(path, device) if onnx else TorchScriptScorer(path, device)
    settings = {k: meta[k] for k in ("backbone", "dataset", "test_size", "ten_crop")}
    return scorer, settings, type(scorer).__name__


def load_scorer(path, cfg, device):
    """model file -> (scorer, transform settings {backbone, dataset, test_size, ten_crop}, backend
    name)."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(
            f"--model {str(path)!r} does not exist (a stage-2 checkpoint, .onnx or .pt export)"
        )
    if path.suffix.lower() == ".onnx" or is_torchscript(path):
        return load_export(path, device)
    model, model_cfg = load_mist(path, cfg, needs="online inference (tools/infer.py)")
    settings = {
        "backbone": model_cfg.MODEL.BACKBONE,
        "dataset": cfg.DATA.DATASET,
        "test_size": list(cfg.DATA.TEST_SIZE),
        "ten_crop": cfg.TEST.TEN_CROP,
    }
    scorer = TorchScorer(model, device, inference_amp(cfg.INFER.AMP, device))
    return scorer, settings, "TorchScorer"


def frame_transform(cfg, settings):
    """-> frame uint8 (H, W, 3) BGR -> tensor (3, 1, h, w) (or (10, 3, 1, c, c)): the test transform
    of `settings` (load_scorer), one frame at a time."""
    transform = test_transform(
        cfg,
        backbone=settings["backbone"],
        dataset=settings["dataset"],
        ten_crop=bool(settings["ten_crop"]),
        size=list(settings["test_size"]),
    )
    return lambda frame: transform(frame[None])


def check_infer_cfg(cfg):
    i = cfg.INFER
    if i.DROP not in ("auto", "drop", "block"):
        raise InputError(f"INFER.DROP = {i.DROP!r} is not one of ('auto', 'drop', 'block')")
    for key in ("STRIDE", "BATCH_SIZE", "QUEUE_SIZE"):
        if i[key] < 1:
            raise InputError(f"INFER.{key} must be >= 1, got {i[key]}")
    if i.MIN_FRAMES < 0 or i.MIN_SECONDS < 0 or i.FPS < 0:
        raise InputError("INFER.MIN_FRAMES, INFER.MIN_SECONDS and INFER.FPS must be >= 0")


def alarm_threshold(cfg, calibration=None, far=None):
    """-> (threshold, calibration row or None): the calibration file's row for `far`, else
    INFER.THRESHOLD."""
    if (calibration is None) != (far is None):
        raise InputError(
            "--calibration FILE and --far RATE go together (e.g. --far 0.001 for "
            "0.1 % false alarms)"
        )
    if calibration is None:
        return cfg.INFER.THRESHOLD, None
    row = select_threshold(calibration, far)
    return row["threshold"], row


class Outputs:
    """JSON lines (stdout and scores.jsonl), timeline.csv, the annotated video; records for
    timeline.json."""

    def __init__(self, out_dir, fps, threshold, quiet, video):
        self.dir, self.fps, self.quiet = Path(out_dir), fps, quiet
        self.dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(self.dir / "scores.jsonl", "w")
        self.csv_file = open(self.dir / "timeline.csv", "w", newline="")
        self.csv = csv.writer(self.csv_file)
        self.csv.writerow(["frame", "end_frame", "time", "score", "alarm"])
        self.video = AnnotatedWriter(self.dir / "annotated.mp4", fps, threshold) if video else None
        self.frames, self.scores = [], []

    def line(self, record):
        text = json.dumps(record)
        self.jsonl.write(text + "\n")
        self.jsonl.flush()
        if not self.quiet:
            print(text, flush=True)

    def window(self, start, end, score, alarm):
        self.frames.append(start)
        self.scores.append(score)
        self.line(
            {
                "time": round(start / self.fps, 4),
                "frame": start,
                "end_frame": end,
                "score": score,
                "alarm": alarm,
            }
        )
        self.csv.writerow([start, end, f"{start / self.fps:.4f}", f"{score:.6f}", int(alarm)])
        self.csv_file.flush()
        if self.video is not None:
            self.video.add_window(end, score, alarm)

    def event(self, kind, alarm):
        self.line({"event": f"alarm_{kind}", **alarm.to_dict(self.fps)})

    def close(self):
        for f in (self.jsonl, self.csv_file):
            f.close()
        if self.video is not None:
            self.video.close()


def score_pending(pending, scorer, tracker, outputs, latencies):
    """pending: [(start, end, capture time of the last frame, clip tensor)] -> scored, tracked,
    written."""
    # (B, 3, 16, h, w) or ten-crop (B, 10, 3, 16, c, c)
    clips = torch.stack([p[3] for p in pending])
    views = clips.shape[1] if clips.dim() == 6 else 1
    scores = np.asarray(scorer(clips.flatten(0, 1) if views > 1 else clips), dtype=np.float64)
    scores = scores.reshape(len(pending), views).mean(axis=1)
    now = time.monotonic()
    for (start, end, captured, _), score in zip(pending, scores):
        latencies.append(now - captured)
        # alarms use the written value: the timeline reproduces them exactly
        score = round(float(score), 6)
        events = tracker.update(start, end, score)
        outputs.window(start, end, score, tracker.active)
        for kind, alarm in events:
            outputs.event(kind, alarm)
    pending.clear()


def run(reader, scorer, tracker, outputs, stride, batch_size, stop=None):
    """The online loop: frames -> windows -> scores -> alarms. -> (frames processed, interrupted,
    latencies).

    stop: a threading.Event that ends the run between two frames (set by Ctrl-C / SIGTERM, see
    stop_on_signals), so a window is never half-written; a KeyboardInterrupt raised elsewhere still
    ends the run.
    """
    stop = stop or threading.Event()
    window, pending, latencies, kept = deque(maxlen=CLIP_LEN), [], [], 0
    try:
        while not stop.is_set():
            item = reader.get(stop=stop)
            if item is None:
                break
            index, captured, frame, tensor = item
            kept += 1
            window.append((index, tensor))
            if outputs.video is not None:
                outputs.video.add_frame(index, frame)
            if kept >= CLIP_LEN and (kept - CLIP_LEN) % stride == 0:
                clip = torch.cat([w[1] for w in window], dim=-3)
                pending.append((window[0][0], index + 1, captured, clip))
            if pending and (len(pending) >= batch_size or reader.empty()):
                score_pending(pending, scorer, tracker, outputs, latencies)
    except KeyboardInterrupt:
        stop.set()
    interrupted = stop.is_set()
    reader.stop()
    if pending:
        score_pending(pending, scorer, tracker, outputs, latencies)
    for kind, alarm in tracker.finish():
        outputs.event(kind, alarm)
    return kept, interrupted, latencies


def summary(kept, reader, seconds, latencies):
    lat = 1000 * np.asarray(latencies) if latencies else np.zeros(1)
    per_second = max(seconds, 1e-9)
    return {
        "frames_read": reader.read,
        "frames_dropped": reader.dropped,
        "frames_processed": kept,
        "windows": len(latencies),
        "seconds": round(seconds, 3),
        "fps": round(kept / per_second, 2),
        "windows_per_second": round(len(latencies) / per_second, 2),
        "latency_ms": {
            "mean": round(float(lat.mean()), 2),
            "p50": round(float(np.percentile(lat, 50)), 2),
            "p95": round(float(np.percentile(lat, 95)), 2),
            "max": round(float(lat.max()), 2),
        },
    }


def _console_logger():
    # stderr: stdout carries the JSON lines
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[infer] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def stop_on_signals(stop):
    """Ctrl-C / `kill` / docker stop set `stop` (the loop ends after the window it is writing); a
    second Ctrl-C ends at once. Main thread only, and only for signals nobody else handles. -> the
    handlers to restore."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
            previous[sig] = signal.signal(sig, handler)
    return previous


def setup(cfg, source, model, calibration=None, far=None):
    """-> everything a run needs (model, source, alarm settings), checked before anything is
    written."""
    check_infer_cfg(cfg)
    threshold, row = alarm_threshold(cfg, calibration, far)
    low = threshold if cfg.INFER.LOW_THRESHOLD < 0 else cfg.INFER.LOW_THRESHOLD
    # low > threshold is refused before the model and the source are opened
    AlarmTracker(threshold, low)
    device = resolve_device(cfg.DEVICE)
    scorer, settings, backend = load_scorer(model, cfg, device)
    cap, kind, source_fps = open_source(source)
    fps = cfg.INFER.FPS or source_fps or DEFAULT_FPS
    drop = cfg.INFER.DROP == "drop" or (cfg.INFER.DROP == "auto" and kind != "file")
    return SimpleNamespace(
        threshold=threshold,
        low=low,
        calibration=row,
        scorer=scorer,
        settings=settings,
        backend=backend,
        cap=cap,
        kind=kind,
        fps=fps,
        min_frames=min_duration_frames(cfg.INFER.MIN_FRAMES, cfg.INFER.MIN_SECONDS, fps),
        drop=drop,
    )


def stream(reader, s, tracker, outputs, cfg):
    """Runs the loop with Ctrl-C / SIGTERM as a stop flag; outputs are closed whatever happens.
    -> (frames processed, interrupted, latencies, seconds)."""
    stop = threading.Event()
    previous = stop_on_signals(stop)
    start = time.monotonic()
    reader.start()
    try:
        kept, interrupted, latencies = run(
            reader, s.scorer, tracker, outputs, cfg.INFER.STRIDE, cfg.INFER.BATCH_SIZE, stop
        )
    finally:
        outputs.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return kept, interrupted, latencies, time.monotonic() - start


def output_dir(source, out=None, force=False):
    """-> the output folder (default output/infer/<source name>); refuses an earlier run's unless
    force."""
    out_dir = Path(out or Path("output") / "infer" / source_name(source))
    if (out_dir / "scores.jsonl").exists() and not force:
        raise ExistsError(
            f"{out_dir} holds the outputs of an earlier run (scores.jsonl): pass "
            "--force to overwrite them, or choose another --out"
        )
    return out_dir


def log_done(interrupted, kept, stats, n_alarms):
    lat = stats["latency_ms"]
    logger.info(
        "%s: %d frames (%d dropped), %d windows, %d alarms in %.1f s: %.1f frames/s, "
        "latency p50 %.0f ms, p95 %.0f ms",
        "interrupted" if interrupted else "done",
        kept,
        stats["frames_dropped"],
        stats["windows"],
        n_alarms,
        stats["seconds"],
        stats["fps"],
        lat["p50"],
        lat["p95"],
    )


def infer(
    cfg, source, model, calibration=None, far=None, out=None, video=False, quiet=False, force=False
):
    """Scores `source` online with `model` (module docstring) -> the content of timeline.json.

    calibration, far: a tools/test.py calibration file and the false alarm rate whose threshold
    to use (together), else INFER.THRESHOLD; out: output folder; video: also write annotated.mp4;
    quiet: no JSON lines on stdout; force: overwrite an earlier run's outputs in `out`.
    """
    _console_logger()
    out_dir = output_dir(source, out, force)
    s = setup(cfg, source, model, calibration, far)
    tracker = AlarmTracker(s.threshold, s.low, s.min_frames)
    outputs = Outputs(out_dir, s.fps, s.threshold, quiet, video)
    realtime = s.fps if cfg.INFER.REALTIME and s.kind == "file" else None
    reader = FrameReader(
        s.cap, cfg.INFER.QUEUE_SIZE, s.drop, frame_transform(cfg, s.settings), realtime
    )
    logger.info(
        "%s %s (%.2f fps) -> %s; model %s (%s, %s); threshold %.6g, low %.6g, min %d "
        "frames, stride %d",
        s.kind,
        source,
        s.fps,
        out_dir,
        model,
        s.backend,
        s.settings["backbone"],
        s.threshold,
        s.low,
        s.min_frames,
        cfg.INFER.STRIDE,
    )
    kept, interrupted, latencies, seconds = stream(reader, s, tracker, outputs, cfg)
    stats = summary(kept, reader, seconds, latencies)
    result = {
        "source": str(source),
        "source_kind": s.kind,
        "model": str(model),
        "backend": s.backend,
        "fps": s.fps,
        "clip_len": CLIP_LEN,
        "stride": cfg.INFER.STRIDE,
        "threshold": s.threshold,
        "low_threshold": s.low,
        "min_frames": s.min_frames,
        "calibration": s.calibration,
        "interrupted": interrupted,
        "stats": stats,
        "alarms": [a.to_dict(s.fps) for a in tracker.alarms],
        "windows": {"frame": outputs.frames, "score": outputs.scores},
    }
    write_json(out_dir / "timeline.json", result)
    # the outputs hold everything scored before it
    if reader.error is not None:
        raise InputError(
            f"reading {source} failed after {reader.read} frames: {reader.error} (the "
            f"outputs in {out_dir} hold everything scored before it)"
        )
    log_done(interrupted, kept, stats, len(tracker.alarms))
    return result
