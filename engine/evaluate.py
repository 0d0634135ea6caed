"""Evaluate a checkpoint, or any method's saved scores, with the paper's frame-level metrics.

    python tools/test.py --cfg configs/shanghaitech/i3d_stage1.yaml TEST.CHECKPOINT out/checkpoints/best.pth
    python tools/test.py --cfg configs/shanghaitech/i3d_stage2.yaml TEST.CHECKPOINT SHT_I3D_AUC_0.9483.pth
    python tools/test.py --cfg configs/ucf_crime/i3d_stage1.yaml TEST.SCORES my_method_scores.npz

A stage-1 checkpoint is run on the features (DATA.FEATURES); a stage-2 checkpoint (ours, the authors'
released MIST checkpoints, or a converted state dict) on the test videos (DATA.FRAMES), with the official
test transforms (TEST.TEN_CROP for 10-crop). `torchrun` shares the videos of a stage-2 test over GPUs.

Prints and writes to OUTPUT_DIR: `test_<name>.json` (AUC, AP, PR-AUC, score gap, both false alarm rates,
per-class metrics on UCF-Crime/XD-Violence) and `test_<name>_scores.npz` (per-video clip scores).
A score file is a `.npz` (or the official pickled `.npy` dict) of {video: clip scores (n_clips,)}.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from yacs.config import CfgNode  # noqa: E402

from datasets.build import load_splits, open_frame_source, open_store, stage2_transforms, test_ground_truth  # noqa
from models.build import build_generator, build_model  # noqa: E402
from models.weights import CheckpointError, load_weights, read_checkpoint  # noqa: E402
from utils import distributed as dist  # noqa: E402
from utils.calibration import calibrate_split, format_table  # noqa: E402
from utils.checkpoint import save_npz, write_json  # noqa: E402
from utils.config import ConfigError, setup_cfg  # noqa: E402
from utils.video_scoring import score_videos_on_frames  # noqa: E402
from utils.evaluation import evaluate  # noqa: E402
from utils.logger import setup_logger  # noqa: E402
from utils.pseudo_labels import load_score_dict  # noqa: E402
from utils.run import check_writable  # noqa: E402
from utils.scoring import score_videos  # noqa: E402
from utils.errors import ExistsError, InputError, NotFoundError  # noqa: E402
from utils import cli  # noqa: E402


def stage1_scores(cfg, state, videos, device):
    """Scores every clip of `videos` with a stage-1 checkpoint, rebuilt from the checkpoint's own config."""
    train_cfg = CfgNode.load_cfg(state["cfg"])
    model = build_generator(train_cfg)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise InputError(f"{cfg.TEST.CHECKPOINT} does not fit the stage-1 generator: {err}") from None
    store = open_store(cfg, [], videos)
    if store.dim != train_cfg.DATA.FEATURE_DIM or cfg.DATA.L2_NORM != train_cfg.DATA.L2_NORM:
        raise InputError(f"{cfg.TEST.CHECKPOINT} was trained on {train_cfg.DATA.FEATURE_DIM}-d features with "
                         f"DATA.L2_NORM {train_cfg.DATA.L2_NORM}; this config gives {store.dim}-d with "
                         f"{cfg.DATA.L2_NORM}: use the config the checkpoint was trained with")
    return score_videos(model.to(device), store, [v.name for v in videos], device, cfg.STAGE1.EVAL_BATCH_ROWS)


def report(metrics, name, logger, dataset=""):
    """Prints the paper's table line and the per-class table; AP comes first on XD-Violence (its headline)."""
    far_nv = metrics["far_normal_videos"]
    pair = [("AUC", metrics["auc"]), ("AP", metrics["ap"])]
    (k1, v1), (k2, v2) = pair[::-1] if dataset == "xd_violence" else pair
    logger.info("%s: %s %.2f%%  %s %.2f%%  PR-AUC %.2f%%  gap %.2f%%  FAR %.2f%%  FAR(normal videos) %s  "
                "(%d videos, %d clips, %d frames)", name, k1, 100 * v1, k2, 100 * v2,
                100 * metrics["pr_auc"], 100 * metrics["score_gap"], 100 * metrics["far"],
                "n/a" if far_nv is None else f"{100 * far_nv:.2f}%", metrics["n_videos"], metrics["n_clips"],
                metrics["n_frames"])
    for category, m in metrics["per_class"].items():
        auc = "   n/a" if m.get("auc") is None else f"{100 * m['auc']:6.2f}"
        logger.info("  %-14s AUC %s%%  videos %d", category, auc, m["n_videos"])


def stage2_scores(cfg, state, videos, device, rank, world):
    """Scores every clip of the test videos with a stage-2 model: ours (rebuilt from its config) or any
    MIST checkpoint file (built from this config's MODEL keys; a wrong backbone is refused)."""
    model_cfg = CfgNode.load_cfg(state["cfg"]) if isinstance(state, dict) and state.get("kind") == "stage2" else cfg
    model = build_model(model_cfg)
    load_weights(model, cfg.TEST.CHECKPOINT)
    frames = open_frame_source(cfg, videos)
    test_cfg = cfg.clone()
    test_cfg.defrost()
    test_cfg.MODEL.BACKBONE = model_cfg.MODEL.BACKBONE
    _, transform = stage2_transforms(test_cfg)
    model.to(device)
    if device.type == "cuda":  # uint8 clips come out of normalise() channels-last: the model too (cudnn's fast path)
        model.to(memory_format=torch.channels_last_3d)
    return score_videos_on_frames(model, frames, [v.name for v in videos], transform, device,
                                  cfg.TEST.BATCH_SIZE, cfg.DATA.NUM_WORKERS, cfg.STAGE2.AMP, rank, world), frames


def checkpoint_scores(cfg, videos, rank, world, device):
    """-> ({video: clip scores}, clip length in frames) of TEST.CHECKPOINT, dispatched on what it holds."""
    state = read_checkpoint(cfg.TEST.CHECKPOINT)
    if isinstance(state, dict) and state.get("kind") == "stage1":
        return stage1_scores(cfg, state, videos, device), cfg.DATA.CLIP_LEN
    try:
        scores, frames = stage2_scores(cfg, state, videos, device, rank, world)
    except CheckpointError as err:
        raise InputError(f"{cfg.TEST.CHECKPOINT} is neither a stage-1 checkpoint nor a MIST model for "
                         f"MODEL.BACKBONE {cfg.MODEL.BACKBONE}: {err}") from None
    return scores, frames.segment_len


def check_paths(cfg, force):
    """The input file exists and no earlier result would be overwritten (unless --force) -> result name."""
    key, path = ("TEST.CHECKPOINT", cfg.TEST.CHECKPOINT) if cfg.TEST.CHECKPOINT else ("TEST.SCORES", cfg.TEST.SCORES)
    if not Path(path).is_file():
        raise NotFoundError(f"{key} {path} does not exist (or is not a file): check the path")
    name = Path(path).stem
    out = Path(cfg.OUTPUT_DIR)
    if out.exists() and not out.is_dir():
        raise ExistsError(f"OUTPUT_DIR {out} is a file, not a folder: set OUTPUT_DIR to a folder")
    check_writable(out, "OUTPUT_DIR")
    earlier = out / f"test_{name}.json"
    if earlier.exists() and not force:
        raise ExistsError(f"{earlier} holds the results of an earlier test of {path}: pass --force to overwrite them, "
                          "or set OUTPUT_DIR to another folder")
    return name


def main(argv=None):
    cfg, args = setup_cfg(__doc__, argv)
    if bool(cfg.TEST.CHECKPOINT) == bool(cfg.TEST.SCORES):
        raise ConfigError("set exactly one of TEST.CHECKPOINT (a checkpoint to run) or TEST.SCORES (a score file)")
    name = check_paths(cfg, args.force)
    rank, world, device = dist.init_distributed(cfg.DEVICE)
    logger = setup_logger(rank=rank)
    _, videos = load_splits(cfg, need_train=False)
    labels = test_ground_truth(cfg, videos)
    if cfg.TEST.SCORES:
        scores, clip_len = load_score_dict(cfg.TEST.SCORES), cfg.DATA.CLIP_LEN
    else:
        scores, clip_len = checkpoint_scores(cfg, videos, rank, world, device)
    metrics = evaluate(scores, labels, videos, clip_len, cfg.TEST.THRESHOLD, cfg.TEST.MAX_PAD_CLIPS)
    calibration = calibrate_split(scores, labels, videos, clip_len, cfg.TEST.CALIBRATION_FARS,
                                  cfg.TEST.MAX_PAD_CLIPS) if cfg.TEST.CALIBRATION_FARS else None
    if rank == 0:
        out = Path(cfg.OUTPUT_DIR)
        out.mkdir(parents=True, exist_ok=True)
        save_npz(out / f"test_{name}_scores.npz", {v.name: scores[v.name] for v in videos})
        write_json(out / f"test_{name}.json", {"source": cfg.TEST.CHECKPOINT or cfg.TEST.SCORES,
                                               "ten_crop": cfg.TEST.TEN_CROP, **metrics})
        report(metrics, name, logger, cfg.DATA.DATASET)
        if calibration is not None:  # thresholds for tools/infer.py --calibration FILE --far F
            write_json(out / f"test_{name}_calibration.json", {"source": cfg.TEST.CHECKPOINT or cfg.TEST.SCORES,
                                                               **calibration})
            for line in format_table(calibration):
                logger.info("%s", line)
    dist.cleanup()
    return metrics


if __name__ == "__main__":
    sys.exit(cli.run(main))
