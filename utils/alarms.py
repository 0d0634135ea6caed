"""Alarm events from a stream of window scores: threshold, hysteresis and minimum duration
(tools/infer.py).

A window is one scored clip covering frames [start, end). An alarm *candidate* opens at the first
window whose score exceeds `threshold` (strict >, as the false alarm rates of utils/metrics.py) and
stays open while the following windows exceed `low_threshold` (hysteresis: low <= threshold). It
becomes an alarm (is *raised*) as soon as its windows span at least `min_frames` frames; a candidate
that closes before that is discarded. An alarm ends at the first window scoring <= low_threshold;
its span is [first window's start, last window above low_threshold's end).

    tracker = AlarmTracker(threshold=0.5, low_threshold=0.3, min_frames=32)
    for start, end, score in windows:
        for kind, alarm in tracker.update(start, end, score): ...   # ("start" | "end", Alarm)
    tracker.finish()                                               # closes an alarm still open
"""

import math
from dataclasses import asdict, dataclass
from utils.errors import InputError


@dataclass
class Alarm:
    """One alarm event; frames are source frame indices, `end_frame` exclusive."""

    start_frame: int
    end_frame: int
    peak_score: float
    peak_frame: int  # first frame of the highest-scoring window
    # end of the window that made the span reach min_frames (None: candidate)
    raised_frame: int | None = None
    open_at_end: bool = False  # the stream ended (or was interrupted) while the alarm was on

    @property
    def duration(self):
        return self.end_frame - self.start_frame

    def to_dict(self, fps=None):
        """-> JSON-ready dict; with fps, also start/end/raised times in seconds."""
        out = asdict(self)
        out["duration_frames"] = self.duration
        if fps:
            out.update(
                start_time=self.start_frame / fps,
                end_time=self.end_frame / fps,
                raised_time=None if self.raised_frame is None else self.raised_frame / fps,
            )
        return out


class AlarmTracker:
    """Online alarm state machine (module docstring). Closed alarms accumulate in `alarms`."""

    def __init__(self, threshold, low_threshold=None, min_frames=0):
        low = threshold if low_threshold is None else low_threshold
        if low > threshold:
            raise InputError(
                f"the hysteresis low threshold {low} exceeds the alarm threshold {threshold}; "
                "set INFER.LOW_THRESHOLD <= INFER.THRESHOLD (or -1.0 for none)"
            )
        if min_frames < 0:
            raise InputError(f"minimum alarm duration {min_frames} frames must be >= 0")
        self.threshold, self.low_threshold, self.min_frames = (
            float(threshold),
            float(low),
            int(min_frames),
        )
        self.current = None  # the open candidate or alarm
        self.alarms = []

    @property
    def active(self):
        """True while a raised alarm is open."""
        return self.current is not None and self.current.raised_frame is not None

    def update(self, start, end, score):
        """Next window (in order of start) -> list of ("start" | "end", Alarm) transitions it
        caused."""
        score = float(score)
        if self.current is None:
            if score <= self.threshold:
                return []
            self.current = Alarm(int(start), int(end), score, int(start))
            return self._maybe_raise(end)
        if score <= self.low_threshold:
            return self._close()
        alarm = self.current
        alarm.end_frame = max(alarm.end_frame, int(end))
        if score > alarm.peak_score:
            alarm.peak_score, alarm.peak_frame = score, int(start)
        return self._maybe_raise(end)

    def _maybe_raise(self, end):
        alarm = self.current
        if alarm.raised_frame is None and alarm.duration >= self.min_frames:
            alarm.raised_frame = int(end)
            return [("start", alarm)]
        return []

    def _close(self, open_at_end=False):
        alarm, self.current = self.current, None
        if alarm.raised_frame is None:  # too short: never raised, never reported
            return []
        alarm.open_at_end = open_at_end
        self.alarms.append(alarm)
        return [("end", alarm)]

    def finish(self):
        """End of the stream: closes an open alarm (flagged open_at_end) -> its transitions."""
        return self._close(open_at_end=True) if self.current is not None else []


def alarms_from_scores(starts, scores, clip_len, threshold, low_threshold=None, min_frames=0):
    """Offline: window starts (n,) and scores (n,) of clip_len-frame windows -> list[Alarm]."""
    tracker = AlarmTracker(threshold, low_threshold, min_frames)
    for start, score in zip(starts, scores):
        tracker.update(int(start), int(start) + clip_len, score)
    tracker.finish()
    return tracker.alarms


def min_duration_frames(min_frames, min_seconds, fps):
    """The larger of a duration in frames and one in seconds (rounded up to whole frames at
    `fps`)."""
    return max(int(min_frames), int(math.ceil(float(min_seconds) * float(fps) - 1e-9)))
