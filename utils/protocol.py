"""Honest model selection: a validation split carved from the TRAIN videos, its metric, and the
report of the last, the test-selected and the validation-selected checkpoints side by side.

The official code selects checkpoints on the TEST set (docs/REFERENCE.md §1.5, §6.24), as the
paper's numbers do; `best.pth` keeps that meaning. With DATA.VAL_FRACTION > 0 a seeded,
class-stratified share of the training videos is held out of training and `best_val.pth` is chosen
on it, with no test label used:
- frame AUC on the validation videos when every abnormal one has a frame mask (ShanghaiTech: the 63
  abnormal training videos do, DATA.TRAIN_MASK_DIR; normal videos are all-normal by definition);
- otherwise video-level AUC of each video's max clip score against its video label (weak labels
  only).
"""

import logging
from collections import defaultdict

import numpy as np
from sklearn.metrics import roc_auc_score

from utils.evaluation import expand_to_frames
from utils.logger import read_metrics
from utils.metrics import frame_auc
from utils.errors import InputError

logger = logging.getLogger("mist")
TEST_KEYS = ("auc", "ap", "pr_auc", "score_gap", "far", "far_normal_videos")


def split_validation(videos, fraction, seed=0):
    """videos: list[Video] -> (train, val), both in file order.

    Stratified by (label, category): each group gives round(fraction * n) videos (at least 1 and at
    most n - 1 when it has 2 or more), drawn by `default_rng(seed)` group by group in sorted group
    order, so the split depends only on the list, the fraction and the seed (DATA.VAL_SEED, not the
    training SEED)."""
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"DATA.VAL_FRACTION must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return list(videos), []
    groups = defaultdict(list)
    for v in videos:
        groups[(v.label, v.category)].append(v.name)
    rng, held = np.random.default_rng(seed), set()
    for key in sorted(groups):
        names = groups[key]
        k = int(np.floor(fraction * len(names) + 0.5))
        k = min(max(k, 1), len(names) - 1) if len(names) >= 2 else 0
        held.update(names[i] for i in rng.permutation(len(names))[:k])
    return [v for v in videos if v.name not in held], [v for v in videos if v.name in held]


def carve_validation(cfg, train_videos, named=()):
    """cfg (DATA.VAL_FRACTION, DATA.VAL_SEED), train videos -> (train, val); logs the split.
    named: the validation videos a manifest names (its `val` rows), whatever the fraction."""
    if named:
        train = [v for v in train_videos if v.name not in named]
        val = [v for v in train_videos if v.name in named]
    else:
        train, val = split_validation(train_videos, cfg.DATA.VAL_FRACTION, cfg.DATA.VAL_SEED)
    if val:
        for kind, label in (("normal", 0), ("abnormal", 1)):
            if not any(v.label == label for v in val):
                raise InputError(
                    f"the validation split has no {kind} video: raise DATA.VAL_FRACTION "
                    f"(now {cfg.DATA.VAL_FRACTION}) or add {kind} training videos"
                )
        logger.info(
            "validation split: %d of %d training videos held out (%d abnormal; DATA.VAL_SEED %d)",
            len(val),
            len(train_videos),
            sum(v.label for v in val),
            cfg.DATA.VAL_SEED,
        )
    return train, val


def validation_metric(scores, videos, masks, clip_len=16, max_pad_clips=0):
    """scores {name: (n_clips,)} of the validation videos -> {"val_metric": name, "val": float}.

    masks: {name: uint8 (n_frames,)} of abnormal videos (may be empty). 'frame_auc' when every
    abnormal validation video has one (normal videos: zeros over the frames their clips cover), else
    'video_auc'."""
    abnormal = [v.name for v in videos if v.label == 1]
    if abnormal and all(name in masks for name in abnormal):
        labels = {
            v.name: masks[v.name] if v.label else np.zeros(clip_len * len(scores[v.name]), np.uint8)
            for v in videos
        }
        s, y, _ = expand_to_frames(
            scores, labels, [v.name for v in videos], clip_len, max_pad_clips
        )
        return {"val_metric": "frame_auc", "val": frame_auc(s, y)}
    peak = [float(np.max(scores[v.name])) for v in videos]
    return {"val_metric": "video_auc", "val": float(roc_auc_score([v.label for v in videos], peak))}


# PSEUDO_LABEL.CHECKPOINT: the final, the test-selected or the validation-selected checkpoint
CHECKPOINT_CHOICES = ("last", "best", "best_val")


def selection_table(output_dir, best):
    """-> {"last", "best", "best_val"}: the TEST metrics (TEST_KEYS + epoch) of the final
    evaluation, of the test-selected checkpoint (as the paper) and of the validation-selected one
    (None without a val split), read from the run's metrics.jsonl."""
    # a repeated (resumed) epoch: the last write
    records = {r["epoch"]: r for r in read_metrics(output_dir)}
    if not records:
        return {"last": None, "best": None, "best_val": None}

    def row(epoch):
        r = records.get(epoch)
        return None if r is None else {"epoch": epoch, **{k: r.get(k) for k in TEST_KEYS}}

    return {
        "last": row(max(records)),
        "best": row(best.get("epoch")),
        "best_val": row(best.get("val_epoch")) if best.get("val_epoch") else None,
    }


def log_selection(table, logger_=logger):
    """One line: test AUC (and AP) of last / best (test-selected) / best_val."""
    parts = []
    for name in CHECKPOINT_CHOICES:
        row = table.get(name)
        if row is not None:
            parts.append(f"{name} (epoch {row['epoch']}) AUC {row['auc']:.4f} AP {row['ap']:.4f}")
    logger_.info(
        "test metrics by checkpoint choice: %s  [best = chosen on TEST, as the paper; best_val ="
        " chosen on the validation split]",
        " | ".join(parts),
    )
