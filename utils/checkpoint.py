"""Checkpoints: written atomically, read without executing code (`weights_only=True`)."""
import json
import os
from pathlib import Path

import torch


def save_checkpoint(path, **state):
    """Saves a dict (model/optimizer state dicts, epoch, metrics, cfg text, rng states) to `path`.

    Written to `<path>.tmp` and renamed, so an interrupted save never leaves a broken checkpoint.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, expect_kind=None):
    """Reads a checkpoint saved by `save_checkpoint`; `expect_kind` checks its 'kind' (e.g. 'stage1').

    Raises FileNotFoundError / ValueError naming the file and what it holds instead.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (set TEST.CHECKPOINT to a .pth from a run's checkpoints/)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or code-carrying files
        raise ValueError(f"cannot read checkpoint {path}: {err}") from err
    if expect_kind is not None and (not isinstance(state, dict) or state.get("kind") != expect_kind):
        found = state.get("kind", "a file without a 'kind' entry") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"checkpoint {path} is not a {expect_kind} checkpoint (it holds {found})")
    return state


def write_json(path, obj):
    """Writes JSON atomically (tmp + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
