"""Per-frame 0/1 ground truth of test videos, built as the official evaluation builds it
(docs/REFERENCE.md §4.6).

Formats (GROUND_TRUTHS keys; each dataset's spec in datasets/specs.py names its own):
- masks (shanghaitech / demo): abnormal video -> `mask_dir/<name>.npy` (uint8 0/1, one per frame);
  normal video -> zeros(n_frames), n_frames from the test txt (`name,label,frames`).
- ucf_annotation (ucf_crime): `Temporal_Anomaly_Annotation_New.txt`; zeros(frames) with [s1, e1)
  and [s2, e2) set to 1, end exclusive and clipped to the video (5 official rows end past
  `frames`); -1 = no segment.
- xd_intervals (xd_violence): `test_gt_intervals.json` = {video: {"frames": N, "segments":
  [[start, end), ...]}}.

The full-length GT is returned; `utils.evaluation.expand_to_frames` truncates it to whole clips.
"""

import json
import os
import re

import numpy as np

from datasets.specs import dataset_spec
from utils.errors import InputError, MissingKeyError, NotFoundError
from utils.npy_files import load_npy


def frame_labels(videos, dataset, mask_dir=None, annotation=None):
    """videos: list[Video] -> {name: uint8 (n_frames,) 0/1}, read as the dataset's spec says.

    mask_dir: folder of `<name>.npy` masks (shanghaitech/demo). annotation: the UCF temporal
    annotation txt or the XD `test_gt_intervals.json`."""
    spec = dataset_spec(dataset)
    return GROUND_TRUTHS[spec.ground_truth](videos, dataset, mask_dir, annotation)


def _mask_truth(videos, dataset, mask_dir, annotation):
    """Per-video frame masks of the abnormal videos, zeros for the normal ones."""
    return {v.name: _sht_labels(v, mask_dir) for v in videos}


def _interval_truth(read_table):
    """-> a ground-truth reader of `annotation` tables {video: (frames, [(start, end), ...])}."""

    def read(videos, dataset, mask_dir, annotation):
        if annotation is None:
            raise InputError(
                f"{dataset} ground truth needs annotation= (data/ucf_crime/"
                "Temporal_Anomaly_Annotation_New.txt or "
                "data/xd_violence/test_gt_intervals.json)"
            )
        table = read_table(annotation)
        return {v.name: _interval_labels(v, table, annotation) for v in videos}

    return read


def _sht_labels(video, mask_dir):
    """Abnormal -> its mask; normal -> zeros(n_frames) (docs/REFERENCE.md §1.6)."""
    if video.label == 1:
        if mask_dir is None:
            raise InputError(
                f"abnormal video '{video.name}' needs its frame mask: pass mask_dir= "
                "(e.g. data/shanghaitech/test_frame_mask)"
            )
        mask = load_mask(os.path.join(mask_dir, f"{video.name}.npy"))
        _check_length(video, len(mask), os.path.join(mask_dir, f"{video.name}.npy"))
        return mask
    if video.n_frames is None:
        raise InputError(
            f"normal video '{video.name}' has no frame count, so its all-zero GT has no length: "
            "read the test split from the `name,label,frames` txt (SH_Test_NEW.txt), "
            "not from a feature list"
        )
    return np.zeros(video.n_frames, dtype=np.uint8)


def load_mask(path):
    """Untrusted `.npy` frame mask -> uint8 (n_frames,) of 0/1; never unpickles."""
    if not os.path.isfile(path):
        raise NotFoundError(
            f"frame mask '{path}' does not exist: every abnormal test video needs "
            "<mask_dir>/<name>.npy; check mask_dir and the video name"
        )
    mask = load_npy(path)  # pickles and sizes beyond the file refused with the file named
    if mask.ndim != 1 or not np.isin(mask, (0, 1)).all():
        raise InputError(
            f"frame mask '{path}' must be a 1-D array of 0/1 (one per frame), got shape "
            f"{mask.shape} with values {np.unique(mask)[:5]}; save it as a 1-D uint8 0/1 array"
        )
    return mask.astype(np.uint8)


def _check_length(video, n, source):
    if video.n_frames is not None and video.n_frames != n:
        raise InputError(
            f"video '{video.name}': the split says {video.n_frames} frames but {source} has {n}; "
            "fix the split's frame count or the annotation"
        )


def _read_ucf_annotation(path):
    """UCF temporal annotation txt -> {name: (n_frames, [(start, end), ...])}."""
    _check_file(
        path, "the UCF temporal annotation (data/ucf_crime/Temporal_Anomaly_Annotation_New.txt)"
    )
    table = {}
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                name, n, segs = _parse_ucf_row(path, line_no, line)
                table[name] = (n, segs)
    return table


# the official Temporal_Anomaly_Annotation.txt: `video.mp4 class s1 e1 s2 e2`, no frame count
UCF_SIX_COLUMNS = re.compile(r"^\S+\.(?:mp4|avi)\s+\S+(?:\s+-?\d+){4}\s*$")
UCF_SIX_COLUMNS_HINT = (
    "this is the official 6-column Temporal_Anomaly_Annotation.txt, which has no frame counts: use "
    "the shipped data/ucf_crime/Temporal_Anomaly_Annotation_New.txt (the same rows with each "
    "video's frame count as a 7th column)"
)


def _parse_ucf_row(path, line_no, line):
    """`video.mp4 class s1 e1 s2 e2 frames` -> (name, frames, segments up to the first -1)."""
    if UCF_SIX_COLUMNS.match(line):
        raise InputError(f"{path}:{line_no}: {UCF_SIX_COLUMNS_HINT}")
    parts = line.split()
    if len(parts) != 7 or not all(re.fullmatch(r"-?\d+", x) for x in parts[2:]):
        raise InputError(
            f"{path}:{line_no}: malformed line {line.strip()!r}; expected "
            "`video.mp4<TAB>class<TAB>s1<TAB>e1<TAB>s2<TAB>e2<TAB>frames` (-1 = no segment)"
        )
    name, values = os.path.splitext(parts[0])[0], [int(x) for x in parts[2:]]
    bounds = values[:4]
    # official read_testing_txt keeps the s/e values up to the first -1
    bounds = bounds[: bounds.index(-1)] if -1 in bounds else bounds
    return name, values[4], list(zip(bounds[0::2], bounds[1::2]))


def _read_xd_intervals(path):
    """XD `test_gt_intervals.json` -> {name: (n_frames, [(start, end), ...])}."""
    _check_file(path, "the XD-Violence GT (data/xd_violence/test_gt_intervals.json)")
    with open(path) as f:
        raw = json.load(f)
    try:
        return {
            name: (int(v["frames"]), [tuple(s) for s in v["segments"]]) for name, v in raw.items()
        }
    except (KeyError, TypeError) as e:
        raise InputError(
            f'{path}: every entry must be {{"frames": N, "segments": [[start, end], ...]}} '
            f"({type(e).__name__}: {e})"
        ) from None


def _check_file(path, what):
    if not os.path.isfile(path):
        raise NotFoundError(
            f"annotation file '{path}' does not exist: pass annotation= pointing at {what}"
        )


def _interval_labels(video, table, path):
    """(n_frames, segments) row of one video -> uint8 (n_frames,), end exclusive, clipped to the
    video."""
    if video.name not in table:
        raise MissingKeyError(
            f"video '{video.name}' has no row in {path} (names there look like"
            f" '{next(iter(table), '')}'); check that the split and the annotation are of one"
            " dataset"
        )
    n, segments = table[video.name]
    _check_length(video, n, path)
    return intervals_to_mask(n, segments)


def intervals_to_mask(n_frames, segments):
    """n_frames, [(start, end), ...] -> uint8 (n_frames,) with [start, min(end, n_frames)) set to
    1."""
    seg = np.clip(np.asarray(segments, dtype=np.int64).reshape(-1, 2), 0, n_frames)
    # +1 at each start and -1 at each end; a positive running sum marks frames inside a segment
    edges = np.zeros(n_frames + 1, dtype=np.int64)
    np.add.at(edges, seg[:, 0], 1)
    np.add.at(edges, seg[:, 1], -1)
    return (np.cumsum(edges)[:n_frames] > 0).astype(np.uint8)


# DatasetSpec.ground_truth -> (videos, dataset, mask_dir, annotation) -> {name: uint8 (n_frames,)}
GROUND_TRUTHS = {
    "masks": _mask_truth,
    "ucf_annotation": _interval_truth(_read_ucf_annotation),
    "xd_intervals": _interval_truth(_read_xd_intervals),
}
