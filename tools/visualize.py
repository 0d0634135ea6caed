"""Figures and a one-page HTML report of a run: the paper's Fig. 7 (score curves) and Fig. 8
(Grad-CAM).

    python tools/visualize.py RUN_DIR  # after train_stage1/2 or test.py
    python tools/visualize.py RUN_DIR --videos 01_0015 01_0027 --max-videos 4
    python tools/visualize.py RUN_DIR --gradcam 01_0015:3 01_0027:10 [--checkpoint FILE] [KEY VALUE
    ...]

Reads RUN_DIR/config.yaml (or --cfg), the run's test scores (`test_scores.npz`, else
`test_*_scores.npz`, or --scores) and the test ground truth, and writes to RUN_DIR/figures (or
--out): score_curves.png, roc.png, pr.png, per_class_auc.png, gradcam_<video>_<segment>.png and
report.html (engine/visualize.py says more). KEY VALUE pairs override the run's config (e.g.
DATA.FRAMES).
"""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import visualize
from utils import cli
from utils.config import ConfigError, load_cfg


def parse_args(argv):
    parser = cli.tool_parser(__doc__)
    parser.add_argument(
        "run_dir", help="a run's OUTPUT_DIR (config.yaml, test scores, checkpoints/)"
    )
    parser.add_argument(
        "--scores", help="score file instead of RUN_DIR/test_scores.npz (.npz or official .npy)"
    )
    parser.add_argument(
        "--videos", nargs="+", default=[], help="test videos to plot (default: the first ones)"
    )
    parser.add_argument(
        "--max-videos", type=int, default=8, help="videos in score_curves.png (default 8)"
    )
    parser.add_argument(
        "--gradcam", nargs="+", default=[], metavar="VIDEO:SEG", help="clips for Grad-CAM"
    )
    parser.add_argument(
        "--checkpoint",
        help="stage-2 checkpoint for --gradcam (default RUN_DIR/checkpoints/last.pth)",
    )
    parser.add_argument("--out", help="output folder (default RUN_DIR/figures)")
    argv = list(argv)
    # KEY VALUE overrides start at the first config key (e.g. DATA.FRAMES), after or between options
    key = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+")
    first = next((i for i, a in enumerate(argv) if key.fullmatch(a)), len(argv))
    args = parser.parse_args(argv[:first])
    args.opts = argv[first:]
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    cfg_file = Path(args.cfg) if args.cfg else Path(args.run_dir) / "config.yaml"
    if not cfg_file.is_file():
        raise ConfigError(
            f"{cfg_file} does not exist: pass a run folder (it holds config.yaml) or --cfg FILE"
        )
    cfg = load_cfg(cfg_file, args.opts)
    return visualize.visualize(
        cfg,
        args.run_dir,
        args.scores,
        args.videos,
        args.max_videos,
        args.gradcam,
        args.checkpoint,
        args.out,
    )


if __name__ == "__main__":
    sys.exit(cli.run(main))
