"""The whole MIST pipeline on generated surveillance videos, on a CPU, in about ten minutes.

    python tools/demo.py [--out output/demo_video] [--workers 2]

Videos -> frames h5 -> features -> stage 1 -> pseudo-labels -> stage 2 -> test, then one table
(engine/demo.py). An interrupted demo continues where it stopped.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.demo import demo
from utils import cli


def main(argv=None):
    parser = cli.tool_parser(__doc__, cfg=False)
    parser.add_argument(
        "--out", default="output/demo_video", help="folder for everything the demo writes"
    )
    parser.add_argument("--workers", type=int, default=2, help="make_h5 worker processes")
    args = parser.parse_args(argv)
    return demo(args.out, args.workers)


if __name__ == "__main__":
    sys.exit(cli.run(main))
