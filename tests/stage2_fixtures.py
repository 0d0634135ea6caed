"""A tiny ShanghaiTech-format stage-2 dataset: frames h5, splits, masks, pseudo-labels (fast CPU
tests)."""

from pathlib import Path

import h5py
import numpy as np

from datasets.frames import encode_segment, frame_key
from utils.pseudo_labels import save_pseudo_labels

H, W = 32, 40


def _frames(rng, n_frames, mask):
    """Grey noisy frames; anomalous frames carry a bright 12x12 square."""
    frames = rng.integers(90, 110, (n_frames, H, W, 3), dtype=np.uint8)
    if mask is not None:
        frames[mask.astype(bool), 10:22, 14:26] = 240
    return frames


def make_tiny_videos(root, n_train=4, n_test=2, seed=0):
    """n_train normal + n_train abnormal train videos, n_test + n_test test videos, 3-5 segments
    each.

    Writes frames.h5 (official frame layout), train.txt, test.txt, masks/ and
    pseudo_labels.{npy,npz} (the abnormal videos' true clip-level anomaly fraction, as a perfect
    stage 1 would give) -> paths."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    train_lines, test_lines, pseudo = [], [], {}
    with h5py.File(root / "frames.h5", "w") as h5:
        for split, count, lines in (("tr", n_train, train_lines), ("te", n_test, test_lines)):
            for i in range(2 * count):
                abnormal, n_frames = i % 2, 16 * int(rng.integers(3, 6)) + int(rng.integers(0, 16))
                name, mask = f"{split}_{i:04d}", None
                if abnormal:
                    mask = np.zeros(n_frames, np.uint8)
                    mask[16:40] = 1
                    np.save(root / "masks" / f"{name}.npy", mask)
                frames = _frames(rng, n_frames, mask)
                for s in range(n_frames // 16):
                    h5.create_dataset(
                        frame_key(name, s),
                        data=encode_segment(frames[16 * s : 16 * s + 16]),
                        chunks=True,
                    )
                if split == "tr":
                    pseudo[name] = (
                        np.zeros(n_frames // 16)
                        if mask is None
                        else mask[: 16 * (n_frames // 16)].reshape(-1, 16).mean(axis=1)
                    )
                lines.append(
                    f"{name},{abnormal}"
                    + ("" if split == "tr" else f",{-1 if abnormal else n_frames}")
                )
    (root / "train.txt").write_text("\n".join(train_lines) + "\n")
    (root / "test.txt").write_text("\n".join(test_lines) + "\n")
    save_pseudo_labels(root / "pseudo_labels", pseudo)
    return {
        "frames": root / "frames.h5",
        "train": root / "train.txt",
        "test": root / "test.txt",
        "masks": root / "masks",
        "pseudo_labels": root / "pseudo_labels.npz",
    }


def tiny_stage2_opts(paths, out, backbone="c3d", epochs=2, **extra):
    """KEY VALUE overrides for a stage-2 run on the tiny videos with a width-reduced backbone."""
    opts = {
        "DATA.DATASET": "shanghaitech",
        "DATA.FRAMES": paths["frames"],
        "DATA.TRAIN_SPLIT": paths["train"],
        "DATA.TEST_SPLIT": paths["test"],
        "DATA.TEST_MASK_DIR": paths["masks"],
        "DATA.PSEUDO_LABELS": paths["pseudo_labels"],
        "DATA.NUM_WORKERS": 0,
        "DATA.TRAIN_SIZE": "[32, 40, 32]",
        "DATA.TEST_SIZE": "[32, 40, 32]",
        "MODEL.BACKBONE": backbone,
        "MODEL.WIDTH": 0.0625,
        "MODEL.EXPAND_K": 2,
        "OUTPUT_DIR": out,
        "STAGE2.EPOCHS": epochs,
        "STAGE2.EVAL_PERIOD": 1,
        "STAGE2.BATCH_SIZE": 2,
        "STAGE2.CLIP_NUM": 2,
        "STAGE2.FREEZE_EPOCHS": 1,
        "STAGE2.WARMUP_EPOCHS": 1,
        "STAGE2.ACCUMULATE": 3,
        "STAGE2.LR": 1e-3,
        "TEST.BATCH_SIZE": 8,
        **extra,
    }
    return ["--cfg", ""] + [str(x) for kv in opts.items() for x in kv]


REAL_VIDEO = Path(__file__).parent / "data" / "videos" / "Normal_Videos020_x264_head100.mp4"


def tiny_mist_on_the_real_video():
    """-> (a seeded MIST-C3D at 1/16 width, k = 2, in eval mode; its clip scores of the shipped real
    video's 6 clips at 32x40 / 32, as engine/evaluate.py scores them)."""
    import torch

    from datasets.frames import open_frames
    from datasets.transforms import TestTransform
    from models.mist import MIST
    from utils.video_scoring import score_videos_on_frames

    torch.manual_seed(0)
    net = MIST("c3d", expand_k=2, width=0.0625).eval()
    frames = open_frames([REAL_VIDEO], kind="video")
    transform = TestTransform("c3d", "ucf_crime", size=((32, 40), 32))
    scores = score_videos_on_frames(net, frames, frames.names, transform, torch.device("cpu"))
    return net, scores[REAL_VIDEO.stem]
