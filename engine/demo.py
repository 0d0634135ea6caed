"""The whole MIST pipeline on generated surveillance videos, on a CPU, in about ten minutes
(tools/demo.py).

Chains the real procedures: synthetic videos (datasets/demo_videos.py) -> a frames h5
(engine/frames_h5.py)
-> clip features (datasets/demo_features.py: documented motion statistics standing in for a
pretrained
I3D) -> stage 1 (engine/stage1.py) -> pseudo-labels -> stage 2 (engine/stage2.py: a width-reduced
MIST-I3D on small frames) -> the test of the stage-2 checkpoint (engine/evaluate.py), then prints
one table. A step whose product exists is not redone, so an interrupted demo continues where it
stopped."""

import time
from pathlib import Path

from datasets.demo_features import FEATURE_DIM, extract_all
from datasets.demo_videos import make_demo_videos
from datasets.frames import open_frames
from engine import evaluate, stage1, stage2
from engine.frames_h5 import make_h5
from utils.config import REPO_ROOT, load_cfg

CONFIGS = REPO_ROOT / "configs" / "demo"


def data_opts(out):
    """KEY VALUE overrides pointing both stages at the demo's generated files."""
    videos = out / "videos"
    return [
        "DATA.TRAIN_SPLIT",
        str(videos / "train.txt"),
        "DATA.TEST_SPLIT",
        str(videos / "test.txt"),
        "DATA.TEST_MASK_DIR",
        str(videos / "masks"),
        "DATA.TRAIN_MASK_DIR",
        str(videos / "masks"),
    ]


def prepare_data(out, workers):
    """videos -> frames h5 -> features h5; each step skipped when its product exists."""
    if not (out / "videos" / "videos.txt").exists():
        make_demo_videos(out / "videos")
    if not (out / "frames.h5").exists():
        make_h5(out / "videos" / "videos.txt", out / "frames.h5", workers=workers)
    if not (out / "features.h5").exists():
        frames = open_frames(out / "frames.h5")
        extract_all(frames, frames.names, out / "features.h5")


def run_stages(out):
    """Stage 1, stage 2 and the test of the last stage-2 model -> their results."""
    s1 = stage1.train(
        load_cfg(
            CONFIGS / "stage1_video.yaml",
            [
                "OUTPUT_DIR",
                str(out / "stage1"),
                "DATA.FEATURES",
                str(out / "features.h5"),
                "DATA.FEATURE_DIM",
                str(FEATURE_DIM),
            ]
            + data_opts(out),
        ),
        resume=True,
    )
    stage2_opts = [
        "DATA.FRAMES",
        str(out / "frames.h5"),
        "DATA.PSEUDO_LABELS",
        str(out / "stage1" / "pseudo_labels.npz"),
    ] + data_opts(out)
    # resume: a finished stage is not retrained, its products are rewritten
    s2 = stage2.train(
        load_cfg(CONFIGS / "stage2.yaml", stage2_opts + ["OUTPUT_DIR", str(out / "stage2")]),
        resume=True,
    )
    last = out / "stage2" / "checkpoints" / "last.pth"
    test = evaluate.test(
        load_cfg(
            CONFIGS / "stage2.yaml",
            stage2_opts + ["OUTPUT_DIR", str(out / "test"), "TEST.CHECKPOINT", str(last)],
        )
    )
    return s1, s2, test


def print_table(s1, s2, test, seconds):
    rows = [
        ("stage 1: generator on motion features", s1["test"]),
        ("stage 2: MIST-I3D (1/8 width), last epoch", s2["test"]),
        ("tools/test.py on the stage-2 checkpoint", test),
    ]
    print(f"\n{'':44s} {'AUC':>7s} {'AP':>7s} {'FAR':>7s} {'FAR(normal)':>12s}")
    for name, m in rows:
        far_nv = "n/a" if m["far_normal_videos"] is None else f"{100 * m['far_normal_videos']:.2f}%"
        print(
            f"{name:44s} {100 * m['auc']:6.2f}% {100 * m['ap']:6.2f}% {100 * m['far']:6.2f}%"
            f" {far_nv:>12s}"
        )
    pl = s1["pseudo_label_auc"]
    print(
        f"{'pseudo-labels: frame AUC on the abnormal train videos':44s} {100 * pl:6.2f}%"
        if pl is not None
        else ""
    )
    print(f"\ndone in {seconds / 60:.1f} min")


def demo(out="output/demo_video", workers=2):
    """Runs every step into `out` -> {"stage1", "stage2", "test"} results."""
    start, out = time.time(), Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    prepare_data(out, workers)
    s1, s2, test = run_stages(out)
    print_table(s1, s2, test, time.time() - start)
    return {"stage1": s1, "stage2": s2, "test": test}
