"""The whole MIST pipeline on generated surveillance videos, on a CPU, in about ten minutes.

    python tools/demo.py [--out output/demo_video] [--workers 2]

Chains the real tools: synthetic videos (datasets/demo_videos.py) -> tools/make_h5.py -> clip features
(datasets/demo_features.py: documented motion statistics standing in for a pretrained I3D) ->
tools/train_stage1.py -> pseudo-labels -> tools/train_stage2.py (a width-reduced MIST-I3D on small frames)
-> tools/test.py, then prints one table. A step whose product exists is not redone, so an interrupted demo
continues where it stopped.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.demo_features import FEATURE_DIM, extract_all  # noqa: E402
from datasets.demo_videos import make_demo_videos  # noqa: E402
from datasets.frames import open_frames  # noqa: E402
from tools import test as test_tool  # noqa: E402
from tools import train_stage1, train_stage2  # noqa: E402
from tools.make_h5 import make_h5  # noqa: E402
from utils.config import REPO_ROOT  # noqa: E402
from utils import cli  # noqa: E402

CONFIGS = REPO_ROOT / "configs" / "demo"


def data_opts(out):
    """KEY VALUE overrides pointing both stages at the demo's generated files."""
    videos = out / "videos"
    return ["DATA.TRAIN_SPLIT", str(videos / "train.txt"), "DATA.TEST_SPLIT", str(videos / "test.txt"),
            "DATA.TEST_MASK_DIR", str(videos / "masks"), "DATA.TRAIN_MASK_DIR", str(videos / "masks")]


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
    resume = ["--resume"]  # a finished stage is not retrained: its products are rewritten
    s1 = train_stage1.main(resume + ["--cfg", str(CONFIGS / "stage1_video.yaml"), "OUTPUT_DIR", str(out / "stage1"),
                                     "DATA.FEATURES", str(out / "features.h5"),
                                     "DATA.FEATURE_DIM", str(FEATURE_DIM)] + data_opts(out))
    stage2_opts = ["--cfg", str(CONFIGS / "stage2.yaml"), "DATA.FRAMES", str(out / "frames.h5"),
                   "DATA.PSEUDO_LABELS", str(out / "stage1" / "pseudo_labels.npz")] + data_opts(out)
    s2 = train_stage2.main(resume + stage2_opts + ["OUTPUT_DIR", str(out / "stage2")])
    test = test_tool.main(stage2_opts + ["OUTPUT_DIR", str(out / "test"),
                                         "TEST.CHECKPOINT", str(out / "stage2" / "checkpoints" / "last.pth")])
    return s1, s2, test


def print_table(s1, s2, test, seconds):
    rows = [("stage 1: generator on motion features", s1["test"]),
            ("stage 2: MIST-I3D (1/8 width), last epoch", s2["test"]),
            ("tools/test.py on the stage-2 checkpoint", test)]
    print(f"\n{'':44s} {'AUC':>7s} {'AP':>7s} {'FAR':>7s} {'FAR(normal)':>12s}")
    for name, m in rows:
        far_nv = "n/a" if m["far_normal_videos"] is None else f"{100 * m['far_normal_videos']:.2f}%"
        print(f"{name:44s} {100 * m['auc']:6.2f}% {100 * m['ap']:6.2f}% {100 * m['far']:6.2f}% {far_nv:>12s}")
    pl = s1["pseudo_label_auc"]
    print(f"{'pseudo-labels: frame AUC on the abnormal train videos':44s} {100 * pl:6.2f}%" if pl is not None else "")
    print(f"\ndone in {seconds / 60:.1f} min")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="output/demo_video", help="folder for everything the demo writes")
    parser.add_argument("--workers", type=int, default=2, help="make_h5 worker processes")
    args = parser.parse_args(argv)
    start, out = time.time(), Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    prepare_data(out, args.workers)
    s1, s2, test = run_stages(out)
    print_table(s1, s2, test, time.time() - start)
    return {"stage1": s1, "stage2": s2, "test": test}


if __name__ == "__main__":
    sys.exit(cli.run(main))
