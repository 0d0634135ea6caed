"""Export a trained model to ONNX and TorchScript, with a parity check against PyTorch on the same
input.

    python tools/export.py output/sht_i3d_stage2/checkpoints/best.pth export/mist_sht_i3d \
        --cfg configs/shanghaitech/i3d_stage2.yaml
    python tools/export.py output/shanghaitech/i3d_stage1/checkpoints/last.pth
    export/generator_sht_i3d
    python tools/export.py SHT_I3D_AUC_0.9483.pth export/mist --formats onnx --cfg
    configs/shanghaitech/i3d_stage2.yaml

CHECKPOINT: a stage-2 MIST checkpoint (any layout of models/weights.py) or a stage-1 checkpoint.
Writes OUT.onnx, OUT.pt and OUT.json (inputs, outputs, transform, parity figures; tools/infer.py
reads it). Exit status 1 when an export differs from PyTorch (engine/export.py says more).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import export
from utils import cli
from utils.config import load_cfg


def parse_args(argv):
    parser = cli.tool_parser(__doc__)
    parser.add_argument(
        "checkpoint", help="stage-2 MIST checkpoint (any supported layout) or stage-1 checkpoint"
    )
    parser.add_argument("out", help="output path prefix: writes OUT.onnx, OUT.pt and OUT.json")
    parser.add_argument(
        "--formats",
        default=",".join(export.FORMATS),
        help="comma-separated: onnx,torchscript (default both)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an earlier export at OUT")
    cli.add_overrides(parser)
    # options may follow the positional arguments
    return parser.parse_intermixed_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_cfg(args.cfg or None, args.opts)
    return export.export_checkpoint(cfg, args.checkpoint, args.out, args.formats, args.force)


if __name__ == "__main__":
    sys.exit(cli.run(main))
