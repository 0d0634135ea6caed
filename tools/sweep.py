"""Run one config over several seeds and report the mean ± std of the final metrics.

    python tools/sweep.py --cfg configs/shanghaitech/i3d_stage1.yaml --seeds 0 1 2 [KEY VALUE ...]
    python tools/sweep.py --cfg configs/shanghaitech/i3d_stage2.yaml --stage 2 --seeds 0 1 2 DEVICE
    cuda

What it writes: engine/sweep.py.
"""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.sweep import sweep
from utils import cli
from utils.config import DEMO_CFG

CONFIG_KEY = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+")


def parse_args(argv):
    """--cfg FILE --seeds S [S ...] [--stage 1|2] [KEY VALUE ...] (overrides start at the first
    key)."""
    parser = cli.tool_parser(__doc__, cfg_default=DEMO_CFG)
    parser.add_argument(
        "--seeds", type=int, nargs="+", required=True, help="SEED values, one run each"
    )
    parser.add_argument(
        "--stage",
        type=int,
        choices=(1, 2),
        default=1,
        help="train_stage1 (default) or train_stage2",
    )
    argv = list(argv)
    first = next(
        (
            i
            for i, a in enumerate(argv)
            if CONFIG_KEY.fullmatch(a) or a in ("SEED", "DEVICE", "OUTPUT_DIR")
        ),
        len(argv),
    )
    args = parser.parse_args(argv[:first])
    args.opts = argv[first:]
    if "SEED" in args.opts[0::2]:
        parser.error("SEED is set by --seeds; remove it from the KEY VALUE overrides")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds repeats a seed: {args.seeds}")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return sweep(args.cfg, args.opts, args.seeds, args.stage)


if __name__ == "__main__":
    sys.exit(cli.run(main))
