"""A dataset of your own: one manifest file that describes every video (docs/own_data.md).

A manifest is a CSV file with a header row, or a JSON Lines file (`.jsonl`, one object per line),
with one row per video and these fields:

| field         | required | meaning                                                              |
|---------------|----------|----------------------------------------------------------------------|
| `name`        | or path  | the video's name, unique (frames h5 / feature keys use it)           |
| `path`        | or name  | the video file, relative to the manifest's folder; name = its stem   |
| `label`       | yes      | 1: the video contains an anomaly, 0: it does not                     |
| `split`       | yes      | `train`, `val` (held out of training, for selection and thresholds) |
|               |          | or `test`                                                            |
| `category`    | no       | the anomaly class, for per-class figures (`Normal` for label 0)      |
| `frames`      | no       | the frame count (else read from `path`'s header when needed)         |
| `fps`         | no       | frames per second (else read from `path`), for `intervals_s`        |
| `intervals`   | no       | anomalous frames `start-end;start-end` (end exclusive); JSON Lines:  |
|               |          | `[[start, end], ...]`                                                |
| `intervals_s` | no       | the same in seconds (frame = round(seconds x fps))                   |
| `mask`        | no       | a `.npy` file of 0/1 per frame, relative to the manifest's folder    |

Weakly-supervised training needs only the video labels. A test video needs its ground truth: an
abnormal one its intervals (frames or seconds) or mask; a normal one its frame count (`frames`,
`path` or a mask). Train and val videos with intervals or a mask give frame masks too (the
pseudo-labels' quality, the validation metric). Everything is checked when the manifest is read,
and an error names the file, the line and the field.
"""

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets.ground_truth import intervals_to_mask, load_mask
from datasets.splits import Video
from utils.errors import InputError, NotFoundError

FIELDS = (
    "name",
    "path",
    "label",
    "split",
    "category",
    "frames",
    "fps",
    "intervals",
    "intervals_s",
    "mask",
)
SPLITS = ("train", "val", "test")
SUFFIXES = (".csv", ".jsonl")


@dataclass(frozen=True)
class Entry:
    """One row of a manifest, checked. intervals: ((start, end), ...) in frames, end exclusive."""

    name: str
    label: int
    split: str
    line: int
    category: str = ""
    path: Path | None = None
    frames: int | None = None
    intervals: tuple | None = None
    mask: Path | None = None

    def video(self):
        return Video(self.name, self.label, self.frames, self.category)

    def has_truth(self):
        """True when the row says which frames are anomalous (or, for a normal video, how many
        frames it has)."""
        if self.mask is not None or self.intervals is not None:
            return True
        return self.label == 0 and (self.frames is not None or self.path is not None)


class Manifest:
    """The checked rows of a manifest file, by split."""

    def __init__(self, path, entries):
        self.path, self.entries = Path(path), entries

    def videos(self, split):
        """-> [Video] of `split` ('train', 'val' or 'test'), in file order."""
        return [e.video() for e in self.entries if e.split == split]

    def paths(self):
        """-> the video files of every row that has one (for tools/make_h5.py)."""
        return [e.path for e in self.entries if e.path is not None]

    def frame_labels(self, names):
        """{name: uint8 (n_frames,)} ground truth of `names` (videos whose row has one)."""
        by_name = {e.name: e for e in self.entries}
        return {n: _truth(self.path, by_name[n]) for n in names if by_name[n].has_truth()}


def is_manifest(path):
    """True for a .csv / .jsonl file (the video lists of tools/make_h5.py are .txt)."""
    return Path(path).suffix.lower() in SUFFIXES and Path(path).is_file()


def read_manifest(path):
    """A manifest file -> Manifest; InputError naming the file, line and field on any fault."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(
            f"manifest {path} does not exist: set DATA.MANIFEST to a .csv or "
            ".jsonl file (docs/own_data.md)"
        )
    if path.suffix.lower() not in SUFFIXES:
        raise InputError(f"manifest {path}: use a .csv (with a header row) or a .jsonl file")
    rows = _read_jsonl(path) if path.suffix.lower() == ".jsonl" else _read_csv(path)
    if not rows:
        raise InputError(f"manifest {path} lists no video")
    entries = [_entry(path, line, row) for line, row in rows]
    _check_unique(path, entries)
    _check_splits(path, entries)
    return Manifest(path, entries)


def _read_csv(path):
    """-> [(line number, {field: text})]; blank lines and lines starting with '#' are skipped."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        lines = [
            (n, text)
            for n, text in enumerate(f, 1)
            if text.strip() and not text.lstrip().startswith("#")
        ]
    if not lines:
        return []
    header = next(csv.reader([lines[0][1]]))
    header = [h.strip() for h in header]
    _check_fields(path, lines[0][0], header)
    rows = []
    for n, text in lines[1:]:
        values = next(csv.reader([text]))
        if len(values) != len(header):
            raise InputError(
                f"{path}:{n}: {len(values)} values for the {len(header)} columns "
                f"{header}; quote values that hold commas"
            )
        rows.append((n, {h: v.strip() for h, v in zip(header, values) if v.strip() != ""}))
    return rows


def _read_jsonl(path):
    rows = []
    with open(path, encoding="utf-8-sig") as f:
        for n, text in enumerate(f, 1):
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as err:
                raise InputError(f"{path}:{n}: not a JSON object ({err.msg})") from None
            if not isinstance(row, dict):
                raise InputError(
                    f"{path}:{n}: each line must be a JSON object, got {type(row).__name__}"
                )
            _check_fields(path, n, list(row))
            rows.append((n, {k: v for k, v in row.items() if v not in (None, "")}))
    return rows


def _check_fields(path, line, fields):
    unknown = [f for f in fields if f not in FIELDS]
    if unknown:
        raise InputError(f"{path}:{line}: unknown field(s) {unknown}; the fields are {FIELDS}")
    if "name" not in fields and "path" not in fields:
        raise InputError(f"{path}:{line}: every video needs a `name` or a `path` field")
    for required in ("label", "split"):
        if required not in fields:
            raise InputError(f"{path}:{line}: the `{required}` field is missing")


def _entry(path, line, row):
    """(manifest, line number, {field: value}) -> Entry, every field checked."""
    where = f"{path}:{line}"
    video_path = _file(path, where, row, "path")
    name = str(row.get("name") or (video_path.stem if video_path else ""))
    if not name:
        raise InputError(f"{where}: `name` is empty")
    # frames h5 and feature files key a video by its file's stem (tools/make_h5.py)
    if video_path is not None and name != video_path.stem:
        raise InputError(
            f"{where}: name '{name}' differs from its file's name '{video_path.stem}': frames and "
            "features are keyed by the file name; drop `name` or rename the file"
        )
    label = _int(where, row, "label")
    if label not in (0, 1):
        raise InputError(f"{where}: label {row['label']!r} of '{name}' must be 0 or 1")
    split = str(row.get("split", "")).strip().lower()
    if split not in SPLITS:
        raise InputError(f"{where}: split {row.get('split')!r} of '{name}' must be one of {SPLITS}")
    frames = _int(where, row, "frames") if "frames" in row else None
    if frames is not None and frames < 1:
        raise InputError(f"{where}: frames {frames} of '{name}' must be positive")
    category = str(row.get("category", "")) or ("Normal" if label == 0 else "")
    entry = Entry(
        name,
        label,
        split,
        line,
        category,
        video_path,
        frames,
        None,
        _file(path, where, row, "mask"),
    )
    intervals = _intervals(where, row, entry)
    if intervals is not None:
        frames = frames or _video_info(where, entry)[0]
        _check_intervals(where, name, intervals, frames)
    return Entry(name, label, split, line, category, video_path, frames, intervals, entry.mask)


def _int(where, row, field):
    value = row[field]
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number == int(number)):
        raise InputError(f"{where}: {field} {value!r} is not a whole number")
    return int(number)


def _file(path, where, row, field):
    """-> the file named by `field` (relative to the manifest's folder), which must exist."""
    if field not in row:
        return None
    file = Path(str(row[field])).expanduser()
    file = file if file.is_absolute() else path.resolve().parent / file
    if not file.is_file():
        raise NotFoundError(
            f"{where}: {field} {row[field]!r} does not exist ({file}); paths are "
            "relative to the manifest's folder"
        )
    return file


def _intervals(where, row, entry):
    """-> ((start, end), ...) in frames from `intervals` or `intervals_s`; None without either."""
    if "intervals" in row and "intervals_s" in row:
        raise InputError(f"{where}: give `intervals` (frames) or `intervals_s` (seconds), not both")
    field = "intervals" if "intervals" in row else "intervals_s" if "intervals_s" in row else None
    if field is None:
        return None
    if entry.mask is not None:
        raise InputError(f"{where}: give `{field}` or `mask` for '{entry.name}', not both")
    pairs = _pairs(where, field, row[field])
    if entry.label == 0 and pairs:
        raise InputError(
            f"{where}: '{entry.name}' is labelled 0 (normal) but has anomalous "
            f"{field}; set its label to 1 or drop the intervals"
        )
    if field == "intervals_s":
        fps = _fps(where, row) if "fps" in row else _video_info(where, entry)[1]
        pairs = [(round(s * fps), round(e * fps)) for s, e in pairs]
    if any(s != int(s) or e != int(e) for s, e in pairs):
        raise InputError(
            f"{where}: intervals of '{entry.name}' must be whole frame numbers; use "
            "intervals_s for seconds"
        )
    return tuple((int(s), int(e)) for s, e in pairs)


def _fps(where, row):
    try:
        fps = float(row["fps"])
    except (TypeError, ValueError):
        fps = math.nan
    if not (math.isfinite(fps) and fps > 0):
        raise InputError(f"{where}: fps {row['fps']!r} must be a positive number")
    return fps


def _pairs(where, field, value):
    """'10-20;30-45' or [[10, 20], [30, 45]] -> [(10.0, 20.0), (30.0, 45.0)]."""
    try:
        if isinstance(value, str):
            parts = [p.split("-") for p in value.replace(" ", "").split(";") if p]
            pairs = [(float(a), float(b)) for a, b in parts]
        else:
            pairs = [(float(a), float(b)) for a, b in value]
    except (TypeError, ValueError):
        hint = "start-end pairs separated by ';' (CSV: 10-20;30-45) or a list of pairs (JSON)"
        raise InputError(f"{where}: {field} {value!r}: write {hint}") from None
    return pairs


def _check_intervals(where, name, intervals, frames):
    ordered = sorted(intervals)
    for start, end in ordered:
        if not 0 <= start < end <= frames:
            raise InputError(
                f"{where}: interval [{start}, {end}) of '{name}' is outside its "
                f"{frames} frames or empty (start < end <= frames, end exclusive)"
            )
    for (s0, e0), (s1, e1) in zip(ordered, ordered[1:]):
        if s1 < e0:
            raise InputError(
                f"{where}: intervals [{s0}, {e0}) and [{s1}, {e1}) of '{name}' overlap; merge them"
            )


def _video_info(where, entry):
    """-> (frame count, fps) from the header of the row's video file."""
    if entry.path is None:
        raise InputError(
            f"{where}: '{entry.name}' has intervals but neither `frames` (and `fps` "
            "for seconds) nor a `path` to read them from"
        )
    from utils.video import probe_video

    n_frames, _, _, fps = probe_video(entry.path)
    if fps <= 0:
        raise InputError(f"{where}: {entry.path} does not say its frame rate: add an `fps` field")
    return entry.frames or n_frames, fps


def _check_unique(path, entries):
    seen = {}
    for e in entries:
        if e.name in seen:
            raise InputError(
                f"{path}:{e.line}: video '{e.name}' is listed twice (also on line "
                f"{seen[e.name]}); names must be unique"
            )
        seen[e.name] = e.line


def _check_splits(path, entries):
    """A training set with both labels and a test set whose videos all have ground truth."""
    train = [e for e in entries if e.split == "train"]
    if train and not any(e.label == 1 for e in train):
        raise InputError(
            f"manifest {path}: no abnormal (label 1) training video; weakly-"
            "supervised training needs abnormal and normal videos"
        )
    if train and not any(e.label == 0 for e in train):
        raise InputError(f"manifest {path}: no normal (label 0) training video")
    for e in entries:
        if e.split == "test" and not e.has_truth():
            need = (
                "its anomalous `intervals`, `intervals_s` or a `mask`"
                if e.label
                else "its `frames`, a `path` or a `mask`"
            )
            raise InputError(
                f"{path}:{e.line}: test video '{e.name}' has no ground truth: give {need}"
            )


def _truth(path, entry):
    """Entry -> uint8 (n_frames,) frame labels."""
    if entry.mask is not None:
        mask = load_mask(entry.mask)
        if entry.frames is not None and len(mask) != entry.frames:
            raise InputError(
                f"{path}:{entry.line}: mask {entry.mask} has {len(mask)} frames, "
                f"but frames says {entry.frames}"
            )
        return mask
    frames = entry.frames
    if frames is None:
        frames = _video_info(f"{path}:{entry.line}", entry)[0]
    return intervals_to_mask(frames, entry.intervals or np.zeros((0, 2), np.int64))
