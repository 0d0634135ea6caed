"""Every configuration key, with its default and one comment each.

Order of precedence: these defaults -> the experiment YAML (`--cfg`) -> `KEY VALUE` overrides on the command
line -> derived values -> `validate_cfg` -> frozen. Defaults reproduce the official stage-1 setting on
ShanghaiTech-I3D (MIST_REFERENCE.md §1); YAMLs under configs/ only override.
"""
from yacs.config import CfgNode as CN

_C = CN()
_C.OUTPUT_DIR = "output/run"  # one folder per run: config, logs, metrics, checkpoints, products
_C.SEED = 0  # seeds python, numpy and torch once (never re-seeded per epoch)
_C.DEVICE = "auto"  # "auto" (cuda if available), "cpu", "cuda" or "cuda:N"

_C.DATA = CN()
_C.DATA.DATASET = "shanghaitech"  # shanghaitech | ucf_crime | xd_violence | demo (split/GT conventions)
_C.DATA.FEATURES = ""  # official h5 (keys '<video>.npy') or RTFM-style list file
_C.DATA.FEATURE_ROOT = ""  # folder that relative paths in a feature list file are resolved against ("" = the list's folder)
_C.DATA.TRAIN_SPLIT = "data/shanghaitech/SH_Train_new.txt"  # train video list (official txt or feature list)
_C.DATA.TEST_SPLIT = "data/shanghaitech/SH_Test_NEW.txt"  # test video list (official txt or feature list)
_C.DATA.TEST_MASK_DIR = "data/shanghaitech/test_frame_mask"  # ShanghaiTech/demo: per-frame masks '<video>.npy'
_C.DATA.TEST_ANNOTATION = ""  # UCF-Crime: Temporal_Anomaly_Annotation_New.txt; XD-Violence: test_gt_intervals.json
_C.DATA.TRAIN_MASK_DIR = "data/shanghaitech/test_frame_mask"  # masks of abnormal TRAIN videos, to score pseudo-labels ("" = none)
_C.DATA.FEATURE_DIM = 1024  # D: 1024 for I3D, 4096 for C3D (checked against the file)
_C.DATA.L2_NORM = False  # divide every feature row by its L2 norm, in training, evaluation and pseudo-labels alike
_C.DATA.STORAGE = "memory"  # memory (float32 in RAM) | float16 (half the RAM) | lazy (read from disk per batch)
_C.DATA.CROP = -1  # feature files with a crop axis: -1 averages the crops, k uses crop k
_C.DATA.CLIP_LEN = 16  # frames covered by one feature clip (score expansion to frames)

_C.STAGE1 = CN()
_C.STAGE1.EPOCHS = 3001  # official: 3001 "epochs"; an epoch pairs min(#normal, #abnormal) videos in batches
_C.STAGE1.EVAL_PERIOD = 10  # evaluate on the test split (and save last.pth) every N epochs, and after the last
_C.STAGE1.BATCH_SIZE = 40  # videos per class per iteration (40 normal + 40 abnormal)
_C.STAGE1.PART_NUM = 32  # L: sub-bags per video
_C.STAGE1.PART_LEN = 7  # T: clips per sub-bag (official: 7 ShanghaiTech, 3 UCF-C3D, 4 UCF-I3D)
_C.STAGE1.TOPK = 0  # k clips averaged into the bag score; 0 means k = PART_LEN (official)
_C.STAGE1.SAMPLING = "uniform"  # uniform (official: shared shift) | random (per-sub-bag shift) | isolated (paper's baseline)
_C.STAGE1.BAG_SCORE = "topk"  # topk (official: mean of top-k clips) | subbag_mean (paper Eq. 1/6: max sub-bag mean)
_C.STAGE1.LAMBDA_SPARSE = 0.01  # weight of the mean abnormal score (sparsity)
_C.STAGE1.LAMBDA_SMOOTH = 0.0  # weight of the squared-difference smoothness term (official: off)
_C.STAGE1.DROPOUT = 0.6  # dropout after the first two Linear layers
_C.STAGE1.LR = 0.01  # Adagrad learning rate
_C.STAGE1.WEIGHT_DECAY = 1e-3  # Adagrad weight decay (hard-coded in the official code)
_C.STAGE1.GRAD_CLIP = 10.0  # max gradient L2 norm (hard-coded in the official code)
_C.STAGE1.EVAL_BATCH_ROWS = 16384  # clips scored per forward pass (evaluation, pseudo-labels): 256 MB of C3D features

_C.PSEUDO_LABEL = CN()
_C.PSEUDO_LABEL.CHECKPOINT = "last"  # generator that writes the pseudo-labels: last | best (best = chosen on the test set)
_C.PSEUDO_LABEL.KERNEL = 5  # box smoothing width (odd)
_C.PSEUDO_LABEL.PASSES = 2  # smoothing passes (official: 2; the paper describes 1)

_C.TEST = CN()
_C.TEST.CHECKPOINT = ""  # checkpoint evaluated by tools/test.py
_C.TEST.SCORES = ""  # or: a saved per-video score file (.npz, or official-style .npy dict) to evaluate
_C.TEST.THRESHOLD = 0.5  # score threshold of the false alarm rates
_C.TEST.MAX_PAD_CLIPS = 0  # clips a video's scores may run past its ground truth (GT padded by its last frame)

DATASETS = ("shanghaitech", "ucf_crime", "xd_violence", "demo")
STORAGES = ("memory", "float16", "lazy")
SAMPLINGS = ("uniform", "random", "isolated")
BAG_SCORES = ("topk", "subbag_mean")


def get_cfg_defaults():
    """A fresh, mutable copy of the defaults."""
    return _C.clone()


def derive_cfg(cfg):
    """Fills values that default to being derived from others."""
    if cfg.STAGE1.TOPK == 0:
        cfg.STAGE1.TOPK = cfg.STAGE1.PART_LEN


def _check_choice(cfg_value, key, choices):
    if cfg_value not in choices:
        raise ValueError(f"{key} = {cfg_value!r} is not one of {choices}")


def validate_cfg(cfg):
    """Raises ValueError naming the key and the accepted values on an inconsistent config."""
    _check_choice(cfg.DATA.DATASET, "DATA.DATASET", DATASETS)
    _check_choice(cfg.DATA.STORAGE, "DATA.STORAGE", STORAGES)
    _check_choice(cfg.STAGE1.SAMPLING, "STAGE1.SAMPLING", SAMPLINGS)
    _check_choice(cfg.STAGE1.BAG_SCORE, "STAGE1.BAG_SCORE", BAG_SCORES)
    s1 = cfg.STAGE1
    positive = {"STAGE1.EPOCHS": s1.EPOCHS, "STAGE1.EVAL_PERIOD": s1.EVAL_PERIOD, "STAGE1.BATCH_SIZE": s1.BATCH_SIZE,
                "STAGE1.PART_NUM": s1.PART_NUM, "STAGE1.PART_LEN": s1.PART_LEN, "STAGE1.TOPK": s1.TOPK,
                "STAGE1.LR": s1.LR, "DATA.FEATURE_DIM": cfg.DATA.FEATURE_DIM, "DATA.CLIP_LEN": cfg.DATA.CLIP_LEN,
                "STAGE1.EVAL_BATCH_ROWS": s1.EVAL_BATCH_ROWS}
    for key, value in positive.items():
        if value <= 0:
            raise ValueError(f"{key} must be positive, got {value}")
    if s1.TOPK > s1.PART_NUM * s1.PART_LEN:
        raise ValueError(f"STAGE1.TOPK = {s1.TOPK} exceeds the {s1.PART_NUM * s1.PART_LEN} clips sampled per video")
    if not 0.0 <= s1.DROPOUT < 1.0:
        raise ValueError(f"STAGE1.DROPOUT must be in [0, 1), got {s1.DROPOUT}")
    if cfg.PSEUDO_LABEL.KERNEL < 1 or cfg.PSEUDO_LABEL.KERNEL % 2 == 0:
        raise ValueError(f"PSEUDO_LABEL.KERNEL must be a positive odd integer, got {cfg.PSEUDO_LABEL.KERNEL}")
    _check_choice(cfg.PSEUDO_LABEL.CHECKPOINT, "PSEUDO_LABEL.CHECKPOINT", ("last", "best"))
    if not cfg.DATA.FEATURES and not cfg.TEST.SCORES:
        raise ValueError("DATA.FEATURES is empty: set it to a feature h5 file or a feature list file")
