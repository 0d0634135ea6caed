"""Live frame input and annotated output for tools/infer.py.

FrameReader reads a cv2.VideoCapture in a thread into a bounded queue, so frames are taken "as they
come": a camera or stream is never left waiting while the model runs. When the queue is full the
reader either drops the oldest frame (live sources: the model always sees the newest frames, latency
stays bounded) or blocks (files: every frame is scored). Items are (index, capture time, frame,
preprocessed) with `index` the frame's position in the source, dropped frames included; None marks
the end of the stream.

AnnotatedWriter writes the frames with a score panel: frame f shows the latest window that ends at
or before f + 1 (what an operator would have seen live), the curve of the recent scores, the
threshold, and a red border while an alarm is on."""

import math
import queue
import re
import threading
import time
from collections import deque
from pathlib import Path

import cv2
import numpy as np
from utils.errors import InputError, NotFoundError

LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")


def source_kind(source):
    """'0' -> 'camera', 'rtsp://...' -> 'stream', anything else -> 'file'."""
    source = str(source)
    if source.isdigit():
        return "camera"
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    return "stream" if scheme in LIVE_SCHEMES else "file"


def source_name(source):
    """A folder-safe name for a source: file stem, 'camera0', or the URL's host and path."""
    kind = source_kind(source)
    if kind == "camera":
        return f"camera{source}"
    name = Path(str(source)).stem if kind == "file" else str(source).split("://", 1)[1]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "stream"


def open_source(source):
    """SOURCE (camera index, stream URL or video file) -> (opened cv2.VideoCapture, kind, fps or
    0.0)."""
    kind = source_kind(source)
    if kind == "file" and not Path(source).is_file():
        raise NotFoundError(
            f"video source {source!r} is not a file, a camera index (0, 1, ...) or a stream URL "
            f"({', '.join(s + '://' for s in LIVE_SCHEMES[:4])} ...)"
        )
    cap = cv2.VideoCapture(int(source) if kind == "camera" else str(source))
    if not cap.isOpened():
        raise InputError(
            f"OpenCV cannot open {kind} {source!r}"
            + (
                " (is the camera connected and free?)"
                if kind == "camera"
                else " (check the URL / codec, e.g. ffmpeg -i SOURCE)"
            )
        )
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    return cap, kind, fps if math.isfinite(fps) and 0 < fps < 1000 else 0.0


class FrameReader:
    """Reader thread over an opened capture (module docstring). preprocess: frame -> model input,
    run here so decoding and preprocessing overlap with the model. realtime_fps: pace a file at this
    frame rate."""

    def __init__(self, cap, queue_size=64, drop=False, preprocess=None, realtime_fps=None):
        self.cap, self.drop, self.preprocess, self.realtime_fps = (
            cap,
            drop,
            preprocess,
            realtime_fps,
        )
        self.queue = queue.Queue(maxsize=max(1, int(queue_size)))
        self.read = self.dropped = 0
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame-reader", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        """Asks the thread to end and waits for it (the capture is released by the thread)."""
        self._stop.set()
        self._thread.join(timeout=5.0)

    def get(self, timeout=0.25, stop=None):
        """-> next item, or None at the end of the stream or once `stop` (an Event) is set. Waits in
        short slices so Ctrl-C is seen at once."""
        while stop is None or not stop.is_set():
            try:
                return self.queue.get(timeout=timeout)
            except queue.Empty:
                if not self._thread.is_alive() and self.queue.empty():
                    return None
        return None

    def empty(self):
        return self.queue.empty()

    def _run(self):
        start = time.monotonic()
        try:
            while not self._stop.is_set():
                ok, frame = self.cap.read()
                if not ok:
                    break
                if self.realtime_fps:
                    delay = start + self.read / self.realtime_fps - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                item = (
                    self.read,
                    time.monotonic(),
                    frame,
                    self.preprocess(frame) if self.preprocess else None,
                )
                self.read += 1
                self._put(item)
        # surfaced by the consumer (tools/infer.py) instead of dying silently
        except Exception as err:
            self.error = err
        finally:
            self.cap.release()
            self._put(None, drop=False)

    def _put(self, item, drop=None):
        drop = self.drop if drop is None else drop
        while not self._stop.is_set():
            try:
                if drop:
                    self.queue.put_nowait(item)
                else:
                    self.queue.put(item, timeout=0.1)  # short waits: stop() is noticed
                return
            except queue.Full:
                if drop:  # the consumer is behind: forget the oldest frame, keep the newest
                    try:
                        self.queue.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass


def draw_overlay(frame, history, threshold, alarm, points=64):
    """frame uint8 BGR (H, W, 3), history: scores (newest last) -> annotated copy: a bottom panel
    with the curve of the last `points` scores, the threshold line (red) and the latest score; red
    border on alarm."""
    out = frame.copy()
    h, w = out.shape[:2]
    panel = max(24, h // 4)
    out[h - panel :] = (out[h - panel :] * 0.35).astype(np.uint8)
    top, bottom = h - panel + 4, h - 4

    def y_of(score):
        return int(round(bottom - float(np.clip(score, 0.0, 1.0)) * (bottom - top)))

    cv2.line(out, (0, y_of(threshold)), (w - 1, y_of(threshold)), (0, 0, 255), 1)
    step = max(2, w // points)
    recent = list(history)[-(w // step) :]
    if recent:
        xs = w - 1 - step * np.arange(len(recent))[::-1]
        pts = np.stack([xs, [y_of(s) for s in recent]], axis=1).astype(np.int32)
        cv2.polylines(
            out, [pts.reshape(-1, 1, 2)], False, (0, 255, 255), max(1, h // 160), cv2.LINE_AA
        )
        scale = max(0.3, h / 600)
        cv2.putText(
            out,
            f"{recent[-1]:.2f}",
            (4, top + int(14 * scale)),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    if alarm:
        cv2.rectangle(out, (0, 0), (w - 1, h - 1), (0, 0, 255), max(2, w // 80))
        cv2.putText(
            out,
            "ALARM",
            (4, max(14, h // 12)),
            cv2.FONT_HERSHEY_SIMPLEX,
            max(0.4, h / 400),
            (0, 0, 255),
            max(1, h // 200),
            cv2.LINE_AA,
        )
    return out


class AnnotatedWriter:
    """Buffers frames until the windows covering them are scored, then writes them with
    draw_overlay."""

    def __init__(self, path, fps, threshold):
        self.path, self.fps, self.threshold = Path(path), float(fps), float(threshold)
        self.frames, self.windows, self.history = deque(), deque(), []
        self.alarm, self.writer, self.written = False, None, 0

    def add_frame(self, index, frame):
        self.frames.append((index, frame))

    def add_window(self, end, score, alarm):
        """A scored window ending at frame `end` (exclusive); frames before `end` are then final."""
        self.windows.append((end, float(score), bool(alarm)))
        self._flush(end)

    def _flush(self, upto):
        while self.frames and (upto is None or self.frames[0][0] < upto):
            index, frame = self.frames.popleft()
            while self.windows and self.windows[0][0] <= index + 1:
                _, score, self.alarm = self.windows.popleft()
                self.history.append(score)
            self._write(draw_overlay(frame, self.history, self.threshold, self.alarm))

    def _write(self, frame):
        if self.writer is None:
            fourcc = cv2.VideoWriter_fourcc(
                *("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v")
            )
            self.writer = cv2.VideoWriter(
                str(self.path), fourcc, self.fps, (frame.shape[1], frame.shape[0])
            )
            if not self.writer.isOpened():
                raise InputError(f"OpenCV cannot write video {self.path} (use a .mp4 or .avi name)")
        self.writer.write(frame)
        self.written += 1

    def close(self):
        """Writes every buffered frame (with the last known score) and closes the file."""
        self._flush(None)
        if self.writer is not None:
            self.writer.release()
