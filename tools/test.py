"""Evaluate a checkpoint, or any method's saved scores, with the paper's frame-level metrics.

    python tools/test.py --cfg configs/shanghaitech/i3d_stage1.yaml TEST.CHECKPOINT
    out/checkpoints/best.pth
    python tools/test.py --cfg configs/shanghaitech/i3d_stage2.yaml TEST.CHECKPOINT
    SHT_I3D_AUC_0.9483.pth
    python tools/test.py --cfg configs/ucf_crime/i3d_stage1.yaml TEST.SCORES my_method_scores.npz

A stage-1 checkpoint runs on DATA.FEATURES, a stage-2 one (ours, the authors', converted) on
DATA.FRAMES; torchrun shares a stage-2 test over GPUs. Writes test_<name>.json (metrics) and
test_<name>_scores.npz to OUTPUT_DIR; --force overwrites an earlier test (engine/evaluate.py says
more).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import evaluate
from utils import cli
from utils.config import setup_cfg


def main(argv=None):
    cfg, args = setup_cfg(__doc__, argv)
    return evaluate.test(cfg, force=args.force)


if __name__ == "__main__":
    sys.exit(cli.run(main))
