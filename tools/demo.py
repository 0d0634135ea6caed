"""The whole MIST pipeline on generated surveillance videos, on a CPU (docs/demo.md).

    python tools/demo.py [--out output/demo_video] [--workers 2] [--seed 0]
    python tools/demo.py --chain handmade      # stage 1 on hand-made motion features: ~1 min

self-training (default): videos -> frames h5 -> a small encoder pretrained by pace prediction on
the unlabelled training videos -> its features -> stage 1 -> pseudo-labels -> stage 2 fine-tunes
that encoder -> its scores, and stage 1 again on its features; one table compares them.
handmade: hand-made motion features -> stage 1 -> stage 2 from a random init -> test.
An interrupted demo continues where it stopped (engine/demo.py).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.demo import CHAINS, demo
from utils import cli


def main(argv=None):
    parser = cli.tool_parser(__doc__, cfg=False)
    parser.add_argument(
        "--out", default="output/demo_video", help="folder for everything the demo writes"
    )
    parser.add_argument("--workers", type=int, default=2, help="make_h5 worker processes")
    parser.add_argument("--chain", choices=CHAINS, default="self-training", help="which demo")
    parser.add_argument(
        "--seed", type=int, default=0, help="training seed of the self-training chain (SEED)"
    )
    args = parser.parse_args(argv)
    demo(args.out, args.workers, args.chain, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
