"""Alarm thresholds calibrated on normal videos: for each target false alarm rate (FAR), the
threshold that keeps the share of normal frames scoring above it within the target, and what it
detects (tools/test.py).

Definitions (frames after the clip-to-frame expansion of utils/evaluation.py, strict '>' as the FARs
of utils/metrics.py):
  threshold t   the smallest score such that #(normal frames with score > t) / #(normal frames) <=
                target. With the normal scores sorted in decreasing order s_1 >= s_2 >= ... >= s_n
                and k the largest integer with k / n <= target, t = s_{k+1}: every lower value lets
                >= k + 1 frames through.
  far           the FAR t achieves on the normal frames (<= target; lower when scores tie at t).
  frame_recall  share of anomalous frames with score > t.
  event_recall  share of anomaly events (maximal runs of anomalous frames within one video) with at
                least one frame scoring > t.
"Normal frames" are the frames of normal videos (the paper's FAR); a split without normal videos
falls back to the negative frames of all videos, which the result names in `reference`.

`tools/infer.py --calibration FILE --far 0.001` reads the threshold back with `select_threshold`.
"""

import json
import warnings

import numpy as np

from utils.evaluation import expand_to_frames
from utils.errors import InputError


def allowed_false_alarms(n, target):
    """-> the largest k in [0, n] with k / n <= target (checked in the float arithmetic the FAR
    uses)."""
    if not 0.0 <= target <= 1.0:
        raise InputError(
            f"target false alarm rate {target} must be in [0, 1] (e.g. 0.001 for 0.1 %)"
        )
    k = min(int(np.floor(target * n)), n)
    while k < n and (k + 1) / n <= target:
        k += 1
    while k > 0 and k / n > target:
        k -= 1
    return k


def threshold_for_far(normal_scores, target):
    """normal_scores (N,) -> (threshold, achieved FAR): the smallest t with mean(normal_scores > t)
    <= target."""
    s = np.sort(np.asarray(normal_scores, dtype=np.float64))[::-1]
    if s.size == 0:
        raise InputError("no normal frames to calibrate a threshold on")
    t = float(s[min(allowed_false_alarms(s.size, target), s.size - 1)])
    return t, float(np.count_nonzero(s > t) / s.size)


def event_ids(labels, offsets):
    """labels (F,) 0/1, offsets (V+1,) video boundaries -> (ids (F,) int64, -1 off events,
    n_events).

    An event is a maximal run of anomalous frames inside one video (runs never cross a video
    boundary)."""
    y = np.asarray(labels) > 0
    starts = y.copy()
    starts[1:] &= ~y[:-1]
    first = np.asarray(offsets[:-1], dtype=np.int64)
    first = first[first < len(y)]
    starts[first] = y[first]
    ids = np.cumsum(starts) - 1
    ids[~y] = -1
    return ids, int(starts.sum())


def calibrate(scores, labels, offsets, normal, fars):
    """Frame arrays -> calibration dict (module docstring).

    scores (F,), labels (F,) 0/1, offsets (V+1,) video boundaries, normal (F,) bool: frames of
    normal videos; fars: target FARs. Keys: reference, n_reference_frames, n_anomalous_frames,
    n_events, thresholds (one dict per target: target_far, threshold, far, false_alarm_frames,
    frame_recall, events_detected, event_recall)."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels) > 0
    normal = np.asarray(normal, dtype=bool)
    reference = "normal_videos" if normal.any() else "negative_frames"
    ref_scores = s[normal] if normal.any() else s[~y]
    ids, n_events = event_ids(y, offsets)
    rows = []
    for target in fars:
        t, far = threshold_for_far(ref_scores, float(target))
        hit = y & (s > t)
        detected = int(np.unique(ids[hit]).size)
        rows.append(
            {
                "target_far": float(target),
                "threshold": t,
                "far": far,
                "false_alarm_frames": int(np.count_nonzero(ref_scores > t)),
                "frame_recall": float(hit.sum() / y.sum()) if y.any() else None,
                "events_detected": detected,
                "event_recall": detected / n_events if n_events else None,
            }
        )
    return {
        "reference": reference,
        "n_reference_frames": int(ref_scores.size),
        "n_anomalous_frames": int(y.sum()),
        "n_events": n_events,
        "thresholds": rows,
    }


def calibrate_split(clip_scores, labels, videos, clip_len, fars, max_pad_clips=0):
    """{video: clip scores}, {video: frame labels}, list[Video] -> calibrate() of the split's
    frames."""
    names = [v.name for v in videos]
    with warnings.catch_warnings():  # evaluate() already warned about any GT padding
        warnings.simplefilter("ignore")
        s, y, offsets = expand_to_frames(clip_scores, labels, names, clip_len, max_pad_clips)
    normal = np.repeat(np.array([v.label == 0 for v in videos], dtype=bool), np.diff(offsets))
    return calibrate(s, y, offsets, normal, fars)


def format_table(calibration):
    """-> printable lines: one per target FAR."""
    ref = calibration["reference"].replace("_", " ")
    lines = [
        (
            f"calibration on {calibration['n_reference_frames']} frames of {ref};"
            f" {calibration['n_anomalous_frames']} anomalous frames in {calibration['n_events']}"
            " events"
        ),
        f"  {'target FAR':>10}  {'threshold':>10}  {'FAR':>8}  {'frames':>8}  {'events':>12}",
    ]
    for r in calibration["thresholds"]:
        frames = "n/a" if r["frame_recall"] is None else f"{100 * r['frame_recall']:.2f}%"
        events = (
            "n/a"
            if r["event_recall"] is None
            else f"{r['events_detected']}/{calibration['n_events']} {100 * r['event_recall']:.0f}%"
        )
        lines.append(
            f"  {100 * r['target_far']:9.3f}%  {r['threshold']:10.6f}  {100 * r['far']:7.3f}%  "
            f"{frames:>8}  {events:>12}"
        )
    return lines


def select_threshold(path, far):
    """Calibration file written by tools/test.py, target FAR -> its row (dict with 'threshold')."""
    try:
        calibration = json.loads(open(path).read())
        rows = calibration["thresholds"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(
            f"{path} is not a calibration file written by tools/test.py "
            f"(test_<name>_calibration.json): {err}"
        ) from None
    for row in rows:
        if np.isclose(row["target_far"], far, rtol=1e-9, atol=0.0):
            return row
    available = ", ".join(f"{r['target_far']:g}" for r in rows)
    raise InputError(
        f"{path} has no threshold for FAR {far:g}; it has {available} (add the target to "
        "TEST.CALIBRATION_FARS and rerun tools/test.py)"
    )
