"""Stage 1 of MIST: train the MIL pseudo-label generator on clip features, evaluate it, write
pseudo-labels.

    python tools/train_stage1.py --cfg configs/shanghaitech/i3d_stage1.yaml [KEY VALUE ...]
    python tools/train_stage1.py                      # the embedded demo

The procedure and the files it writes: engine/stage1.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import stage1
from utils import cli
from utils.config import setup_cfg


def main(argv=None):
    cfg, args = setup_cfg(__doc__, argv)
    return stage1.train(cfg, resume=args.resume)


if __name__ == "__main__":
    sys.exit(cli.run(main))
