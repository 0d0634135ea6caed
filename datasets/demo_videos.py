"""Synthetic surveillance videos for the stage-2 demo: a fixed plaza, walking people and three
anomaly types.

`make_demo_videos(out_dir)` writes in a few seconds real .mp4 files (OpenCV 'mp4v':
opencv-python-headless writes and decodes it, the bytes are deterministic, seeking is
frame-accurate) and the ShanghaiTech-format files that the existing readers understand:

    out_dir/videos/<name>.mp4   uint8 BGR frames, 72x96 by default, 25 fps, 72..199 frames each
    out_dir/videos.txt          the video paths, relative to out_dir (input of tools/make_h5.py)
    out_dir/train.txt           `name,label`           (datasets.splits format sht_train)
    out_dir/test.txt            `name,label,frames`    (sht_test; -1 for abnormal videos: the mask
                                gives it)
    out_dir/masks/<name>.npy    uint8 (n_frames,) 0/1 for EVERY abnormal video, train and test
    out_dir/events.json         {name: [{"type", "start", "end"}]}: anomalies and look-alikes,
                                frames inclusive

Names follow the ShanghaiTech rule of datasets/splits.py: camera '01', normal videos with a 3-digit
suffix (01_001..: train, then test), abnormal ones with a 4-digit suffix (01_0001..).

Scene (one per seed): a plaza seen from above at an angle, buildings in the top rows (hiding what is
behind them), a brightness gradient with blurred-noise paving, paving lines and benches. People are
a body and a head rectangle drawn with sub-pixel (area) coverage and perspective scale; they cross
from the left/right/ bottom edges or the building doors at ~0.6 px/frame, 1-5 visible at a time
depending on the video. Anomalies (one event covering ~20-45 % of an abnormal video, or two shorter
ones; types in turn):
- runner:  a person at 4-6x walking speed wandering through the plaza;
- vehicle: a car (16x7 px) driving across the pedestrian plaza;
- fight:   two people jog in, jitter around each other, then run off.
Normal look-alikes, in any video: a jogger at 1.8-2.5x walking speed; a group of three walking
together. Mask = 1 exactly on the frames where an anomaly object shows at least MIN_VISIBLE px in
the visible area. Deterministic: the scene draws from default_rng([seed, 0]), each video from
default_rng([seed, 1, crc32(name)]), so a video does not change when the set sizes do."""

import json
import sys
import time
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from scipy.signal import lfilter
from utils.errors import ExistsError, InputError

FPS = 25
FOURCC, EXT = "mp4v", ".mp4"
LENGTHS = (72, 200)  # n_frames drawn in [72, 200): 4..12 whole 16-frame segments
WALK = (0.5, 0.7)  # walking speed, px/frame at 72x96 (scaled with the frame width)
HORIZON = 0.18  # fraction of the rows taken by buildings (people there are hidden)
PERSON = (3.0, 6.0)  # body w, h in px at 72x96, perspective scale 1
VEHICLE = (16.0, 7.0)  # car w, h in px at 72x96
MIN_VISIBLE = 0.5  # px of an object inside the visible area for it to count as visible
ANOMALY_TYPES = ("runner", "vehicle", "fight")
CLOTHES = np.array(
    [
        [40, 40, 45],
        [215, 215, 220],
        [40, 40, 150],
        [140, 70, 30],
        [50, 100, 40],
        # BGR, grey <= 76 or >= 210
        [60, 220, 250],
        [100, 40, 100],
        [70, 70, 70],
    ],
    dtype=np.float32,
)
HEADS = np.array([[50, 80, 120], [30, 30, 35], [40, 60, 90]], dtype=np.float32)  # grey 88, 31, 67
CARS = np.array(
    [[30, 30, 170], [225, 225, 225], [35, 35, 35], [150, 80, 20], [40, 210, 240]], dtype=np.float32
)


@dataclass
class Actor:
    """One moving object. track: float (n_frames, 2) (x, y) of its centre, NaN where it is not in
    the scene."""

    kind: str  # pedestrian | jogger | runner | vehicle | fighter
    track: np.ndarray
    size: tuple  # (w, h) at perspective scale 1
    colour: np.ndarray  # BGR of the body
    head: np.ndarray | None = None  # BGR of the head (people) or the windows (vehicles)
    anomaly: bool = False
    event: int | None = None  # index into VideoPlan.event_types of the event it belongs to


@dataclass
class VideoPlan:
    """Everything needed to render one video."""

    name: str
    label: int
    split: str  # train | test
    n_frames: int
    actors: list = field(default_factory=list)
    # runner | vehicle | fight | jogger | group, per event
    event_types: list = field(default_factory=list)


def make_scene(size=(72, 96), seed=0):
    """-> (background uint8 (H, W, 3) BGR, first visible row). Generated once per seed."""
    rng = np.random.default_rng([seed, 0])
    h, w = size
    top = int(round(HORIZON * h))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # people (grey <= 76 or >= 210) contrast by >= 30
    grey = 115 + 35 * (yy - top) / (h - top) + 10 * xx / w
    low = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.05 * w)
    grey += 10 * low / (low.std() + 1e-6) + rng.normal(0, 2.5, (h, w))
    grey -= 12 * ((np.round(xx) % 12 == 0) | (np.round(yy - top) % 10 == 0))  # paving lines
    bg = grey[..., None] * np.array([0.95, 1.0, 1.04], np.float32)
    x = 0
    while x < w:  # building fronts with window rows
        bw = int(rng.integers(10, 24))
        bg[:top, x : x + bw] = rng.uniform(50, 120) * np.array([1.0, 0.95, 0.9])
        bg[2 : top - 2 : 4, x + 2 : x + bw - 2 : 3] = 35
        x += bw
    for _ in range(4):  # benches and planters
        r, c = int(rng.integers(top + 4, h - 6)), int(rng.integers(2, w - 12))
        bg[r : r + 3, c : c + int(rng.integers(6, 12))] = rng.choice([[60, 110, 70], [80, 90, 110]])
    return np.clip(np.round(bg), 0, 255).astype(np.uint8), top


def _scale(size):
    """Pixels per unit at this frame size (all constants are for 72x96)."""
    return size[1] / 96.0


def _edge_point(rng, size, top, margin, sides=("left", "right", "bottom", "door")):
    """A point just outside the visible area (or behind the buildings), where objects enter and
    leave."""
    h, w = size
    side = sides[int(rng.integers(len(sides)))]
    x = {"left": -margin, "right": w + margin}.get(side, rng.uniform(4, w - 4))
    y = {"bottom": h + margin, "door": top - margin}.get(side, rng.uniform(top + 4, h - 2))
    return np.array([x, y])


def _exit_point(p, size, margin, want=0.0):
    """The point outside the visible area (left, right or bottom edge, straight from p) whose
    distance from p is closest to `want` px (0: the nearest exit)."""
    h, w = size
    options = [
        np.array([-margin, p[1]]),
        np.array([w + margin, p[1]]),
        np.array([p[0], h + margin]),
    ]
    return min(options, key=lambda q: abs(np.hypot(*(q - p)) - want))


def _interior(rng, size, top):
    h, w = size
    return np.array(
        [rng.uniform(0.1 * w, 0.9 * w), rng.uniform(top + 0.15 * (h - top), h - 0.1 * (h - top))]
    )


def _wander(rng, size, top, margin, length):
    """Polyline (P, 2) about `length` px long: an edge, random plaza waypoints that fit the budget,
    an exit."""
    path, used = [_edge_point(rng, size, top, margin, ("left", "right", "bottom"))], 0.0
    for _ in range(12):
        nxt = _interior(rng, size, top)
        step = np.hypot(*(nxt - path[-1]))
        if (
            len(path) == 1
            or used + step + np.hypot(*(_exit_point(nxt, size, margin) - nxt)) <= length
        ):
            path.append(nxt)
            used += step
    path.append(_exit_point(path[-1], size, margin, want=length - used))
    return np.array(path)


def _along(path, speed):
    """Positions (m, 2) at consecutive frames moving along polyline `path` at `speed` px/frame."""
    seg = np.hypot(*np.diff(path, axis=0).T)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    d = np.arange(0.0, arc[-1] + speed, speed).clip(max=arc[-1])
    return np.stack([np.interp(d, arc, path[:, 0]), np.interp(d, arc, path[:, 1])], axis=1)


def _place(track, t0, n_frames):
    """Track (m, 2) starting at frame t0 (may be < 0) -> (n_frames, 2), NaN outside [t0, t0 + m)."""
    out = np.full((n_frames, 2), np.nan)
    lo, hi = max(t0, 0), min(t0 + len(track), n_frames)
    if lo < hi:
        out[lo:hi] = track[lo - t0 : hi - t0]
    return out


def _bob(track, rng, amp):
    """Vertical walking bob (steps at ~2 Hz), so a person's pixels change as it walks."""
    phase = rng.uniform(0, 2 * np.pi)
    return track + np.stack(
        [np.zeros(len(track)), amp * np.sin(phase + np.arange(len(track)) * np.pi / 6)], 1
    )


def _person(rng, kind, track):
    return Actor(
        kind, track, PERSON, CLOTHES[rng.integers(len(CLOTHES))], HEADS[rng.integers(len(HEADS))]
    )


def _pedestrians(rng, size, top, n_frames, density):
    """Normal people arriving at random times (from before frame 0) so ~`density` are visible at
    once."""
    k, actors = _scale(size), []
    lead_in = int(2 * size[1] / (WALK[0] * k))
    arrivals = (
        np.flatnonzero(rng.random(n_frames + lead_in) < density * WALK[1] * k / (1.3 * size[1]))
        - lead_in
    )
    for t0 in arrivals:
        path = np.array([_edge_point(rng, size, top, 4 * k), _interior(rng, size, top)])
        path = np.vstack([path, _edge_point(rng, size, top, 4 * k)])
        track = _bob(_along(path, rng.uniform(*WALK) * k), rng, 0.3 * k)
        actors.append(_person(rng, "pedestrian", _place(track, int(t0), n_frames)))
    return actors


def _lookalikes(rng, size, top, n_frames):
    """-> [(type, actors)]: rare normal events resembling anomalies: a jogger (1.8-2.5x), a group of
    three."""
    k, events = _scale(size), []
    if rng.random() < 0.4:
        path = np.array(
            [_edge_point(rng, size, top, 4 * k, ("left", "right")), _interior(rng, size, top)]
        )
        path = np.vstack([path, _exit_point(path[-1], size, 4 * k)])
        track = _bob(_along(path, rng.uniform(*WALK) * k * rng.uniform(1.8, 2.5)), rng, 0.5 * k)
        t0 = int(rng.integers(-len(track) // 2, n_frames - len(track) // 2))
        events.append(("jogger", [_person(rng, "jogger", _place(track, t0, n_frames))]))
    if rng.random() < 0.3:
        path = np.array([_edge_point(rng, size, top, 6 * k), _edge_point(rng, size, top, 6 * k)])
        track = _along(path, rng.uniform(*WALK) * k)
        t0 = int(rng.integers(-len(track) // 2, n_frames - len(track) // 2))
        offsets = np.array([[0, 0], [3.5, 1], [-2, 2.5]]) * k
        events.append(
            (
                "group",
                [
                    _person(rng, "pedestrian", _place(_bob(track + o, rng, 0.3 * k), t0, n_frames))
                    for o in offsets
                ],
            )
        )
    return events


def _runner(rng, size, top, duration):
    k = _scale(size)
    speed = rng.uniform(*WALK) * k * rng.uniform(4.0, 6.0)
    path = _wander(rng, size, top, 4 * k, speed * duration)
    return [_person(rng, "runner", _bob(_along(path, speed), rng, 0.6 * k))]


def _vehicle(rng, size, top, duration):
    (h, w), k = size, _scale(size)
    y0 = rng.uniform(top + 0.3 * (h - top), h - 6 * k)
    path = np.array([[-10 * k, y0], [w + 10 * k, y0 + rng.uniform(-6, 6) * k]])
    if rng.random() < 0.5:
        path = path[::-1].copy()
    speed = np.clip(np.hypot(*(path[1] - path[0])) / duration, 1.2 * k, 4.0 * k)
    return [
        Actor(
            "vehicle",
            _along(path, speed),
            VEHICLE,
            CARS[rng.integers(len(CARS))],
            np.float32([50, 45, 40]),
        )
    ]


def _jitter(rng, n, step):
    """(n, 2) mean-reverting random offsets: AR(1), coefficient 0.6, innovations of std `step`
    px."""
    return lfilter([1.0], [1.0, -0.6], rng.normal(0, step, (n, 2)), axis=0)


def _fight(rng, size, top, duration):
    """Two people jog in (2.5x walking speed) from the edge nearest to their meeting point (of 6
    candidates, the one whose walking time suits `duration`), scuffle there (jitter of ~2 px/frame),
    then run off."""
    k = _scale(size)
    speed = rng.uniform(*WALK) * k * 2.5
    meets = [_interior(rng, size, top) for _ in range(6)]
    walk = [
        np.hypot(*(_exit_point(m, size, 4 * k) - m)) * (1 / speed + 1 / (1.5 * speed))
        for m in meets
    ]
    meet = meets[int(np.argmin(np.abs(np.array(walk) - 0.6 * duration)))]
    entry = _exit_point(meet, size, 4 * k)
    along_edge = (
        np.array([0.0, 1.0]) if entry[0] < 0 or entry[0] > size[1] else np.array([1.0, 0.0])
    )
    tracks = [
        _along(np.array([entry + d * 4 * k * along_edge, meet + [d * 2 * k, 0]]), speed)
        for d in (-1, 1)
    ]
    arrive = max(map(len, tracks))
    leave = np.hypot(*(entry - meet)) / (1.5 * speed)
    scuffle = max(int(duration - arrive - leave), 12)
    actors = []
    for track in tracks:
        here = track[-1] + _jitter(rng, scuffle, 1.6 * k)
        away = _along(np.array([here[-1], _exit_point(here[-1], size, 4 * k)]), 1.5 * speed)
        wait = np.full((arrive - len(track), 2), np.nan)
        actors.append(_person(rng, "fighter", np.vstack([wait, track, here, away])))
    return actors


def _anomalies(rng, size, top, n_frames, first_type):
    """-> [(type, actors)] of an abnormal video's events: one (target 20-45 % of the frames) or, in
    long videos, two (12-20 % each), placed one after the other by their real length (which can
    exceed the target), so they never overlap; an event running past the end is cut. Types cycle
    through ANOMALY_TYPES."""
    makers = {"runner": _runner, "vehicle": _vehicle, "fight": _fight}
    two = n_frames >= 160 and rng.random() < 0.5
    durations = [
        int(rng.uniform(*((0.12, 0.2) if two else (0.2, 0.45))) * n_frames) for _ in range(1 + two)
    ]
    kinds = [ANOMALY_TYPES[(first_type + i) % len(ANOMALY_TYPES)] for i in range(len(durations))]
    built = [makers[kind](rng, size, top, d) for kind, d in zip(kinds, durations)]
    lengths = [max(len(a.track) for a in actors) for actors in built]
    gap = int(rng.uniform(0.05, 0.15) * n_frames)
    slack = n_frames - sum(lengths) - gap * (len(built) - 1)
    start = int(rng.integers(int(0.05 * slack), int(0.95 * slack) + 1)) if slack > 0 else 0
    events = []
    for kind, actors, length in zip(kinds, built, lengths):
        events.append(
            (
                kind,
                [replace(a, track=_place(a.track, start, n_frames), anomaly=True) for a in actors],
            )
        )
        start += length + gap
    return events


def plan_video(name, label, split, size=(72, 96), seed=0, first_type=0):
    """-> VideoPlan of one video; its randomness is default_rng([seed, 1, crc32(name)]) alone. An
    abnormal video's events take ANOMALY_TYPES in turn from index first_type (plan_set cycles it:
    balanced types)."""
    rng = np.random.default_rng([seed, 1, zlib.crc32(name.encode())])
    top = int(round(HORIZON * size[0]))
    n_frames = int(rng.integers(*LENGTHS))
    people = _pedestrians(rng, size, top, n_frames, rng.uniform(1.0, 5.0))
    plan = VideoPlan(
        name, label, split, n_frames, [a for a in people if not np.isnan(a.track[:, 0]).all()]
    )
    events = _lookalikes(rng, size, top, n_frames)
    events += _anomalies(rng, size, top, n_frames, first_type) if label else []
    for kind, actors in events:
        actors = [a for a in actors if not np.isnan(a.track[:, 0]).all()]
        for a in actors:
            a.event = len(plan.event_types)
        plan.event_types.append(kind)
        plan.actors += actors
    return plan


def _coverage(lo, hi, start, stop):
    """Area coverage of pixels start..stop-1 by [lo, hi) -> float32 (stop - start,); the callers'
    pixels lie within floor(lo)..ceil(hi) - 1, so every value is already in [0, 1]."""
    idx = np.arange(start, stop, dtype=np.float32)
    return np.minimum(idx + 1, hi) - np.maximum(idx, lo)


def _draw(frame, x0, x1, y0, y1, colour, top):
    """Blend the rectangle [x0, x1) x [y0, y1) (sub-pixel coverage) into frame float32 (H, W, 3)
    below row `top` -> visible area in px."""
    h, w = frame.shape[:2]
    c0, c1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)), w)
    r0, r1 = max(int(np.floor(y0)), top), min(int(np.ceil(y1)), h)
    if c0 >= c1 or r0 >= r1:
        return 0.0
    alpha = np.outer(_coverage(y0, y1, r0, r1), _coverage(x0, x1, c0, c1))[..., None]
    frame[r0:r1, c0:c1] += alpha * (colour - frame[r0:r1, c0:c1])
    return float(alpha.sum())


def _draw_actor(frame, actor, t, top, k):
    """Draws actor at frame t -> its visible area in px (body and head/windows)."""
    x, y = actor.track[t]
    # perspective: nearer (lower) is bigger
    s = k * (0.7 + 0.6 * (y - top) / (frame.shape[0] - top))
    w, h = actor.size[0] * s, actor.size[1] * s
    area = _draw(frame, x - w / 2, x + w / 2, y - h / 2, y + h / 2, actor.colour, top)
    if actor.kind == "vehicle":  # windows
        area += _draw(frame, x - w / 4, x + w / 4, y - h / 2 + s, y - 0.5 * s, actor.head, top)
    else:  # head
        area += _draw(frame, x - s, x + s, y - h / 2 - 2 * s, y - h / 2, actor.head, top)
    return area


def render(plan, background, top, anomalies=True):
    """-> (frames uint8 (n, H, W, 3) BGR, visible area float (n_actors, n) in px). anomalies=False
    leaves the anomaly actors out (their rows stay 0): the same video as if nothing abnormal had
    happened."""
    k = _scale(background.shape)
    frames = np.repeat(background[None].astype(np.float32), plan.n_frames, axis=0)
    # far first
    order = sorted(range(len(plan.actors)), key=lambda i: np.nanmean(plan.actors[i].track[:, 1]))
    area = np.zeros((len(plan.actors), plan.n_frames))
    for i in order:
        actor = plan.actors[i]
        if actor.anomaly and not anomalies:
            continue
        for t in np.flatnonzero(~np.isnan(actor.track[:, 0])):
            area[i, t] = _draw_actor(frames[t], actor, t, top, k)
    return np.clip(np.round(frames), 0, 255).astype(np.uint8), area


def _shown(plan, area, pick):
    """-> bool (n_frames,): some actor with pick(actor) shows at least MIN_VISIBLE px."""
    return (area[[i for i, a in enumerate(plan.actors) if pick(a)]] >= MIN_VISIBLE).any(axis=0)


def anomaly_mask(plan, area):
    """-> uint8 (n_frames,): 1 exactly where an anomaly actor is visible."""
    return _shown(plan, area, lambda a: a.anomaly).astype(np.uint8)


def event_frames(plan, area):
    """-> [{"type", "start", "end"}] (first/last visible frame) of every event that shows at all."""
    seen = [
        np.flatnonzero(_shown(plan, area, lambda a, e=e: a.event == e))
        for e in range(len(plan.event_types))
    ]
    return [
        {"type": kind, "start": int(f[0]), "end": int(f[-1])}
        for kind, f in zip(plan.event_types, seen)
        if f.size
    ]


def plan_set(
    n_train_normal, n_train_abnormal, n_test_normal, n_test_abnormal, size=(72, 96), seed=0
):
    """-> list[VideoPlan]: train normal, train abnormal, test normal, test abnormal (numbered on
    across splits)."""
    specs = [(f"01_{i + 1:03d}", 0, "train") for i in range(n_train_normal)]
    specs += [(f"01_{i + 1:04d}", 1, "train") for i in range(n_train_abnormal)]
    specs += [(f"01_{n_train_normal + i + 1:03d}", 0, "test") for i in range(n_test_normal)]
    specs += [(f"01_{n_train_abnormal + i + 1:04d}", 1, "test") for i in range(n_test_abnormal)]
    # abnormal video 01_000j starts the type cycle at j - 1: balanced types, still a function of the
    # name
    return [
        plan_video(name, label, split, size, seed, int(name[3:]) - 1)
        for name, label, split in specs
    ]


def write_video(path, frames, fps=FPS):
    """frames uint8 (n, H, W, 3) BGR -> an 'mp4v' .mp4 at path."""
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(
            f"OpenCV cannot write {FOURCC!r} video {path}: this OpenCV build lacks the FFmpeg"
            " encoder"
        )
    for frame in frames:
        writer.write(frame)
    writer.release()


def _check_args(counts, size):
    if min(counts) < 0 or counts[1] + counts[3] > 9999 or counts[0] + counts[2] > 999:
        raise InputError(
            f"video counts {counts} must be >= 0, at most 999 normal and 9999 abnormal videos "
            "(ShanghaiTech-style names)"
        )
    if len(size) != 2 or min(size) < 32 or size[0] % 2 or size[1] % 2:
        raise InputError(
            f"size={tuple(size)} must be (H, W), both even (the mp4v encoder drops an odd last "
            "column) and >= 32, e.g. (72, 96)"
        )


def _write_lists(out, plans):
    """train.txt, test.txt (ShanghaiTech formats), then videos.txt: written last, it marks a
    finished set."""
    train = [f"{p.name},{p.label}" for p in plans if p.split == "train"]
    test = [
        f"{p.name},{p.label},{-1 if p.label else p.n_frames}" for p in plans if p.split == "test"
    ]
    (out / "train.txt").write_text("\n".join(train) + "\n")
    (out / "test.txt").write_text("\n".join(test) + "\n")
    (out / "videos.txt").write_text("".join(f"videos/{p.name}{EXT}\n" for p in plans))


def make_demo_videos(
    out_dir,
    n_train_normal=24,
    n_train_abnormal=16,
    n_test_normal=10,
    n_test_abnormal=10,
    size=(72, 96),
    seed=0,
    force=False,
):
    """Writes the set described in the module docstring into out_dir -> summary dict: out_dir,
    video_list, train_split, test_split, mask_dir, n_videos, n_frames, anomalous_frames (fraction in
    abnormal videos), seconds, mb. An existing set is refused unless force=True (files are then
    overwritten)."""
    start, out = time.perf_counter(), Path(out_dir)
    counts = (n_train_normal, n_train_abnormal, n_test_normal, n_test_abnormal)
    _check_args(counts, size)
    if (out / "videos.txt").exists() and not force:
        raise ExistsError(
            f"{out} already holds a generated set (videos.txt); pass force=True to overwrite it"
        )
    background, top = make_scene(tuple(size), seed)
    plans = plan_set(*counts, tuple(size), seed)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    events, masks, nbytes = {}, [], 0
    for plan in plans:
        frames, area = render(plan, background, top)
        write_video(out / "videos" / f"{plan.name}{EXT}", frames)
        nbytes += (out / "videos" / f"{plan.name}{EXT}").stat().st_size
        events[plan.name] = event_frames(plan, area)
        if plan.label:
            masks.append(anomaly_mask(plan, area))
            np.save(out / "masks" / f"{plan.name}.npy", masks[-1])
    (out / "events.json").write_text(json.dumps(events, indent=1))
    _write_lists(out, plans)
    return {
        "out_dir": str(out),
        "video_list": str(out / "videos.txt"),
        "train_split": str(out / "train.txt"),
        "test_split": str(out / "test.txt"),
        "mask_dir": str(out / "masks"),
        "n_videos": len(plans),
        "n_frames": sum(p.n_frames for p in plans),
        "anomalous_frames": round(float(np.concatenate(masks).mean()), 3) if masks else 0.0,
        "seconds": round(time.perf_counter() - start, 2),
        "mb": round(nbytes / 1e6, 2),
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m datasets.demo_videos OUT_DIR")
    print(make_demo_videos(sys.argv[1]))
