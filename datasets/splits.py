"""Train/test splits of the three benchmarks, read from every official format.

`read_split(path, dataset)` detects the format from the file's first line:

| format         | line                                  | source                                  |
|----------------|---------------------------------------|-----------------------------------------|
| sht_train      | `01_0014,1`  (name,label)             | MIST `SH_Train_new.txt`                 |
| sht_test       | `01_0015,1,-1`  (name,label,frames)   | MIST `SH_Test_NEW.txt` (-1: mask len.)  |
| ucf_annotation | `Abuse028_x264.mp4 Abuse s1 e1 s2 e2` | UCF `Temporal_Anomaly_Annotation_New`   |
|                | `frames`                              |                                         |
| video_paths    | `Abuse/Abuse001_x264.mp4`             | UCF `Anomaly_Train.txt`                 |
| feature_list   | `01_0014_i3d.npy`,                    | RTFM / XD feature lists (`__k` = crop)  |
|                | `..._label_A__3.npy`                  |                                         |

Every video is returned once, in file order, with a canonical name (no extension, feature suffix or
crop)."""

import os
import re
from dataclasses import dataclass
from datasets.specs import dataset_spec
from utils.errors import InputError, NotFoundError


@dataclass(frozen=True)
class Video:
    """One video of a split. label: 1 abnormal, 0 normal. n_frames: None where the split does not
    say (SHT abnormal test videos take the length of their mask). category: 'Normal', the anomaly
    class (UCF 'Abuse', XD primary label code 'B1'), or '' when the split does not name it (SHT)."""

    name: str
    label: int
    n_frames: int | None = None
    category: str = ""


_VIDEO_EXT = r"\.(?:mp4|avi|mkv|mov|webm)"
_FORMATS = {  # name -> (line regex, expected format shown in errors)
    "sht_test": (
        re.compile(r"^([^,\s]+),([01]),(-1|\d+)$"),
        "`name,label,frames` (frames -1 = from mask)",
    ),
    "sht_train": (re.compile(r"^([^,\s]+),([01])$"), "`name,label`"),
    "ucf_annotation": (
        re.compile(r"^(\S+?)" + _VIDEO_EXT + r"\s+(\S+)((?:\s+-?\d+){4})\s+(\d+)$"),
        "`video.mp4<TAB>class<TAB>s1<TAB>e1<TAB>s2<TAB>e2<TAB>frames`",
    ),
    "video_paths": (re.compile(r"^(?:\S*/)?([^/\s]+)" + _VIDEO_EXT + "$"), "`Class/Video.mp4`"),
    "feature_list": (
        re.compile(r"^(?:.*/)?([^/]+?)(?:_(?:i3d|c3d))?(?:__(\d+))?\.npy$"),
        "`<name>_i3d.npy` or `<name>__<crop>.npy` (path or basename)",
    ),
}


def read_split(path, dataset, cfg_key=None):
    """Read a split file in any official format -> list[Video] in file order (crops grouped).

    cfg_key names the config key the path came from, for the error messages
    (DATA.TRAIN_SPLIT/TEST_SPLIT)."""
    dataset_spec(dataset)
    key = cfg_key or "DATA.TRAIN_SPLIT / DATA.TEST_SPLIT"
    if not os.path.isfile(path):
        raise NotFoundError(
            f"split file '{path}' does not exist: set {key} to an existing split "
            f"(the official ones are under data/{dataset}/)"
        )
    try:
        # -sig: a BOM (Windows editors) is not part of the first name
        with open(path, encoding="utf-8-sig") as f:
            lines = [(i, ln.strip()) for i, ln in enumerate(f, 1) if ln.strip()]
    except UnicodeDecodeError as err:
        raise InputError(
            f"split '{path}' is not UTF-8 text (byte {err.start}: {err.reason}); is it a split"
            f" file? set {key} to the text file of video names"
        ) from None
    if not lines:
        raise InputError(
            f"split '{path}' is empty (no video lines): point {key} at a non-empty split"
        )
    fmt = _detect_format(path, lines[0])
    rows = [_parse_line(path, i, ln, fmt) for i, ln in lines]
    videos = _group_crops(path, rows) if fmt == "feature_list" else _check_unique(path, rows)
    return [_make_video(row, fmt, dataset, path) for row in videos]


def _detect_format(path, first):
    """(line_no, line) -> format name, from the first non-empty line."""
    for fmt, (regex, _) in _FORMATS.items():
        if regex.match(first[1]):
            return fmt
    from datasets.ground_truth import UCF_SIX_COLUMNS, UCF_SIX_COLUMNS_HINT

    if UCF_SIX_COLUMNS.match(first[1]):
        raise InputError(f"{path}:{first[0]}: {UCF_SIX_COLUMNS_HINT}")
    expected = "; ".join(f"{k}: {v[1]}" for k, v in _FORMATS.items())
    raise InputError(
        f"{path}:{first[0]}: cannot tell the split format from {first[1]!r}; expected one of "
        f"{expected}"
    )


def _parse_line(path, line_no, line, fmt):
    """-> (line_no, regex groups); a line that does not match the file's format is an error."""
    regex, expected = _FORMATS[fmt]
    m = regex.match(line)
    if m is None:
        raise InputError(
            f"{path}:{line_no}: malformed line {line!r}; this file is in {fmt} format, "
            f"every line must be {expected}"
        )
    return line_no, m.groups()


def _check_unique(path, rows):
    """Raise on a video listed twice; rows are (line_no, groups) with the name first."""
    seen = {}
    for line_no, groups in rows:
        if groups[0] in seen:
            raise InputError(
                f"{path}:{line_no}: video '{groups[0]}' is listed twice (first at line "
                f"{seen[groups[0]]}); remove the duplicate line"
            )
        seen[groups[0]] = line_no
    return rows


def _group_crops(path, rows):
    """Feature-list rows (name, crop) -> one row per video, in first-appearance order."""
    _check_unique(path, [(i, (f"{name}__{crop}",)) for i, (name, crop) in rows])
    first = {}
    for line_no, (name, _) in rows:
        first.setdefault(name, (line_no, (name,)))
    return list(first.values())


def _make_video(row, fmt, dataset, path):
    line_no, groups = row
    name = groups[0]
    if fmt in ("sht_train", "sht_test"):
        label = int(groups[1])
        n_frames = int(groups[2]) if fmt == "sht_test" and groups[2] != "-1" else None
        return Video(name, label, n_frames, _category(name, label, dataset))
    if fmt == "ucf_annotation":
        cls = groups[1]
        return Video(name, int(cls != "Normal"), int(groups[3]), cls)
    label = _label_from_name(name, dataset, f"{path}:{line_no}")
    return Video(name, label, None, _category(name, label, dataset))


def _label_from_name(name, dataset, where):
    """Label of a video listed without one (feature lists, UCF paths), by its dataset's rule."""
    return dataset_spec(dataset).label_from_name(name, where)


def _category(name, label, dataset):
    """'Normal', the anomaly class, or '' where the dataset does not name it (SHT/demo)."""
    return "Normal" if label == 0 else dataset_spec(dataset).category(name)
