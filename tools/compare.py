"""Compare several methods' test scores on one split: one table and one figure.

    python tools/compare.py --cfg configs/ucf_crime/i3d_stage1.yaml \
        --scores MIST=output/ucf/test_scores.npz RTFM=rtfm_scores.npy Mine=scores_folder/ \
        --out output/compare [--force] [KEY VALUE ...]

Each --scores NAME=FILE is a .npz of {video: clip scores}, the official pickled .npy dict, or a
folder of <video>.npy files; all are evaluated against the config's test ground truth as
tools/test.py evaluates TEST.SCORES. Writes compare.md, compare.json and compare.png to --out
(default OUTPUT_DIR/compare); --force overwrites an earlier comparison (engine/compare.py says
more).
"""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.compare import compare, parse_methods
from utils import cli
from utils.config import DEMO_CFG, load_cfg

CONFIG_KEY = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+")


def parse_args(argv):
    """--cfg FILE --scores NAME=FILE ... [--out DIR] [--force] [KEY VALUE ...] (overrides start at
    the first config key)."""
    parser = cli.tool_parser(__doc__, cfg_default=DEMO_CFG)
    parser.add_argument(
        "--scores", nargs="+", required=True, metavar="NAME=FILE", help="one per method"
    )
    parser.add_argument("--out", help="output folder (default OUTPUT_DIR/compare)")
    parser.add_argument("--force", action="store_true", help="overwrite an earlier comparison")
    argv = list(argv)
    first = next(
        (i for i, a in enumerate(argv) if CONFIG_KEY.fullmatch(a) or a in ("DEVICE", "OUTPUT_DIR")),
        len(argv),
    )
    args = parser.parse_args(argv[:first])
    args.opts = argv[first:]
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    cfg = load_cfg(args.cfg, args.opts)
    out = args.out or str(Path(cfg.OUTPUT_DIR) / "compare")
    return compare(cfg, parse_methods(args.scores), out, force=args.force)


if __name__ == "__main__":
    sys.exit(cli.run(main))
