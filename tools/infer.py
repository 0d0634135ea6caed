"""Online anomaly detection on a video file, a camera or a stream with a stage-2 model: scores,
alarms, timeline.

    python tools/infer.py video.mp4 --model output/sht_i3d_stage2/checkpoints/best.pth \
        --cfg configs/shanghaitech/i3d_stage2.yaml
    python tools/infer.py 0 --model export/mist_sht_i3d.onnx --calibration
    output/test/test_best_calibration.json \
        --far 0.001 --video
    python tools/infer.py rtsp://camera/stream --model export/mist_sht_i3d.pt INFER.STRIDE 8
    INFER.MIN_SECONDS 2.0

SOURCE: a video file, a camera index (0, 1, ...) or a stream URL. --model: a stage-2 checkpoint
or a tools/export.py .onnx / .pt file. One JSON line per 16-frame window (and per alarm) on stdout;
in --out: scores.jsonl, timeline.csv, timeline.json and with --video annotated.mp4. Ctrl-C ends
the run cleanly (engine/infer.py says more).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import infer
from utils import cli
from utils.config import load_cfg


def parse_args(argv):
    parser = cli.tool_parser(__doc__)
    parser.add_argument("source", help="video file, camera index (0, 1, ...) or stream URL")
    parser.add_argument(
        "--model", required=True, help="stage-2 checkpoint, or a tools/export.py .onnx / .pt file"
    )
    parser.add_argument(
        "--calibration", default=None, help="test_<name>_calibration.json from tools/test.py"
    )
    parser.add_argument(
        "--far", type=float, default=None, help="target false alarm rate in the calibration file"
    )
    parser.add_argument(
        "--out", default=None, help="output folder (default output/infer/<source name>)"
    )
    parser.add_argument(
        "--video", action="store_true", help="also write annotated.mp4 with the score overlay"
    )
    parser.add_argument("--quiet", action="store_true", help="no JSON lines on stdout (files only)")
    parser.add_argument(
        "--force", action="store_true", help="overwrite the outputs of an earlier run in --out"
    )
    cli.add_overrides(parser)
    # options may follow the positional arguments
    return parser.parse_intermixed_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_cfg(args.cfg or None, args.opts)
    return infer.infer(
        cfg,
        args.source,
        args.model,
        args.calibration,
        args.far,
        args.out,
        args.video,
        args.quiet,
        args.force,
    )


if __name__ == "__main__":
    sys.exit(cli.run(main))
