"""Rewrites any supported checkpoint (models/weights.py FORMATS) as a plain state dict in our MIST
layout.

    python tools/convert_weights.py model_rgb.pth pretrained/i3d_kinetics.pth
    python tools/convert_weights.py c3d.pickle pretrained/c3d_sports1m.pth --backbone c3d
    python tools/convert_weights.py SHT_I3D.pth pretrained/mist_sht_i3d.pth --force

Keys are checked against MIST(backbone); shapes are checked when the file is loaded into a model.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import convert
from utils import cli


def parse_args(argv):
    # no --cfg: a conversion takes no config
    parser = cli.tool_parser(__doc__, cfg=False)
    parser.add_argument("input", help="checkpoint to convert (.pth, .pt, .pickle)")
    parser.add_argument("output", help="where to write the converted state dict")
    parser.add_argument(
        "--backbone",
        choices=("i3d", "c3d"),
        default=None,
        help="demand this backbone (default: detected from the keys)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    return convert.convert_weights(args.input, args.output, args.backbone, args.force)


if __name__ == "__main__":
    sys.exit(cli.run(main))
