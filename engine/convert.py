"""Rewrites any supported checkpoint (models/weights.py FORMATS) as a plain state dict in our MIST layout.

    python tools/convert_weights.py model_rgb.pth pretrained/i3d_kinetics.pth
    python tools/convert_weights.py c3d.pickle pretrained/c3d_sports1m.pth --backbone c3d
    python tools/convert_weights.py SHT_I3D.pth pretrained/mist_sht_i3d.pth --force

Keys are checked against MIST(backbone); shapes are checked when the file is loaded into a model.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import os  # noqa: E402

import torch  # noqa: E402

from models.mist import MIST  # noqa: E402
from models.weights import CheckpointError, check_against, convert_state_dict, read_checkpoint  # noqa: E402
from utils.errors import ExistsError  # noqa: E402
from utils import cli  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help="checkpoint to convert (.pth, .pt, .pickle)")
    parser.add_argument("output", help="where to write the converted state dict")
    parser.add_argument("--backbone", choices=("i3d", "c3d"), default=None,
                        help="demand this backbone (default: detected from the keys)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    return parser.parse_args(argv)


def convert(src, dst, backbone=None, force=False):
    """src checkpoint -> dst plain state dict (tmp file + rename) -> LoadReport."""
    dst = Path(dst)
    if dst.exists() and not force:
        raise ExistsError(f"{dst} exists; pass --force to overwrite it")
    state_dict, report = convert_state_dict(read_checkpoint(src), backbone, source=str(src))
    if report.backbone not in ("i3d", "c3d"):
        raise CheckpointError(f"{src}: holds no backbone tensors; pass --backbone i3d|c3d")
    with torch.device("meta"):  # key names only: no memory is allocated for the reference model
        reference = MIST(report.backbone).state_dict()
    names_only = {k: state_dict[k].shape if k in state_dict else v.shape for k, v in reference.items()}
    report.left_at_init = check_against(names_only, state_dict, report)
    state_dict = {k: state_dict[k] for k in reference if k in state_dict}  # our module order
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    torch.save(state_dict, tmp)
    os.replace(tmp, dst)
    return report


def main(argv=None):
    args = parse_args(argv)
    report = convert(args.input, args.output, args.backbone, args.force)
    print(report)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    sys.exit(cli.run(main))
