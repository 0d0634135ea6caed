"""Every configuration key, with its default and one comment each.

Order of precedence: these defaults -> the experiment YAML (`--cfg`) -> `KEY VALUE` overrides on the
command line -> derived values -> `validate_cfg` -> frozen. Defaults reproduce the official stage-1
setting on ShanghaiTech-I3D (docs/REFERENCE.md §1); YAMLs under configs/ only override."""

from yacs.config import CfgNode as CN

# every list of allowed values is defined by the module that owns the choice (none imports configs)
from datasets.clip_labels import LABEL_MODES, NORMAL_LABELS
from datasets.features import STORAGES
from datasets.frames import FRAMES_KINDS
from datasets.sampling import MODES as SAMPLINGS
from datasets.specs import DATASETS
from models.build import BACKBONES, STAGE1_LOSSES
from models.losses import BAG_SCORES
from models.mil_generator import INPUT_NORMS
from models.tv_video import MVIT_CLIP, TORCHVISION
from utils.protocol import CHECKPOINT_CHOICES
from utils.training import COMPILE_MODES, OPTIMIZERS, STAGE1_OPTIMIZERS
from utils.video_scoring import AMP_DTYPES

_C = CN()
_C.OUTPUT_DIR = "output/run"  # one folder per run: config, logs, metrics, checkpoints, products
_C.SEED = 0  # seeds python, numpy and torch once (never re-seeded per epoch)
_C.DEVICE = "auto"  # "auto" (cuda if available), "cpu", "cuda" or "cuda:N"
# deterministic GPU kernels (no cuDNN autotuning, deterministic algorithms, cuBLAS workspaces):
# bitwise
# repeatable runs and resumes on a GPU, at some speed; the CPU is deterministic already
_C.DETERMINISTIC = False

_C.DATA = CN()
# shanghaitech | ucf_crime | xd_violence | demo, or any name of your own with DATA.MANIFEST
_C.DATA.DATASET = "shanghaitech"
# a dataset of your own: a .csv / .jsonl manifest of its videos (labels, splits, anomalous
# intervals; docs/own_data.md), used instead of the split, mask and annotation files
_C.DATA.MANIFEST = ""
# official h5 (keys '<video>.npy'), RTFM-style list file of .npy paths, or a folder (or list) of
# Sultani et al.'s 32-segment '<video>_C.txt' files (rows = segments; see Training_Guidelines.md)
_C.DATA.FEATURES = ""
# test videos' features when they are in another file or list ("" = DATA.FEATURES). RTFM-style lists
# (ShanghaiTech, UCF-Crime, XD-Violence) come as a train list and a test list: set DATA.FEATURES to
# the train list and DATA.TEST_FEATURES to the test list
_C.DATA.TEST_FEATURES = ""
# folder that relative paths in a feature list file are resolved against ("" = the list's folder)
_C.DATA.FEATURE_ROOT = ""
# train video list (official txt or feature list)
_C.DATA.TRAIN_SPLIT = "data/shanghaitech/SH_Train_new.txt"
# test video list (official txt or feature list)
_C.DATA.TEST_SPLIT = "data/shanghaitech/SH_Test_NEW.txt"
# ShanghaiTech/demo: per-frame masks '<video>.npy'
_C.DATA.TEST_MASK_DIR = "data/shanghaitech/test_frame_mask"
# UCF-Crime: Temporal_Anomaly_Annotation_New.txt; XD-Violence: test_gt_intervals.json
_C.DATA.TEST_ANNOTATION = ""
# masks of abnormal TRAIN videos, to score pseudo-labels ("" = none)
_C.DATA.TRAIN_MASK_DIR = "data/shanghaitech/test_frame_mask"
_C.DATA.FEATURE_DIM = 1024  # D: 1024 for I3D, 4096 for C3D (checked against the file)
# divide every feature row by its L2 norm, in training, evaluation and pseudo-labels alike
_C.DATA.L2_NORM = False
# memory (float32 in RAM) | float16 (half the RAM) | lazy (read from disk per batch)
_C.DATA.STORAGE = "memory"
_C.DATA.CROP = -1  # feature files with a crop axis: -1 averages the crops, k uses crop k
_C.DATA.CLIP_LEN = 16  # frames covered by one feature clip (score expansion to frames)
# share of each train class held out for checkpoint selection (best_val.pth); 0 = off
_C.DATA.VAL_FRACTION = 0.0
# seed of the validation split (independent of SEED, so seed sweeps share one split)
_C.DATA.VAL_SEED = 0

_C.DATA.FRAMES = ""  # stage 2: frames h5 (tools/make_h5.py) or a folder / list file of videos
_C.DATA.FRAMES_KIND = "auto"  # auto | h5 | video: how DATA.FRAMES is read
_C.DATA.FRAMES_ROOT = ""  # folder that relative paths in a video list file are resolved against
_C.DATA.PSEUDO_LABELS = ""  # stage 2: pseudo-label file (ours .npz/.npy or the authors' .npy)
_C.DATA.NUM_WORKERS = 4  # DataLoader worker processes per rank (0 = load in the main process)
# stage-2 training [resize_h, resize_w, crop]; [] = backbone default (I3D 256 340 224, C3D 128 171
# 112)
_C.DATA.TRAIN_SIZE = []
# stage-2 testing [resize_h, resize_w] (+ crop for C3D); [] = official per backbone and dataset
_C.DATA.TEST_SIZE = []

_C.MODEL = CN()
_C.MODEL.BACKBONE = "i3d"  # i3d | c3d: the encoder fine-tuned in stage 2
_C.MODEL.EXPAND_K = 8  # k: guided-head channels per class (the SGA outputs 2k channels)
_C.MODEL.DROPOUT = 0.8  # dropout before the weighted-classification head
# channel multiplier of the backbone (1.0 = the real I3D/C3D; the demo uses less)
_C.MODEL.WIDTH = 1.0
# Kinetics I3D / Sports-1M C3D / MIST checkpoint loaded before fine-tuning ("" = random)
_C.MODEL.PRETRAINED = ""
# self-guided attention + guided head; False = backbone + head only (Table 5 "w/o SGA")
_C.MODEL.SGA = True

_C.STAGE1 = CN()
# official: 3001 "epochs"; an epoch pairs min(#normal, #abnormal) videos in batches
_C.STAGE1.EPOCHS = 3001
# evaluate on the test split (and save last.pth) every N epochs, and after the last
_C.STAGE1.EVAL_PERIOD = 10
_C.STAGE1.BATCH_SIZE = 40  # videos per class per iteration (40 normal + 40 abnormal)
_C.STAGE1.PART_NUM = 32  # L: sub-bags per video
_C.STAGE1.PART_LEN = 7  # T: clips per sub-bag (official: 7 ShanghaiTech, 3 UCF-C3D, 4 UCF-I3D)
_C.STAGE1.TOPK = 0  # k clips averaged into the bag score; 0 means k = PART_LEN (official)
# uniform (official: shared shift) | random (per-sub-bag shift) | isolated (paper's baseline)
_C.STAGE1.SAMPLING = "uniform"
# topk (official: mean of top-k clips) | subbag_mean (paper Eq. 1/6: max sub-bag mean)
_C.STAGE1.BAG_SCORE = "topk"
# mist | sultani (baseline: PART_NUM mean-pooled segments, max bag score, LAMBDA_* on sums)
_C.STAGE1.METHOD = "mist"
_C.STAGE1.LAMBDA_SPARSE = 0.01  # weight of the mean abnormal score (sparsity)
_C.STAGE1.LAMBDA_SMOOTH = 0.0  # weight of the squared-difference smoothness term (official: off)
_C.STAGE1.DROPOUT = 0.6  # dropout after the first two Linear layers
# each video's repeated sampled clips pass the first Linear layer once (same maths, less work)
_C.STAGE1.DEDUP_ROWS = True
# CPU dropout masks from numpy's PCG64 (torch's serial CPU Bernoulli is ~half an
_C.STAGE1.FAST_DROPOUT = True
# iteration on non-Intel CPUs); same distribution and reproducibility, another random stream. False:
# torch's own
# masks, bit for bit nn.Dropout's. GPUs always use torch's generator
# adagrad (official) | adam | adamw (decoupled weight decay); docs/stage1_recipe.md
_C.STAGE1.OPTIMIZER = "adagrad"
_C.STAGE1.LR = 0.01  # learning rate (official: Adagrad 0.01)
_C.STAGE1.WEIGHT_DECAY = 1e-3  # weight decay (official: Adagrad 1e-3, hard-coded)
# the learning rate rises linearly over the first N iterations (0 = none, the official constant)
_C.STAGE1.WARMUP_ITERS = 0
# none (official: raw rows) | row_std (each row minus its mean, over its std, inside the model:
# the scores no longer depend on the features' scale; docs/stage1_recipe.md)
_C.STAGE1.INPUT_NORM = "none"
_C.STAGE1.GRAD_CLIP = 10.0  # max gradient L2 norm (hard-coded in the official code)
# clips scored per forward pass (evaluation, pseudo-labels): 256 MB of C3D features
_C.STAGE1.EVAL_BATCH_ROWS = 16384

_C.STAGE2 = CN()
_C.STAGE2.EPOCHS = 301  # official: 301
# evaluate on the test videos (and save last.pth) every N epochs, and after the last
_C.STAGE2.EVAL_PERIOD = 10
# videos per class per iteration, all ranks together (SHT 10 + 10, UCF 16 + 16 in the paper)
_C.STAGE2.BATCH_SIZE = 10
_C.STAGE2.CLIP_NUM = 3  # clips sampled per video
_C.STAGE2.OPTIMIZER = "adam"  # adam | sgd (Nesterov, momentum 0.9)
_C.STAGE2.LR = 1e-4  # base learning rate
_C.STAGE2.WEIGHT_DECAY = 5e-4  # L2 weight decay (coupled, as torch.optim.Adam)
_C.STAGE2.NO_BIAS_DECAY = False  # no weight decay on biases (official UCF-C3D)
# lr x (epoch + 0.5) / 5 for the first epochs (official LambdaLR), then constant
_C.STAGE2.WARMUP_EPOCHS = 5
# backbone frozen (and its BatchNorm in eval mode) for the first N epochs
_C.STAGE2.FREEZE_EPOCHS = 30
_C.STAGE2.BN_EVAL = False  # keep backbone BatchNorm in eval mode after unfreezing too
# iterations per optimizer step (gradient accumulation, continuous across epochs)
_C.STAGE2.ACCUMULATE = 3
_C.STAGE2.GRAD_CLIP = 20.0  # max gradient L2 norm (official: 20 SHT-I3D/UCF-C3D, 10 SHT-C3D)
# (abnormal, normal) weights of the soft cross-entropy (official SHT-I3D)
_C.STAGE2.CLASS_WEIGHTS = [0.8, 0.65]
_C.STAGE2.LAMBDA_GUIDED = 1.0  # weight of the guided head's loss
# clip label from PLs: interp (correct direction) | interp_official (inverted) | max
_C.STAGE2.LABEL_MODE = "interp"
# normal videos' clips: zero (paper) | pseudo (official UCF-C3D: generator scores)
_C.STAGE2.NORMAL_LABEL = "zero"
_C.STAGE2.HARD_LABELS = False  # video labels as clip labels (the paper's "w/o PLs" ablation)
# warn when a video's pseudo-labels and segments differ by more clips than this
_C.STAGE2.PL_TOLERANCE = 1
_C.STAGE2.AMP = "off"  # off | bf16 | fp16 (torch.autocast; fp16 uses a GradScaler)
_C.STAGE2.SYNC_BN = False  # SyncBatchNorm across ranks (torchrun on GPUs only; refused on the CPU)
# channels_last_3d memory format (faster convolutions on recent GPUs)
_C.STAGE2.CHANNELS_LAST = False
# the loader ships uint8 clips, normalised on the training device: the same
_C.STAGE2.UINT8_INPUT = True
# float32 values bit for bit, 4x fewer bytes to a GPU and less CPU work per clip in the loader
# workers
# torch.compile the training forward: "" (off) | default | reduce-overhead | max-autotune
_C.STAGE2.COMPILE = ""
# the loader ships the stored JPEGs; decoding (nvjpeg on a GPU) and augmentation run
_C.STAGE2.DEVICE_AUGMENT = False
# on the training device (datasets/device_augment.py): needs a frames h5; pixels within 3 levels of
# the CPU path

_C.PRETEXT = CN()
# engine/pretext.py: self-supervised pace prediction on the unlabelled DATA.TRAIN_SPLIT frames
# (the video demo pretrains its encoder with it); which stride made this 16-frame clip?
_C.PRETEXT.STRIDES = [1, 2, 4]
_C.PRETEXT.ITERS = 300
_C.PRETEXT.BATCH_SIZE = 12
_C.PRETEXT.LR = 1e-3
_C.PRETEXT.EVAL_CLIPS = 240  # other draws of the same videos, at the test transform

_C.INFER = CN()
# tools/infer.py: an alarm starts when a window's score exceeds this (strict >, as the FARs)
_C.INFER.THRESHOLD = 0.5
# hysteresis: an alarm lasts while scores exceed this; -1.0 = THRESHOLD (none)
_C.INFER.LOW_THRESHOLD = -1.0
_C.INFER.MIN_FRAMES = 16  # an alarm is raised once its windows span at least this many frames
# the same in seconds; the larger of MIN_FRAMES and MIN_SECONDS x fps applies
_C.INFER.MIN_SECONDS = 0.0
_C.INFER.STRIDE = 16  # frames between the first frames of consecutive scored 16-frame windows
_C.INFER.BATCH_SIZE = 8  # windows per forward pass at most (fewer when no more frames are waiting)
_C.INFER.QUEUE_SIZE = 64  # frames buffered between the reader thread and the model
# full queue: drop (the oldest frame) | block (the reader waits) | auto (drop for live sources)
_C.INFER.DROP = "auto"
_C.INFER.REALTIME = False  # read a video file at its frame rate, as a camera would deliver it
_C.INFER.FPS = 0.0  # frame rate used for times; 0.0 = the source's (25.0 if it reports none)
# infer.py / extract_features.py: off | bf16 | fp16 | auto (fp16 on CUDA, off on the CPU)
_C.INFER.AMP = "auto"

_C.PSEUDO_LABEL = CN()
# generator that writes the pseudo-labels: last | best (test-selected) | best_val
_C.PSEUDO_LABEL.CHECKPOINT = "last"
_C.PSEUDO_LABEL.KERNEL = 5  # box smoothing width (odd)
_C.PSEUDO_LABEL.PASSES = 2  # smoothing passes (official: 2; the paper describes 1)

_C.TEST = CN()
_C.TEST.CHECKPOINT = ""  # checkpoint evaluated by tools/test.py
# or: a saved per-video score file (.npz, or official-style .npy dict) to evaluate
_C.TEST.SCORES = ""
_C.TEST.THRESHOLD = 0.5  # score threshold of the false alarm rates
# clips a video's scores may run past its ground truth (GT padded by its last frame),
_C.TEST.MAX_PAD_CLIPS = 0
# or fall short of it beyond the unscored n % 16 tail + 1 clip (those GT frames are not evaluated)
# stage 2: average the scores of 10 crops (4 corners + centre, and mirrored)
_C.TEST.TEN_CROP = False
_C.TEST.BATCH_SIZE = 16  # stage 2: clips per forward pass at test time
# target FARs on normal-video frames: thresholds -> test_<name>_calibration.json
_C.TEST.CALIBRATION_FARS = [0.0005, 0.001, 0.01]
# the normal videos thresholds are calibrated on: test (the test split) | val (the `val` videos of
# DATA.MANIFEST, held out of training: the honest choice, docs/own_data.md §4)
_C.TEST.CALIBRATION_SPLIT = "test"

# key -> its allowed values, checked by validate_cfg in this order (dict registries give their keys)
CHOICES = {
    "DATA.DATASET": tuple(DATASETS),
    "DATA.STORAGE": tuple(STORAGES),
    "STAGE1.SAMPLING": tuple(SAMPLINGS),
    "STAGE1.BAG_SCORE": tuple(BAG_SCORES),
    "STAGE1.METHOD": tuple(STAGE1_LOSSES),
    "STAGE1.OPTIMIZER": tuple(STAGE1_OPTIMIZERS),
    "STAGE1.INPUT_NORM": tuple(INPUT_NORMS),
    "PSEUDO_LABEL.CHECKPOINT": tuple(CHECKPOINT_CHOICES),
    "TEST.CALIBRATION_SPLIT": ("test", "val"),
    "MODEL.BACKBONE": tuple(BACKBONES),
    "STAGE2.OPTIMIZER": tuple(OPTIMIZERS),
    "STAGE2.LABEL_MODE": tuple(LABEL_MODES),
    "STAGE2.NORMAL_LABEL": tuple(NORMAL_LABELS),
    "STAGE2.AMP": tuple(AMP_DTYPES),
    "STAGE2.COMPILE": tuple(COMPILE_MODES),
    "DATA.FRAMES_KIND": tuple(FRAMES_KINDS),
}


def get_cfg_defaults():
    """A fresh, mutable copy of the defaults."""
    return _C.clone()


def derive_cfg(cfg):
    """Fills values that default to being derived from others."""
    if cfg.STAGE1.TOPK == 0:
        cfg.STAGE1.TOPK = cfg.STAGE1.PART_LEN


def _check_choices(cfg, *keys):
    """ValueError naming the first of `keys` whose value is not one of its CHOICES."""
    for key in keys:
        section, name = key.split(".")
        if cfg[section][name] not in CHOICES[key]:
            raise ValueError(f"{key} = {cfg[section][name]!r} is not one of {CHOICES[key]}")


def validate_cfg(cfg):
    """Raises ValueError naming the key and the accepted values on an inconsistent config."""
    if cfg.DATA.DATASET not in CHOICES["DATA.DATASET"] and not cfg.DATA.MANIFEST:
        raise ValueError(
            f"DATA.DATASET = {cfg.DATA.DATASET!r} is not one of {CHOICES['DATA.DATASET']}: for a "
            "dataset of your own set DATA.MANIFEST to its manifest (docs/own_data.md)"
        )
    _check_choices(cfg, "DATA.STORAGE", "STAGE1.SAMPLING", "STAGE1.BAG_SCORE", "STAGE1.METHOD")
    _check_choices(cfg, "STAGE1.OPTIMIZER", "STAGE1.INPUT_NORM")
    if not 0.0 <= cfg.DATA.VAL_FRACTION < 1.0:
        raise ValueError(f"DATA.VAL_FRACTION must be in [0, 1), got {cfg.DATA.VAL_FRACTION}")
    s1 = cfg.STAGE1
    positive = {
        "STAGE1.EPOCHS": s1.EPOCHS,
        "STAGE1.EVAL_PERIOD": s1.EVAL_PERIOD,
        "STAGE1.BATCH_SIZE": s1.BATCH_SIZE,
        "STAGE1.PART_NUM": s1.PART_NUM,
        "STAGE1.PART_LEN": s1.PART_LEN,
        "STAGE1.TOPK": s1.TOPK,
        "STAGE1.LR": s1.LR,
        "DATA.FEATURE_DIM": cfg.DATA.FEATURE_DIM,
        "DATA.CLIP_LEN": cfg.DATA.CLIP_LEN,
        "STAGE1.EVAL_BATCH_ROWS": s1.EVAL_BATCH_ROWS,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ValueError(f"{key} must be positive, got {value}")
    if s1.TOPK > s1.PART_NUM * s1.PART_LEN:
        raise ValueError(
            f"STAGE1.TOPK = {s1.TOPK} exceeds the {s1.PART_NUM * s1.PART_LEN} clips sampled per"
            " video"
        )
    if s1.WARMUP_ITERS < 0:
        raise ValueError(f"STAGE1.WARMUP_ITERS must be >= 0 (0 for none), got {s1.WARMUP_ITERS}")
    if not 0.0 <= s1.DROPOUT < 1.0:
        raise ValueError(f"STAGE1.DROPOUT must be in [0, 1), got {s1.DROPOUT}")
    for key, value in (
        ("STAGE1.WEIGHT_DECAY", s1.WEIGHT_DECAY),
        ("STAGE2.WEIGHT_DECAY", cfg.STAGE2.WEIGHT_DECAY),
    ):
        if not value >= 0.0:  # also refuses NaN
            raise ValueError(f"{key} must be >= 0 (0.0 for none), got {value}")
    if not cfg.STAGE2.LR > 0.0:
        raise ValueError(f"STAGE2.LR must be positive, got {cfg.STAGE2.LR}")
    if cfg.PSEUDO_LABEL.KERNEL < 1 or cfg.PSEUDO_LABEL.KERNEL % 2 == 0:
        raise ValueError(
            f"PSEUDO_LABEL.KERNEL must be a positive odd integer, got {cfg.PSEUDO_LABEL.KERNEL}"
        )
    _check_choices(cfg, "PSEUDO_LABEL.CHECKPOINT", "TEST.CALIBRATION_SPLIT")
    if (
        cfg.PSEUDO_LABEL.CHECKPOINT == "best_val"
        and cfg.DATA.VAL_FRACTION == 0.0
        and not cfg.DATA.MANIFEST
    ):
        raise ValueError(
            "PSEUDO_LABEL.CHECKPOINT best_val needs a validation split: set DATA.VAL_FRACTION > 0"
        )
    _validate_stage2(cfg)


def _validate_stage2(cfg):
    s2 = cfg.STAGE2
    _check_choices(
        cfg,
        "MODEL.BACKBONE",
        "STAGE2.OPTIMIZER",
        "STAGE2.LABEL_MODE",
        "STAGE2.NORMAL_LABEL",
        "STAGE2.AMP",
        "STAGE2.COMPILE",
        "DATA.FRAMES_KIND",
    )
    for key in ("EPOCHS", "EVAL_PERIOD", "BATCH_SIZE", "CLIP_NUM", "ACCUMULATE"):
        if s2[key] <= 0:
            raise ValueError(f"STAGE2.{key} must be positive, got {s2[key]}")
    if len(s2.CLASS_WEIGHTS) != 2:
        raise ValueError(f"STAGE2.CLASS_WEIGHTS must be (abnormal, normal), got {s2.CLASS_WEIGHTS}")
    if len(cfg.DATA.TRAIN_SIZE) not in (0, 3) or len(cfg.DATA.TEST_SIZE) not in (0, 2, 3):
        raise ValueError(
            "DATA.TRAIN_SIZE is [] or [resize_h, resize_w, crop]; DATA.TEST_SIZE is [], [h, w] or"
            " [h, w, crop]"
        )
    _validate_torchvision_input(cfg)
    _validate_pretext(cfg.PRETEXT)


def _validate_pretext(p):
    strides = list(p.STRIDES)
    if len(strides) < 2 or len(set(strides)) != len(strides) or min(strides) < 1:
        raise ValueError(
            f"PRETEXT.STRIDES = {strides}: give at least two different positive frame strides, "
            "e.g. [1, 2, 4]"
        )
    for key in ("ITERS", "BATCH_SIZE", "EVAL_CLIPS"):
        if p[key] <= 0:
            raise ValueError(f"PRETEXT.{key} must be positive, got {p[key]}")
    if not p.LR > 0:
        raise ValueError(f"PRETEXT.LR must be positive, got {p.LR}")


def _validate_torchvision_input(cfg):
    """torchvision's backbones have one width, and mvit_v2_s one clip size (models/tv_video.py):
    refused here, before a run folder exists, not at the first forward."""
    name = cfg.MODEL.BACKBONE
    if name not in TORCHVISION:
        return
    if cfg.MODEL.WIDTH != 1.0:
        raise ValueError(
            f"MODEL.WIDTH = {cfg.MODEL.WIDTH}: torchvision backbone {name!r} has one width; set "
            "MODEL.WIDTH 1.0 (tiny runs shrink DATA.TRAIN_SIZE / DATA.TEST_SIZE instead)"
        )
    if name != "mvit_v2_s":
        return
    train, test = cfg.DATA.TRAIN_SIZE, cfg.DATA.TEST_SIZE
    # the crops as datasets/build.py reads the keys ([h, w] tests on a min(h, w) square)
    crops = {
        "DATA.TRAIN_SIZE": train[2] if train else MVIT_CLIP[1],
        "DATA.TEST_SIZE": (test[2] if len(test) == 3 else min(test)) if test else MVIT_CLIP[1],
    }
    for key, crop in crops.items():
        if crop != MVIT_CLIP[1]:
            raise ValueError(
                f"{key} = {list(cfg.DATA[key.split('.')[1]])} gives {crop}x{crop} clips, but "
                f"mvit_v2_s takes {MVIT_CLIP[1]}x{MVIT_CLIP[2]} only (torchvision builds its "
                f"relative positions for that size): set {key} [256, 341, 224] or leave it []"
            )
