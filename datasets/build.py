"""cfg -> the stage-1 data: splits, feature store, test ground truth, train masks.

The one place that turns DATA.* keys into calls of the dataset modules (datasets/*.py take plain
arguments). Each choice is one entry in a plain dict here (STAGE1_SAMPLERS)."""

import functools
import logging
from pathlib import Path

import numpy as np

from datasets.bags import BagSampler
from datasets.features import open_features
from datasets.ground_truth import frame_labels, load_mask
from datasets.manifest import read_manifest
from datasets.segments import SegmentBagSampler
from datasets.specs import dataset_spec
from datasets.splits import read_split
from utils.evaluation import expand_to_frames
from utils.errors import InputError, NotFoundError
from utils.registry import choose

logger = logging.getLogger("mist")


def load_splits(cfg, need_train=True):
    """-> (train videos or None, test videos): list[Video] each, from DATA.TRAIN_SPLIT /
    DATA.TEST_SPLIT, or from DATA.MANIFEST (its train and val videos train; see
    validation_videos)."""
    if cfg.DATA.MANIFEST:
        manifest = read_manifest_of(cfg)
        train = manifest.videos("train") + manifest.videos("val") if need_train else None
        return train, manifest.videos("test")
    test = read_split(cfg.DATA.TEST_SPLIT, cfg.DATA.DATASET, "DATA.TEST_SPLIT")
    train = (
        read_split(cfg.DATA.TRAIN_SPLIT, cfg.DATA.DATASET, "DATA.TRAIN_SPLIT")
        if need_train
        else None
    )
    return train, test


def read_manifest_of(cfg):
    """DATA.MANIFEST -> Manifest, read and checked once per file version."""
    path = Path(cfg.DATA.MANIFEST)
    stamp = path.stat().st_mtime_ns if path.is_file() else None
    return _read_manifest(str(path), stamp)


@functools.lru_cache(maxsize=4)
def _read_manifest(path, stamp):
    return read_manifest(path)


def validation_videos(cfg):
    """The names of the manifest's `val` videos (empty without a manifest or without them)."""
    if not cfg.DATA.MANIFEST:
        return set()
    return {v.name for v in read_manifest_of(cfg).videos("val")}


def ensure_demo_features(cfg):
    """A dataset whose spec generates its features (the demo) writes DATA.FEATURES on first use."""
    path = Path(cfg.DATA.FEATURES)
    make_features = dataset_spec(cfg.DATA.DATASET, own=bool(cfg.DATA.MANIFEST)).make_features
    if make_features is not None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        data_dir = Path(cfg.DATA.TRAIN_SPLIT).parent
        summary = make_features(path, data_dir=data_dir, dim=cfg.DATA.FEATURE_DIM)
        logger.info("generated the demo feature set: %s", summary)


def _open_one(cfg, key, path, videos):
    if not path:
        raise NotFoundError(f"{key} is empty: set it to a feature h5 file or a feature list file")
    if not Path(path).exists():
        raise NotFoundError(
            f"feature file {path} does not exist: set {key} to the feature h5 or list file "
            "(see Training_Guidelines.md for where to get them)"
        )
    return open_features(
        path,
        [v.name for v in videos],
        dim=cfg.DATA.FEATURE_DIM,
        l2_norm=cfg.DATA.L2_NORM,
        storage=cfg.DATA.STORAGE,
        crop=cfg.DATA.CROP,
        root=cfg.DATA.FEATURE_ROOT or None,
    )


def open_store(cfg, train_videos, test_videos=()):
    """One FeatureStore interface over the train and test videos (list[Video] each).

    Both come from DATA.FEATURES, or the test videos from DATA.TEST_FEATURES when it is set (public
    feature lists are usually split into a train and a test list).
    """
    ensure_demo_features(cfg)
    train_names = {v.name for v in train_videos}
    test_only = [v for v in test_videos if v.name not in train_names]
    if not cfg.DATA.TEST_FEATURES or not test_only:
        return _open_one(cfg, "DATA.FEATURES", cfg.DATA.FEATURES, list(train_videos) + test_only)
    test = _open_one(cfg, "DATA.TEST_FEATURES", cfg.DATA.TEST_FEATURES, test_only)
    if not train_videos:
        return test
    return SplitStores(_open_one(cfg, "DATA.FEATURES", cfg.DATA.FEATURES, train_videos), test)


class SplitStores:
    """Train videos from one FeatureStore, test videos from another, behind the FeatureStore
    interface."""

    def __init__(self, train, test):
        self.train, self.test, self.dim = train, test, train.dim
        self.segments = getattr(train, "segments", None)
        self.names = train.names + test.names
        self._test_names = set(test.names)

    def _of(self, name):
        return self.test if name in self._test_names else self.train

    def num_clips(self, name):
        return self._of(name).num_clips(name)

    def get(self, name):
        return self._of(name).get(name)

    def gather(self, names, idx):
        return self._of(names[0]).gather(names, idx)  # batches are drawn from the train videos only

    def gather_rows(self, names, idx):
        return self._of(names[0]).gather_rows(names, idx)

    def iter_batches(self, names, max_rows=65536):
        for store in (self.train, self.test):
            mine = [n for n in names if self._of(n) is store]
            if mine:
                yield from store.iter_batches(mine, max_rows=max_rows)


def test_ground_truth(cfg, videos):
    """{name: uint8 (n_frames,)} per-frame labels of the test videos."""
    if cfg.DATA.MANIFEST:
        return read_manifest_of(cfg).frame_labels([v.name for v in videos])
    return frame_labels(
        videos,
        cfg.DATA.DATASET,
        mask_dir=cfg.DATA.TEST_MASK_DIR or None,
        annotation=cfg.DATA.TEST_ANNOTATION or None,
    )


def train_masks(cfg, videos):
    """{name: uint8 (n_frames,)} for the abnormal train videos that have a mask in
    DATA.TRAIN_MASK_DIR."""
    abnormal = [v.name for v in videos if v.label == 1]
    if cfg.DATA.MANIFEST:
        masks = read_manifest_of(cfg).frame_labels(abnormal)
        logger.info(
            "train masks: %d of %d abnormal train videos have intervals or a mask in %s",
            len(masks),
            len(abnormal),
            cfg.DATA.MANIFEST,
        )
        return masks
    if not cfg.DATA.TRAIN_MASK_DIR:
        return {}
    mask_dir = Path(cfg.DATA.TRAIN_MASK_DIR)
    masks = {
        name: load_mask(mask_dir / f"{name}.npy")
        for name in abnormal
        if (mask_dir / f"{name}.npy").exists()
    }
    logger.info(
        "train masks: %d of %d abnormal train videos have one in %s",
        len(masks),
        len(abnormal),
        mask_dir,
    )
    return masks


def _mist_sampler(cfg, store, normal, abnormal, rng):
    """MIST sub-bags: PART_NUM sub-bags of PART_LEN clips per video (datasets/bags.py)."""
    s1 = cfg.STAGE1
    return BagSampler(
        store, normal, abnormal, s1.BATCH_SIZE, s1.PART_NUM, s1.PART_LEN, s1.SAMPLING, rng
    )


def _sultani_sampler(cfg, store, normal, abnormal, rng):
    """Sultani's bags: PART_NUM mean-pooled segments per video (datasets/segments.py)."""
    s1 = cfg.STAGE1
    return SegmentBagSampler(
        store, normal, abnormal, s1.BATCH_SIZE, s1.PART_NUM, rng, cfg.DATA.L2_NORM
    )


# STAGE1.METHOD -> (cfg, store, normal names, abnormal names, rng) -> sampler with iter_rows(dedup)
STAGE1_SAMPLERS = {"mist": _mist_sampler, "sultani": _sultani_sampler}


def build_stage1_sampler(cfg, store, videos, rng):
    """The stage-1 bag sampler of STAGE1.METHOD over `videos` (label 0 normal, 1 abnormal)."""
    normal = [v.name for v in videos if v.label == 0]
    abnormal = [v.name for v in videos if v.label == 1]
    build = choose(STAGE1_SAMPLERS, "STAGE1.METHOD", cfg.STAGE1.METHOD)
    return build(cfg, store, normal, abnormal, rng)


def segments_of(store, name):
    """-> 32 when `store` holds `name` as Sultani's 32 segments (the .txt release), else None."""
    of = getattr(store, "_of", None)
    return getattr(of(name) if of else store, "segments", None)


def as_clip_scores(store, scores, labels, clip_len):
    """{video: scores} -> the same with the segment scores of segmented videos spread over the
    clips of their ground truth (datasets.feature_sources.expand_segment_scores); videos without
    ground truth in `labels`, or of clip rows, unchanged."""
    from datasets.feature_sources import expand_segment_scores

    segmented = {n: s for n, s in scores.items() if segments_of(store, n) and n in labels}
    if not segmented:
        return scores
    lengths = {n: len(labels[n]) for n in segmented}
    return {**scores, **expand_segment_scores(segmented, lengths, clip_len)}


def check_test_coverage(cfg, store, videos, labels):
    """Fails before training, not at the first evaluation, when clip scores would outrun a video's
    GT."""
    zeros = {v.name: np.zeros(store.num_clips(v.name)) for v in videos}
    zeros = as_clip_scores(store, zeros, labels, cfg.DATA.CLIP_LEN)
    expand_to_frames(
        zeros, labels, [v.name for v in videos], cfg.DATA.CLIP_LEN, cfg.TEST.MAX_PAD_CLIPS
    )


def open_frame_source(cfg, videos):
    """FrameSource over DATA.FRAMES (a frames h5, or a folder / list of videos) holding `videos`."""
    from datasets.frames import open_frames

    if not cfg.DATA.FRAMES:
        raise NotFoundError(
            "DATA.FRAMES is empty: set it to a frames h5 (tools/make_h5.py) or a video folder"
        )
    if not Path(cfg.DATA.FRAMES).exists():
        raise NotFoundError(f"DATA.FRAMES {cfg.DATA.FRAMES} does not exist")
    frames = open_frames(
        cfg.DATA.FRAMES,
        kind=cfg.DATA.FRAMES_KIND,
        names=[v.name for v in videos],
        root=cfg.DATA.FRAMES_ROOT or None,
    )
    short = [v.name for v in videos if frames.num_segments(v.name) < 1]
    if short:
        raise InputError(
            f"{len(short)} video(s) have fewer than {frames.segment_len} frames, so no clip can be"
            f" cut from them: {short[:5]}; drop them from the split files"
        )
    return frames


def check_device_augment(cfg):
    """STAGE2.DEVICE_AUGMENT decodes the JPEGs stored in a frames h5: refused at start for raw
    videos."""
    import h5py

    frames = Path(cfg.DATA.FRAMES)
    is_h5 = cfg.DATA.FRAMES_KIND == "h5" or (
        cfg.DATA.FRAMES_KIND == "auto" and frames.is_file() and h5py.is_hdf5(frames)
    )
    if cfg.STAGE2.DEVICE_AUGMENT and frames.exists() and not is_h5:
        raise InputError(
            "STAGE2.DEVICE_AUGMENT True decodes the JPEGs stored in a frames h5, but DATA.FRAMES"
            f" {frames} holds videos: convert them with tools/make_h5.py and set DATA.FRAMES to the"
            " h5, or set STAGE2.DEVICE_AUGMENT False"
        )


def _size(values):
    """[] -> None (backbone default); [h, w, crop] -> ((h, w), crop); [h, w] -> ((h, w), min(h,
    w))."""
    if not values:
        return None
    return (int(values[0]), int(values[1])), int(values[2]) if len(values) == 3 else min(values[:2])


def stage2_transforms(cfg):
    """-> (train transform, test transform) for MODEL.BACKBONE, DATA.DATASET and the size keys (the
    train transform returns uint8 clips with STAGE2.UINT8_INPUT: tools/train_stage2.py normalises
    them on its device)."""
    from datasets.transforms import TrainTransform

    # decoded and augmented on the training device (datasets/device_augment.py)
    if cfg.STAGE2.DEVICE_AUGMENT:
        from datasets.device_augment import JpegTrainTransform

        train = JpegTrainTransform(cfg.MODEL.BACKBONE, size=_size(cfg.DATA.TRAIN_SIZE))
    else:
        train = TrainTransform(
            cfg.MODEL.BACKBONE,
            size=_size(cfg.DATA.TRAIN_SIZE),
            normalise=not cfg.STAGE2.UINT8_INPUT,
        )
    return train, test_transform(cfg)


def test_transform(cfg, backbone=None, dataset=None, ten_crop=None, size=None):
    """-> the test transform of MODEL.BACKBONE, DATA.DATASET, TEST.TEN_CROP and DATA.TEST_SIZE, any
    of them replaced by a plain value (e.g. the backbone of a checkpoint): no cloned config
    needed."""
    from datasets.transforms import TestTransform

    return TestTransform(
        backbone or cfg.MODEL.BACKBONE,
        dataset or cfg.DATA.DATASET,
        ten_crop=cfg.TEST.TEN_CROP if ten_crop is None else ten_crop,
        size=_size(cfg.DATA.TEST_SIZE if size is None else size),
    )


def stage2_train_dataset(cfg, frames, videos, transform):
    """ClipDataset of the train videos with the pseudo-labels of DATA.PSEUDO_LABELS (none for
    HARD_LABELS)."""
    from datasets.clips import ClipDataset
    from utils.pseudo_labels import load_score_dict

    s2 = cfg.STAGE2
    pseudo = None
    if not s2.HARD_LABELS:
        if not cfg.DATA.PSEUDO_LABELS:
            raise NotFoundError(
                "DATA.PSEUDO_LABELS is empty: set it to a stage-1 run's pseudo_labels.npz (or "
                "the authors' *_PLs.npy), or set STAGE2.HARD_LABELS True for the w/o-PLs ablation"
            )
        pseudo = load_score_dict(cfg.DATA.PSEUDO_LABELS)
    # STAGE2.DEVICE_AUGMENT: refused now, not in a worker
    if getattr(transform, "reads_jpegs", False) and videos:
        frames.read_jpegs(videos[0].name, 0, 1)
    return ClipDataset(
        frames,
        videos,
        pseudo,
        transform,
        clip_num=s2.CLIP_NUM,
        label_mode=s2.LABEL_MODE,
        normal_label=s2.NORMAL_LABEL,
        hard_labels=s2.HARD_LABELS,
        seed=cfg.SEED,
        pl_tolerance=s2.PL_TOLERANCE,
    )
