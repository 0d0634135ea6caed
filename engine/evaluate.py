"""Evaluation of a checkpoint, or of any method's saved scores, with the paper's frame-level
metrics.

A stage-1 checkpoint is run on the features (DATA.FEATURES); a stage-2 checkpoint (ours, the
authors' released MIST checkpoints, or a converted state dict) on the test videos (DATA.FRAMES),
with the official test transforms (TEST.TEN_CROP for 10-crop). `torchrun` shares the videos of a
stage-2 test over GPUs.

test() prints and writes to OUTPUT_DIR: `test_<name>.json` (AUC, AP, PR-AUC, score gap, both false
alarm rates, the AUC over the abnormal videos, the temporal localisation mAP at IoU 0.1-0.5,
per-class metrics on UCF-Crime/XD-Violence), `test_<name>_scores.npz` (per-video clip
scores) and, with TEST.CALIBRATION_FARS, `test_<name>_calibration.json` (thresholds for
tools/infer.py --far). A score file is a `.npz` (or the official pickled `.npy` dict) of {video:
clip scores (n_clips,)}."""

from pathlib import Path

import torch

from datasets.build import (
    as_clip_scores,
    load_splits,
    read_manifest_of,
    validation_videos,
    open_frame_source,
    open_store,
    test_ground_truth,
    test_transform,
)
from datasets.specs import dataset_spec
from models.build import build_generator, build_model
from models.weights import CheckpointError, load_weights
from utils import distributed as dist
from utils.calibration import calibrate_split, format_table
from utils.checkpoint import read_checkpoint, save_npz, write_json
from utils.config import ConfigError
from utils.errors import ExistsError, InputError, NotFoundError
from utils.evaluation import evaluate
from utils.logger import setup_logger
from utils.pseudo_labels import load_score_dict
from utils.run import check_writable
from utils.scoring import score_videos
from utils.video_scoring import score_videos_on_frames


def stage1_scores(cfg, state, train_cfg, videos, labels, device):
    """Scores every clip of `videos` (frame ground truth `labels`) with a stage-1 checkpoint,
    rebuilt from its own config train_cfg."""
    model = build_generator(train_cfg)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise InputError(
            f"{cfg.TEST.CHECKPOINT} does not fit the stage-1 generator: {err}"
        ) from None
    store = open_store(cfg, [], videos)
    dim, l2 = train_cfg.DATA.FEATURE_DIM, train_cfg.DATA.L2_NORM
    if store.dim != dim or cfg.DATA.L2_NORM != l2:
        raise InputError(
            f"{cfg.TEST.CHECKPOINT} was trained on {dim}-d features with DATA.L2_NORM "
            f"{l2}; this config gives {store.dim}-d with {cfg.DATA.L2_NORM}: use the "
            "config the checkpoint was trained with"
        )
    names = [v.name for v in videos]
    scores = score_videos(model.to(device), store, names, device, cfg.STAGE1.EVAL_BATCH_ROWS)
    # Sultani's 32-segment features: each segment's score spread over its clips
    return as_clip_scores(store, scores, labels, cfg.DATA.CLIP_LEN)


def report(metrics, name, logger, dataset=""):
    """Prints the paper's table line and the per-class table; the dataset's headline metric first
    (AP on XD-Violence: datasets/specs.py)."""
    far_nv = metrics["far_normal_videos"]
    order = dataset_spec(dataset, own=True).headline if dataset else ("auc", "ap")
    (k1, v1), (k2, v2) = [(key.upper(), metrics[key]) for key in order]
    logger.info(
        "%s: %s %.2f%%  %s %.2f%%  PR-AUC %.2f%%  gap %.2f%%  FAR %.2f%%  "
        "FAR(normal videos) %s  (%d videos, %d clips, %d frames)",
        name,
        k1,
        100 * v1,
        k2,
        100 * v2,
        100 * metrics["pr_auc"],
        100 * metrics["score_gap"],
        100 * metrics["far"],
        "n/a" if far_nv is None else f"{100 * far_nv:.2f}%",
        metrics["n_videos"],
        metrics["n_clips"],
        metrics["n_frames"],
    )
    maps = "/".join("n/a" if v is None else f"{100 * v:.2f}" for v in metrics["map_iou"].values())
    logger.info(
        "%s: AUC(abnormal videos) %s  mAP@IoU %s %s%%  mean %s",
        name,
        _pct(metrics["auc_abnormal"]).strip(),
        "/".join(metrics["map_iou"]),
        maps,
        _pct(metrics["map_mean"]).strip(),
    )
    for category, m in metrics["per_class"].items():
        logger.info(
            "  %-14s AUC %s  AUC(abnormal) %s  mAP %s  videos %d",
            category,
            _pct(m.get("auc")),
            _pct(m.get("auc_abnormal")),
            _pct(m.get("map_mean")),
            m["n_videos"],
        )


def _pct(value):
    """0.8123 -> ' 81.23%'; None -> '   n/a'."""
    return "   n/a" if value is None else f"{100 * value:6.2f}%"


def stage2_scores(cfg, model_cfg, videos, device, rank, world):
    """Scores every clip of the test videos with a stage-2 model built from model_cfg (a
    checkpoint's own config, or this one's MODEL keys) -> ({video: clip scores}, frame source)."""
    model = build_model(model_cfg)
    load_weights(model, cfg.TEST.CHECKPOINT)
    frames = open_frame_source(cfg, videos)
    transform = test_transform(cfg, backbone=model_cfg.MODEL.BACKBONE)
    model.to(device)
    # uint8 clips come out of normalise() channels-last: the model too (cudnn's fast path)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last_3d)
    return score_frames(cfg, model, frames, videos, transform, device, rank, world), frames


def score_frames(cfg, model, frames, videos, transform, device, rank=0, world=1):
    """-> {video: clip scores} of a stage-2 model on `videos` with TEST.BATCH_SIZE, DATA.NUM_WORKERS
    and STAGE2.AMP (under torchrun every rank scores its share; the result is whole on every
    rank)."""
    return score_videos_on_frames(
        model,
        frames,
        [v.name for v in videos],
        transform,
        device,
        cfg.TEST.BATCH_SIZE,
        cfg.DATA.NUM_WORKERS,
        cfg.STAGE2.AMP,
        rank,
        world,
    )


def checkpoint_scores(cfg, videos, labels, rank, world, device):
    """-> ({video: clip scores}, clip length in frames) of TEST.CHECKPOINT, dispatched on its
    kind."""
    state, saved = read_checkpoint(cfg.TEST.CHECKPOINT)
    kind = state.get("kind") if isinstance(state, dict) else None
    own = cfg if saved is None else saved
    if kind == "stage1":
        return stage1_scores(cfg, state, own, videos, labels, device), cfg.DATA.CLIP_LEN
    try:
        scores, frames = stage2_scores(
            cfg, own if kind == "stage2" else cfg, videos, device, rank, world
        )
    except CheckpointError as err:
        raise InputError(
            f"{cfg.TEST.CHECKPOINT} is neither a stage-1 checkpoint nor a MIST model for "
            f"MODEL.BACKBONE {cfg.MODEL.BACKBONE}: {err}"
        ) from None
    return scores, frames.segment_len


def check_paths(cfg, force):
    """The input file exists and no earlier result would be overwritten (unless force) -> result
    name."""
    if cfg.TEST.CHECKPOINT:
        key, path = "TEST.CHECKPOINT", cfg.TEST.CHECKPOINT
    else:
        key, path = "TEST.SCORES", cfg.TEST.SCORES
    if not Path(path).is_file():
        raise NotFoundError(f"{key} {path} does not exist (or is not a file): check the path")
    name = Path(path).stem
    out = Path(cfg.OUTPUT_DIR)
    if out.exists() and not out.is_dir():
        raise ExistsError(f"OUTPUT_DIR {out} is a file, not a folder: set OUTPUT_DIR to a folder")
    check_writable(out, "OUTPUT_DIR")
    earlier = out / f"test_{name}.json"
    if earlier.exists() and not force:
        raise ExistsError(
            f"{earlier} holds the results of an earlier test of {path}: pass --force to "
            "overwrite them, or set OUTPUT_DIR to another folder"
        )
    return name


def write_results(cfg, name, videos, scores, metrics, calibration, logger):
    """Writes test_<name>_scores.npz, test_<name>.json (and _calibration.json) and prints them."""
    out = Path(cfg.OUTPUT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    source = cfg.TEST.CHECKPOINT or cfg.TEST.SCORES
    save_npz(out / f"test_{name}_scores.npz", {v.name: scores[v.name] for v in videos})
    write_json(
        out / f"test_{name}.json", {"source": source, "ten_crop": cfg.TEST.TEN_CROP, **metrics}
    )
    report(metrics, name, logger, cfg.DATA.DATASET)
    # thresholds for tools/infer.py --calibration FILE --far F
    if calibration is not None:
        write_json(out / f"test_{name}_calibration.json", {"source": source, **calibration})
        for line in format_table(calibration):
            logger.info("%s", line)


def calibrate_on_val(cfg, test_scores, rank, world, device):
    """TEST.CALIBRATION_SPLIT val: thresholds from the manifest's `val` videos (held out of
    training), scored by TEST.CHECKPOINT or read from TEST.SCORES -> calibration dict."""
    named = validation_videos(cfg)
    if not named:
        raise ConfigError(
            "TEST.CALIBRATION_SPLIT val needs a validation split: DATA.MANIFEST with `val` rows "
            "(docs/own_data.md); or set TEST.CALIBRATION_SPLIT test"
        )
    videos = read_manifest_of(cfg).videos("val")
    labels = read_manifest_of(cfg).frame_labels(sorted(named))
    missing = sorted(named - set(labels))
    if missing:
        raise InputError(
            f"{cfg.DATA.MANIFEST}: val videos {missing[:5]} have no frame count or intervals to "
            "calibrate on: give their `frames` (or `path`), and intervals for abnormal ones"
        )
    if cfg.TEST.SCORES:
        scores, clip_len = test_scores, cfg.DATA.CLIP_LEN
    else:
        scores, clip_len = checkpoint_scores(cfg, videos, labels, rank, world, device)
    t = cfg.TEST
    calibration = calibrate_split(
        scores, labels, videos, clip_len, t.CALIBRATION_FARS, t.MAX_PAD_CLIPS
    )
    calibration["split"] = "val"
    return calibration


def test(cfg, force=False):
    """Evaluates TEST.CHECKPOINT or TEST.SCORES (exactly one set) on the test split -> metrics dict
    (utils.evaluation.evaluate); rank 0 writes the files of this module's docstring. force:
    overwrite the results of an earlier test in OUTPUT_DIR."""
    if bool(cfg.TEST.CHECKPOINT) == bool(cfg.TEST.SCORES):
        raise ConfigError(
            "set exactly one of TEST.CHECKPOINT (a checkpoint to run) or TEST.SCORES (a score file)"
        )
    name = check_paths(cfg, force)
    rank, world, device = dist.init_distributed(cfg.DEVICE)
    logger = setup_logger(rank=rank)
    _, videos = load_splits(cfg, need_train=False)
    labels = test_ground_truth(cfg, videos)
    if cfg.TEST.SCORES:
        scores, clip_len = load_score_dict(cfg.TEST.SCORES), cfg.DATA.CLIP_LEN
    else:
        scores, clip_len = checkpoint_scores(cfg, videos, labels, rank, world, device)
    t = cfg.TEST
    metrics = evaluate(scores, labels, videos, clip_len, t.THRESHOLD, t.MAX_PAD_CLIPS)
    calibration = None
    if t.CALIBRATION_FARS and t.CALIBRATION_SPLIT == "val":
        calibration = calibrate_on_val(cfg, scores, rank, world, device)
    elif t.CALIBRATION_FARS:
        calibration = calibrate_split(
            scores, labels, videos, clip_len, t.CALIBRATION_FARS, t.MAX_PAD_CLIPS
        )
        calibration["split"] = "test"
    if rank == 0:
        write_results(cfg, name, videos, scores, metrics, calibration, logger)
    dist.cleanup()
    return metrics
