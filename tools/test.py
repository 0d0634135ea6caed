"""Evaluate a checkpoint, or any method's saved scores, with the paper's frame-level metrics.

    python tools/test.py --cfg configs/shanghaitech/i3d_stage1.yaml TEST.CHECKPOINT out/checkpoints/best.pth
    python tools/test.py --cfg configs/ucf_crime/i3d_stage1.yaml TEST.SCORES my_method_scores.npz

Prints and writes to OUTPUT_DIR: `test_<name>.json` (AUC, AP, PR-AUC, score gap, both false alarm rates,
per-class metrics on UCF-Crime/XD-Violence) and `test_<name>_scores.npz` (per-video clip scores).
A score file is a `.npz` (or the official pickled `.npy` dict) of {video: clip scores (n_clips,)}.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from yacs.config import CfgNode  # noqa: E402

from datasets.build import load_splits, open_store, test_ground_truth  # noqa: E402
from models.build import build_generator  # noqa: E402
from utils.checkpoint import load_checkpoint, write_json  # noqa: E402
from utils.config import setup_cfg  # noqa: E402
from utils.env import resolve_device  # noqa: E402
from utils.evaluation import evaluate  # noqa: E402
from utils.logger import setup_logger  # noqa: E402
from utils.pseudo_labels import load_score_dict  # noqa: E402
from utils.scoring import score_videos  # noqa: E402


def stage1_scores(cfg, state, videos, device):
    """Scores every clip of `videos` with a stage-1 checkpoint, rebuilt from the checkpoint's own config."""
    train_cfg = CfgNode.load_cfg(state["cfg"])
    model = build_generator(train_cfg)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise ValueError(f"{cfg.TEST.CHECKPOINT} does not fit the stage-1 generator: {err}") from None
    store = open_store(cfg, videos)
    if store.dim != train_cfg.DATA.FEATURE_DIM or cfg.DATA.L2_NORM != train_cfg.DATA.L2_NORM:
        raise ValueError(f"{cfg.TEST.CHECKPOINT} was trained on {train_cfg.DATA.FEATURE_DIM}-d features with "
                         f"DATA.L2_NORM {train_cfg.DATA.L2_NORM}; this config gives {store.dim}-d with "
                         f"{cfg.DATA.L2_NORM}: use the config the checkpoint was trained with")
    return score_videos(model.to(device), store, [v.name for v in videos], device, cfg.STAGE1.EVAL_BATCH_ROWS)


def report(metrics, name, logger):
    """Prints the paper's table line and the per-class table."""
    far_nv = metrics["far_normal_videos"]
    logger.info("%s: AUC %.2f%%  AP %.2f%%  PR-AUC %.2f%%  gap %.2f%%  FAR %.2f%%  FAR(normal videos) %s  "
                "(%d videos, %d clips, %d frames)", name, 100 * metrics["auc"], 100 * metrics["ap"],
                100 * metrics["pr_auc"], 100 * metrics["score_gap"], 100 * metrics["far"],
                "n/a" if far_nv is None else f"{100 * far_nv:.2f}%", metrics["n_videos"], metrics["n_clips"],
                metrics["n_frames"])
    for category, m in metrics["per_class"].items():
        auc = "   n/a" if m.get("auc") is None else f"{100 * m['auc']:6.2f}"
        logger.info("  %-14s AUC %s%%  videos %d", category, auc, m["n_videos"])


def main(argv=None):
    cfg, _ = setup_cfg(__doc__, argv)
    if bool(cfg.TEST.CHECKPOINT) == bool(cfg.TEST.SCORES):
        raise SystemExit("set exactly one of TEST.CHECKPOINT (a checkpoint to run) or TEST.SCORES (a score file)")
    logger = setup_logger()
    _, videos = load_splits(cfg, need_train=False)
    labels = test_ground_truth(cfg, videos)
    if cfg.TEST.SCORES:
        name, scores = Path(cfg.TEST.SCORES).stem, load_score_dict(cfg.TEST.SCORES)
    else:
        state = load_checkpoint(cfg.TEST.CHECKPOINT, expect_kind="stage1")
        name = Path(cfg.TEST.CHECKPOINT).stem
        scores = stage1_scores(cfg, state, videos, resolve_device(cfg.DEVICE))
    metrics = evaluate(scores, labels, videos, cfg.DATA.CLIP_LEN, cfg.TEST.THRESHOLD, cfg.TEST.MAX_PAD_CLIPS)
    out = Path(cfg.OUTPUT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / f"test_{name}_scores.npz", **{v.name: scores[v.name] for v in videos})
    write_json(out / f"test_{name}.json", {"source": cfg.TEST.CHECKPOINT or cfg.TEST.SCORES, **metrics})
    report(metrics, name, logger)
    return metrics


if __name__ == "__main__":
    main()
