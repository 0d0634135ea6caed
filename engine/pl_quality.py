"""Pseudo-label quality (paper Table 7): frame AUC of pseudo-labels on the abnormal TRAINING videos.

PL_FILE is any pseudo-label file (ours .npz/.npy or the authors' pickled .npy) or a stage-1 run
folder (its pseudo_labels.npz, and train_scores.npz = the generator's scores before refinement).
Each value is repeated clip-len times against the per-frame masks of the split's abnormal videos
(default: the 63 masked ShanghaiTech training videos); frames past the last whole clip are dropped,
as in the test protocol. The authors' shipped files give 0.7299 (I3D) and 0.6990 (C3D) pooled frame
AUC by this measure.
"""

import json
from pathlib import Path

import numpy as np

from datasets.ground_truth import load_mask
from datasets.splits import read_split
from utils.config import REPO_ROOT, resolve_input_path
from utils.errors import InputError, NotFoundError
from utils.evaluation import expand_to_frames
from utils.metrics import frame_auc
from utils.pseudo_labels import load_score_dict, pseudo_label_auc

DEFAULT_MASKS = REPO_ROOT / "data" / "shanghaitech" / "test_frame_mask"
DEFAULT_SPLIT = REPO_ROOT / "data" / "shanghaitech" / "SH_Train_new.txt"
PAPER_TABLE7 = (
    "paper Table 7 (ShanghaiTech): C3D 58.66 -> 67.14, I3D 63.63 -> 73.37 (before -> "
    "after refinement)"
)


def resolve_inputs(pl_file, raw=None, masks=None, split=None, dataset="shanghaitech"):
    """-> (pl path, raw path or None, masks dir, split file, dataset): a run folder supplies its own
    defaults."""
    source = Path(pl_file)
    if source.is_dir():
        run_cfg = _run_config(source)
        scores = source / "train_scores.npz"
        raw = raw or (str(scores) if scores.is_file() else None)
        masks = masks or run_cfg.get("TRAIN_MASK_DIR") or None
        split, dataset = split or run_cfg.get("TRAIN_SPLIT"), run_cfg.get("DATASET", dataset)
        source = source / "pseudo_labels.npz"
    masks = Path(resolve_input_path(str(masks))) if masks else DEFAULT_MASKS
    split = Path(resolve_input_path(str(split))) if split else DEFAULT_SPLIT
    if not masks.is_dir():
        raise NotFoundError(
            f"mask folder {masks} does not exist: pass --masks DIR (one "
            "<video>.npy per abnormal video)"
        )
    return source, (Path(raw) if raw else None), masks, split, dataset


def _run_config(run_dir):
    """DATA keys of a run's config.yaml (empty if the folder has none)."""
    import yaml

    path = run_dir / "config.yaml"
    return (yaml.safe_load(path.read_text()) or {}).get("DATA", {}) if path.is_file() else {}


def quality(scores, masks, clip_len=16):
    """scores {video: (n_clips,)}, masks {video: (n_frames,)} -> pooled and mean per-video frame
    AUC."""
    names = [n for n in masks if n in scores]
    s, y, offsets = expand_to_frames(scores, masks, names, clip_len)
    per_video = [
        frame_auc(s[a:b], y[a:b])
        for a, b in zip(offsets[:-1], offsets[1:])
        if 0 < y[a:b].sum() < b - a
    ]
    return {
        "auc": pseudo_label_auc(scores, {n: masks[n] for n in names}, clip_len),
        "mean_video_auc": float(np.mean(per_video)) if per_video else None,
        "n_videos": len(names),
        "n_frames": int(len(y)),
        "anomalous_fraction": float(y.mean()),
    }


def report(pl_path, raw_path, masks_dir, split, dataset, clip_len=16):
    """-> dict with the 'after' (and with raw scores 'before') quality of the pseudo-labels."""
    pseudo = load_score_dict(pl_path)
    abnormal = [v.name for v in read_split(str(split), dataset) if v.label == 1]
    masks = {
        n: load_mask(masks_dir / f"{n}.npy") for n in abnormal if (masks_dir / f"{n}.npy").is_file()
    }
    usable = [n for n in masks if n in pseudo]
    if not usable:
        raise InputError(
            f"none of the {len(abnormal)} abnormal videos of {split} has both a mask "
            f"in {masks_dir} and a pseudo-label in {pl_path} (its keys look like "
            f"{list(pseudo)[:2]})"
        )
    out = {
        "file": str(pl_path),
        "n_abnormal_videos": len(abnormal),
        "n_without_mask": len(abnormal) - len(masks),
        "n_without_pseudo_label": len(masks) - len(usable),
        "after": quality(pseudo, masks, clip_len),
    }
    if raw_path is not None:
        out["before"] = quality(load_score_dict(raw_path), masks, clip_len)
        out["raw_file"] = str(raw_path)
    return out


def format_report(result):
    after = result["after"]
    lines = [
        f"pseudo-label quality of {result['file']}",
        (
            f"frame AUC on {after['n_videos']} abnormal training videos with masks "
            f"({after['n_frames']} frames, {100 * after['anomalous_fraction']:.1f}% anomalous)"
        ),
        f"{'':20s}{'pooled AUC':>12s}{'mean per-video AUC':>21s}",
    ]
    for key, label in (("before", "before refinement"), ("after", "after refinement")):
        if key in result:
            q = result[key]
            per_video = "n/a" if q["mean_video_auc"] is None else f"{100 * q['mean_video_auc']:.2f}"
            lines.append(f"{label:20s}{100 * q['auc']:12.2f}{per_video:>21s}")
    skipped = result["n_without_mask"] + result["n_without_pseudo_label"]
    if skipped:
        lines.append(
            f"({result['n_without_mask']} abnormal videos have no mask, "
            f"{result['n_without_pseudo_label']} no pseudo-label: not scored)"
        )
    return lines + [PAPER_TABLE7]


def measure(
    pl_file, raw=None, masks=None, split=None, dataset="shanghaitech", clip_len=16, json_out=None
):
    """tools/pl_quality.py: the quality of pl_file (a file or a stage-1 run folder) -> report();
    prints the table and writes the report as JSON to json_out if given.

    raw: generator scores before refinement (default: RUN/train_scores.npz); masks: folder of
    <video>.npy frame masks; split: train split naming the abnormal videos; dataset: its naming
    convention; clip_len: frames per pseudo-label value.
    """
    pl_path, raw_path, masks_dir, split, dataset = resolve_inputs(
        pl_file, raw, masks, split, dataset
    )
    result = report(pl_path, raw_path, masks_dir, split, dataset, clip_len)
    print("\n".join(format_report(result)))
    if json_out:
        Path(json_out).write_text(json.dumps(result, indent=2) + "\n")
    return result
