"""Checkpoint conversion: any layout of models/weights.py (FORMATS) -> a plain state dict in ours.

Keys are checked against MIST(backbone); shapes are checked when the file is loaded into a model.
"""

import os
from pathlib import Path

import torch

from models.mist import MIST
from models.weights import CheckpointError, check_against, convert_state_dict, read_state_dict
from utils.errors import ExistsError


def convert(src, dst, backbone=None, force=False):
    """src checkpoint -> dst plain state dict (tmp file + rename) -> LoadReport.

    backbone: 'i3d' / 'c3d' to demand that backbone (default: detected from the keys); force:
    overwrite an existing dst.
    """
    dst = Path(dst)
    if dst.exists() and not force:
        raise ExistsError(f"{dst} exists; pass --force to overwrite it")
    state_dict, report = convert_state_dict(read_state_dict(src), backbone, source=str(src))
    if report.backbone not in ("i3d", "c3d"):
        raise CheckpointError(f"{src}: holds no backbone tensors; pass --backbone i3d|c3d")
    # key names only: no memory is allocated for the reference model
    with torch.device("meta"):
        reference = MIST(report.backbone).state_dict()
    names_only = {
        k: state_dict[k].shape if k in state_dict else v.shape for k, v in reference.items()
    }
    report.left_at_init = check_against(names_only, state_dict, report)
    # our module order
    state_dict = {k: state_dict[k] for k in reference if k in state_dict}
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    torch.save(state_dict, tmp)
    os.replace(tmp, dst)
    return report


def convert_weights(src, dst, backbone=None, force=False):
    """tools/convert_weights.py: convert(), then prints what was loaded and where it was written."""
    report = convert(src, dst, backbone, force)
    print(report)
    print(f"wrote {dst}")
