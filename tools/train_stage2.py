"""Stage 2 of MIST: fine-tune the SGA-boosted I3D/C3D encoder on frames with stage-1 pseudo-labels.

    python tools/train_stage2.py --cfg configs/shanghaitech/i3d_stage2.yaml [KEY VALUE ...]
    torchrun --nproc_per_node 4 tools/train_stage2.py --cfg ...            # multi-GPU (DDP)
    torchrun --nnodes 2 --node_rank 0 --master_addr HOST --nproc_per_node 8 tools/train_stage2.py
    --cfg ...

The procedure and the files it writes: engine/stage2.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import stage2
from utils import cli
from utils.config import setup_cfg


def main(argv=None):
    cfg, args = setup_cfg(__doc__, argv)
    return stage2.train(cfg, resume=args.resume)


if __name__ == "__main__":
    sys.exit(cli.run(main))
