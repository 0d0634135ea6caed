"""A tiny ShanghaiTech-format stage-1 dataset written to a temporary folder (fast CPU training
tests)."""

from pathlib import Path

import numpy as np

from datasets.features import write_h5_features

DIM = 8


def _video(rng, n_clips, mask=None):
    """(n_clips, DIM) features; anomalous clips (any masked frame) get +3 on feature 0, noise sd
    0.5."""
    feats = rng.normal(0, 0.5, (n_clips, DIM)).astype(np.float32)
    if mask is not None:
        feats[:, 0] += 3.0 * mask[: 16 * n_clips].reshape(n_clips, 16).max(axis=1)
    return feats


def make_tiny_dataset(root, n_train=12, n_test=6, seed=0):
    """Writes feats.h5, train.txt, test.txt and masks/ under `root` -> dict of their paths.

    n_train normal + n_train abnormal train videos, n_test + n_test test videos, 8-40 clips each.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    features, train_lines, test_lines = {}, [], []
    for split, count, lines in (("tr", n_train, train_lines), ("te", n_test, test_lines)):
        for i in range(2 * count):
            abnormal, n_frames = i % 2, int(rng.integers(8, 41)) * 16 + int(rng.integers(0, 16))
            name = f"{split}_{i:04d}"
            mask = None
            if abnormal:
                mask = np.zeros(n_frames, np.uint8)
                start = int(rng.integers(0, n_frames // 2))
                mask[start : start + n_frames // 3] = 1
                np.save(root / "masks" / f"{name}.npy", mask)
            features[name] = _video(rng, n_frames // 16, mask)
            lines.append(
                f"{name},{abnormal}" + ("" if split == "tr" else f",{-1 if abnormal else n_frames}")
            )
    (root / "train.txt").write_text("\n".join(train_lines) + "\n")
    (root / "test.txt").write_text("\n".join(test_lines) + "\n")
    write_h5_features(root / "feats.h5", features)
    return {
        "features": root / "feats.h5",
        "train": root / "train.txt",
        "test": root / "test.txt",
        "masks": root / "masks",
        "arrays": features,
    }


def tiny_opts(paths, out, epochs=6, **extra):
    """KEY VALUE overrides that point a stage-1 run at the tiny dataset."""
    opts = {
        "DATA.DATASET": "shanghaitech",
        "DATA.FEATURES": paths["features"],
        "DATA.TRAIN_SPLIT": paths["train"],
        "DATA.TEST_SPLIT": paths["test"],
        "DATA.TEST_MASK_DIR": paths["masks"],
        "DATA.TRAIN_MASK_DIR": paths["masks"],
        "DATA.FEATURE_DIM": DIM,
        "OUTPUT_DIR": out,
        "STAGE1.EPOCHS": epochs,
        "STAGE1.EVAL_PERIOD": 2,
        "STAGE1.BATCH_SIZE": 4,
        "STAGE1.PART_NUM": 4,
        "STAGE1.PART_LEN": 2,
        "STAGE1.LR": 0.02,
        "STAGE1.DROPOUT": 0.0,
        **extra,
    }
    return ["--cfg", ""] + [str(x) for kv in opts.items() for x in kv]


def train_on_demo_features(features, demo, dim, out):
    """tools/train_stage1.py for 2 epochs on `features` extracted from the demo videos `demo`
    (datasets.demo_videos.make_demo_videos) -> its results."""
    from run_tool import run_tool

    opts = {
        "DATA.DATASET": "shanghaitech",
        "DATA.FEATURES": features,
        "DATA.TRAIN_SPLIT": demo["train_split"],
        "DATA.TEST_SPLIT": demo["test_split"],
        "DATA.TEST_MASK_DIR": demo["mask_dir"],
        "DATA.TRAIN_MASK_DIR": demo["mask_dir"],
        "DATA.FEATURE_DIM": dim,
        "OUTPUT_DIR": out,
        "STAGE1.EPOCHS": 2,
        "STAGE1.EVAL_PERIOD": 1,
        "STAGE1.BATCH_SIZE": 2,
        "STAGE1.PART_NUM": 4,
        "STAGE1.PART_LEN": 2,
    }
    return run_tool("train_stage1", ["--cfg", ""] + [str(x) for kv in opts.items() for x in kv])
