"""Online anomaly detection on a video file, a camera or a stream with a stage-2 model: scores, alarms, timeline.

    python tools/infer.py video.mp4 --model output/sht_i3d_stage2/checkpoints/best.pth \
        --cfg configs/shanghaitech/i3d_stage2.yaml
    python tools/infer.py 0 --model export/mist_sht_i3d.onnx --calibration output/test/test_best_calibration.json \
        --far 0.001 --video
    python tools/infer.py rtsp://camera/stream --model export/mist_sht_i3d.pt INFER.STRIDE 8 INFER.MIN_SECONDS 2.0

SOURCE: a video file, a camera index (0, 1, ...) or a stream URL (rtsp://, http://, ...). A reader thread takes
frames as they come into a bounded queue (INFER.QUEUE_SIZE; INFER.DROP: drop the oldest frame when full for
cameras and streams, block for files). Every 16-frame window starting every INFER.STRIDE frames is scored
(batched up to INFER.BATCH_SIZE windows when frames are waiting) with the test transform of the model's
backbone (DATA.DATASET, DATA.TEST_SIZE, TEST.TEN_CROP). Alarms: utils/alarms.py (INFER.THRESHOLD, or the
threshold for --far in a --calibration file written by tools/test.py; INFER.LOW_THRESHOLD hysteresis;
INFER.MIN_FRAMES / INFER.MIN_SECONDS minimum duration).
--model: a stage-2 checkpoint (any layout models/weights.py reads; ours carry their config, others take the
MODEL keys of --cfg), or a file of tools/export.py (.onnx via onnxruntime, .pt TorchScript; its .json beside it
gives the transform).
Output: one JSON line per window on stdout ({"time", "frame", "end_frame", "score", "alarm"}; time = first
frame / fps) and one per alarm transition ({"event": "alarm_start" | "alarm_end", ...}); in --out (default
output/infer/<source name>): scores.jsonl (the same lines), timeline.csv (one row per window, written as it
goes), timeline.json (settings, alarms, throughput and latency, written at the end) and with --video
annotated.mp4 (score curve overlay). Ctrl-C (or SIGTERM) ends the run cleanly: every file is completed.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402
from collections import deque  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from datasets.build import stage2_transforms  # noqa: E402
from models.loading import inference_amp, load_mist  # noqa: E402
from models.mist import anomaly_score  # noqa: E402
from utils.alarms import AlarmTracker, min_duration_frames  # noqa: E402
from utils.calibration import select_threshold  # noqa: E402
from utils.checkpoint import write_json  # noqa: E402
from utils.config import load_cfg  # noqa: E402
from utils.env import resolve_device  # noqa: E402
from utils.stream import AnnotatedWriter, FrameReader, open_source, source_name  # noqa: E402
from utils.video_scoring import autocast  # noqa: E402
from utils.errors import ExistsError, InputError, NotFoundError  # noqa: E402
from utils import cli  # noqa: E402

CLIP_LEN = 16
DEFAULT_FPS = 25.0
logger = logging.getLogger("mist_infer")  # not under "mist": its console handler writes to stdout


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
        self.model, self.device = torch.jit.load(str(path), map_location=device).eval(), device

    @torch.inference_mode()
    def __call__(self, clips):
        return self.model(clips.to(self.device))[0].float().cpu().numpy()


class OnnxScorer:
    """A tools/export.py ONNX file run by onnxruntime (CUDA provider when DEVICE is CUDA and it has one)."""

    def __init__(self, path, device):
        try:
            import onnxruntime as ort
        except ImportError:
            raise InputError("running an .onnx model needs onnxruntime: pip install -r requirements-optional.txt") \
                from None
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


def load_scorer(path, cfg, device):
    """--model -> (scorer, transform settings {backbone, dataset, test_size, ten_crop}, backend name)."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"--model {str(path)!r} does not exist (a stage-2 checkpoint, .onnx or .pt export)")
    if path.suffix.lower() == ".onnx" or is_torchscript(path):
        meta_path = path.with_suffix(".json")
        if not meta_path.is_file():
            raise NotFoundError(f"{meta_path} (written by tools/export.py beside {path.name}) is missing; it "
                                    "tells how to preprocess frames for this exported model")
        meta = json.loads(meta_path.read_text())
        if meta.get("kind") != "stage2":
            raise InputError(f"{path} is an export of a {meta.get('kind')} model; infer.py runs stage-2 (MIST) models")
        scorer = OnnxScorer(path, device) if path.suffix.lower() == ".onnx" else TorchScriptScorer(path, device)
        return scorer, {k: meta[k] for k in ("backbone", "dataset", "test_size", "ten_crop")}, type(scorer).__name__
    model, model_cfg = load_mist(path, cfg)
    settings = {"backbone": model_cfg.MODEL.BACKBONE, "dataset": cfg.DATA.DATASET,
                "test_size": list(cfg.DATA.TEST_SIZE), "ten_crop": cfg.TEST.TEN_CROP}
    return TorchScorer(model, device, inference_amp(cfg.INFER.AMP, device)), settings, "TorchScorer"


def frame_transform(cfg, settings):
    """-> frame uint8 (H, W, 3) BGR -> tensor (3, 1, h, w) (or (10, 3, 1, c, c)): the test transform per frame."""
    test_cfg = cfg.clone()
    test_cfg.defrost()
    test_cfg.MODEL.BACKBONE, test_cfg.DATA.DATASET = settings["backbone"], settings["dataset"]
    test_cfg.DATA.TEST_SIZE, test_cfg.TEST.TEN_CROP = list(settings["test_size"]), bool(settings["ten_crop"])
    _, transform = stage2_transforms(test_cfg)
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


def alarm_threshold(cfg, args):
    """-> (threshold, calibration row or None): --calibration/--far, else INFER.THRESHOLD."""
    if (args.calibration is None) != (args.far is None):
        raise InputError("--calibration FILE and --far RATE go together (e.g. --far 0.001 for 0.1 % false alarms)")
    if args.calibration is None:
        return cfg.INFER.THRESHOLD, None
    row = select_threshold(args.calibration, args.far)
    return row["threshold"], row


class Outputs:
    """JSON lines (stdout and scores.jsonl), timeline.csv, the annotated video; records for timeline.json."""

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
        self.line({"time": round(start / self.fps, 4), "frame": start, "end_frame": end, "score": score,
                   "alarm": alarm})
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
    """pending: [(start, end, capture time of the last frame, clip tensor)] -> scored, tracked, written."""
    clips = torch.stack([p[3] for p in pending])  # (B, 3, 16, h, w) or ten-crop (B, 10, 3, 16, c, c)
    views = clips.shape[1] if clips.dim() == 6 else 1
    scores = np.asarray(scorer(clips.flatten(0, 1) if views > 1 else clips), dtype=np.float64)
    scores = scores.reshape(len(pending), views).mean(axis=1)
    now = time.monotonic()
    for (start, end, captured, _), score in zip(pending, scores):
        latencies.append(now - captured)
        score = round(float(score), 6)  # alarms use the written value: the timeline reproduces them exactly
        events = tracker.update(start, end, score)
        outputs.window(start, end, score, tracker.active)
        for kind, alarm in events:
            outputs.event(kind, alarm)
    pending.clear()


def run(reader, scorer, tracker, outputs, stride, batch_size, stop=None):
    """The online loop: frames -> windows -> scores -> alarms. -> (frames processed, interrupted, latencies).

    stop: a threading.Event that ends the run between two frames (set by Ctrl-C / SIGTERM, see stop_on_signals),
    so a window is never half-written; a KeyboardInterrupt raised elsewhere still ends the run.
    """
    stop = stop or threading.Event()
    window, pending, latencies, kept, interrupted = deque(maxlen=CLIP_LEN), [], [], 0, False
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
                pending.append((window[0][0], index + 1, captured, torch.cat([w[1] for w in window], dim=-3)))
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
    return {"frames_read": reader.read, "frames_dropped": reader.dropped, "frames_processed": kept,
            "windows": len(latencies), "seconds": round(seconds, 3), "fps": round(kept / max(seconds, 1e-9), 2),
            "windows_per_second": round(len(latencies) / max(seconds, 1e-9), 2),
            "latency_ms": {"mean": round(float(lat.mean()), 2), "p50": round(float(np.percentile(lat, 50)), 2),
                           "p95": round(float(np.percentile(lat, 95)), 2), "max": round(float(lat.max()), 2)}}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="video file, camera index (0, 1, ...) or stream URL")
    parser.add_argument("--model", required=True, help="stage-2 checkpoint, or a tools/export.py .onnx / .pt file")
    parser.add_argument("--cfg", default="", help="config for MODEL / DATA.TEST_SIZE / INFER keys")
    parser.add_argument("--calibration", default=None, help="test_<name>_calibration.json from tools/test.py")
    parser.add_argument("--far", type=float, default=None, help="target false alarm rate in the calibration file")
    parser.add_argument("--out", default=None, help="output folder (default output/infer/<source name>)")
    parser.add_argument("--video", action="store_true", help="also write annotated.mp4 with the score overlay")
    parser.add_argument("--quiet", action="store_true", help="no JSON lines on stdout (files only)")
    parser.add_argument("--force", action="store_true", help="overwrite the outputs of an earlier run in --out")
    parser.add_argument("opts", nargs="*", help="KEY VALUE config overrides")
    return parser.parse_intermixed_args(argv)  # options may follow the positional arguments


def _console_logger():
    if not logger.handlers:  # stderr: stdout carries the JSON lines
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[infer] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def stop_on_signals(stop):
    """Ctrl-C / `kill` / docker stop set `stop` (the loop ends after the window it is writing); a second Ctrl-C
    ends at once. Main thread only, and only for signals nobody else handles. -> the handlers to restore."""
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


def setup(args, cfg):
    """-> everything a run needs (model, source, alarm settings), checked before anything is written."""
    check_infer_cfg(cfg)
    threshold, calibration = alarm_threshold(cfg, args)
    low = threshold if cfg.INFER.LOW_THRESHOLD < 0 else cfg.INFER.LOW_THRESHOLD
    AlarmTracker(threshold, low)  # low > threshold is refused before the model and the source are opened
    device = resolve_device(cfg.DEVICE)
    scorer, settings, backend = load_scorer(args.model, cfg, device)
    cap, kind, source_fps = open_source(args.source)
    fps = cfg.INFER.FPS or source_fps or DEFAULT_FPS
    return SimpleNamespace(threshold=threshold, low=low, calibration=calibration, scorer=scorer, settings=settings,
                           backend=backend, cap=cap, kind=kind, fps=fps,
                           min_frames=min_duration_frames(cfg.INFER.MIN_FRAMES, cfg.INFER.MIN_SECONDS, fps),
                           drop=cfg.INFER.DROP == "drop" or (cfg.INFER.DROP == "auto" and kind != "file"))


def main(argv=None):
    args = parse_args(argv)
    _console_logger()
    cfg = load_cfg(args.cfg or None, args.opts)
    out_dir = Path(args.out or Path("output") / "infer" / source_name(args.source))
    if (out_dir / "scores.jsonl").exists() and not args.force:
        raise ExistsError(f"{out_dir} holds the outputs of an earlier run (scores.jsonl): pass --force to overwrite "
                          "them, or choose another --out")
    s = setup(args, cfg)
    tracker = AlarmTracker(s.threshold, s.low, s.min_frames)
    outputs = Outputs(out_dir, s.fps, s.threshold, args.quiet, args.video)
    reader = FrameReader(s.cap, cfg.INFER.QUEUE_SIZE, s.drop, frame_transform(cfg, s.settings),
                         s.fps if cfg.INFER.REALTIME and s.kind == "file" else None)
    logger.info("%s %s (%.2f fps) -> %s; model %s (%s, %s); threshold %.6g, low %.6g, min %d frames, stride %d",
                s.kind, args.source, s.fps, out_dir, args.model, s.backend, s.settings["backbone"], s.threshold,
                s.low, s.min_frames, cfg.INFER.STRIDE)
    stop = threading.Event()
    previous = stop_on_signals(stop)
    start = time.monotonic()
    reader.start()
    try:
        kept, interrupted, latencies = run(reader, s.scorer, tracker, outputs, cfg.INFER.STRIDE, cfg.INFER.BATCH_SIZE,
                                           stop)
    finally:
        outputs.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stats = summary(kept, reader, time.monotonic() - start, latencies)
    result = {"source": str(args.source), "source_kind": s.kind, "model": str(args.model), "backend": s.backend,
              "fps": s.fps, "clip_len": CLIP_LEN, "stride": cfg.INFER.STRIDE, "threshold": s.threshold,
              "low_threshold": s.low, "min_frames": s.min_frames, "calibration": s.calibration,
              "interrupted": interrupted, "stats": stats, "alarms": [a.to_dict(s.fps) for a in tracker.alarms],
              "windows": {"frame": outputs.frames, "score": outputs.scores}}
    write_json(out_dir / "timeline.json", result)
    if reader.error is not None:  # the outputs hold everything scored before it
        raise InputError(f"reading {args.source} failed after {reader.read} frames: {reader.error} (the outputs in "
                         f"{out_dir} hold everything scored before it)")
    logger.info("%s: %d frames (%d dropped), %d windows, %d alarms in %.1f s: %.1f frames/s, latency p50 %.0f ms, "
                "p95 %.0f ms", "interrupted" if interrupted else "done", kept, stats["frames_dropped"],
                stats["windows"], len(tracker.alarms), stats["seconds"], stats["fps"],
                stats["latency_ms"]["p50"], stats["latency_ms"]["p95"])
    return result


if __name__ == "__main__":
    sys.exit(cli.run(main))
