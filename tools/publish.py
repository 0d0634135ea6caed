"""Turn a finished run into a release file: weights + config only, sha256 in the name, model card.

    python tools/publish.py output/shanghaitech/i3d_stage2 [--checkpoint best_val] [--out DIR]

Writes <run>_<checkpoint>-<sha256[:8]>.pth with .md / .json model cards (engine/publish.py);
tools/test.py, tools/infer.py and every other loader verify such a file against its name.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.publish import publish
from utils import cli


def main(argv=None):
    parser = cli.tool_parser(__doc__, cfg=False)
    parser.add_argument("run_dir", help="a finished run's OUTPUT_DIR")
    parser.add_argument(
        "--checkpoint", default="best_val", help="last | best | best_val (default; else last)"
    )
    parser.add_argument("--out", default=None, help="output folder (default RUN_DIR/release)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing release")
    args = parser.parse_args(argv)
    return publish(args.run_dir, args.checkpoint, args.out, args.force)


if __name__ == "__main__":
    sys.exit(cli.run(main))
