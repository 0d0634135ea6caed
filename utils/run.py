"""Run folders: one per run, refusing to overwrite a finished run, resuming an interrupted one."""

import logging
import os
from pathlib import Path

from utils.checkpoint import load_checkpoint, saved_cfg, write_text_atomic
from utils.errors import ExistsError, InputError

FINISHED_MARKER = "results.json"  # written last: its presence means the run finished
logger = logging.getLogger("mist")


def prepare_output_dir(cfg, resume, kind):
    """Creates OUTPUT_DIR and returns the checkpoint to resume from (None for a fresh run); writes
    nothing else: `start_run` writes config.yaml once the resumed state has been restored, so a
    failed resume leaves the run as it was.

    A finished run (its `results.json` exists) is refused unless `resume`; an interrupted one (only
    `checkpoints/last.pth`) is resumed automatically.
    """
    out = Path(cfg.OUTPUT_DIR)
    last = out / "checkpoints" / "last.pth"
    if out.exists() and not out.is_dir():
        raise ExistsError(
            f"OUTPUT_DIR {out} is a file, not a folder: set OUTPUT_DIR to a folder (it is created)"
        )
    check_writable(out, "OUTPUT_DIR")
    if (out / FINISHED_MARKER).exists() and not resume:
        raise ExistsError(
            f"{out} already holds a finished run ({FINISHED_MARKER}); pass --resume to continue it "
            "(e.g. with more epochs) or set OUTPUT_DIR to a new folder"
        )
    state = load_checkpoint(last, expect_kind=kind) if last.exists() else None
    out.mkdir(parents=True, exist_ok=True)
    return state


def check_writable(folder, what):
    """Refuses, before any work, a folder that cannot be written (it, or the nearest folder above it
    that exists and would hold it)."""
    existing = next(p for p in [Path(folder), *Path(folder).resolve().parents] if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(
            f"{what} {folder} cannot be written ({existing} is not writable for this user): "
            "choose a folder you can write to"
        )


def start_run(cfg):
    """Writes OUTPUT_DIR/config.yaml (atomically): called once the run's inputs and resumed state
    are checked."""
    write_text_atomic(Path(cfg.OUTPUT_DIR) / "config.yaml", cfg.dump())


def restore_model(model, state, cfg):
    """model.load_state_dict(state["model"]), a shape mismatch (a resume with other MODEL /
    DATA.FEATURE_DIM keys) refused with the run's folder and the fix instead of torch's list of
    tensors."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        first = next(
            (
                line.strip()
                for line in str(err).splitlines()
                if "size mismatch" in line or "Missing" in line
            ),
            str(err).splitlines()[0],
        )
        raise InputError(
            f"--resume: the checkpoint in {cfg.OUTPUT_DIR} holds another model than this config"
            f" builds ({first}); resume with the run's own config.yaml (same MODEL and"
            " DATA.FEATURE_DIM keys) or set OUTPUT_DIR to a new folder"
        ) from None


def check_resumed_cfg(state, cfg):
    """Logs the config keys that differ between the checkpoint's run and this one."""
    old = saved_cfg(state, cfg.OUTPUT_DIR)
    changed = [k for k in _flat(cfg) if _flat(old).get(k) != _flat(cfg)[k]]
    if changed:
        logger.warning("resuming with changed config keys: %s", ", ".join(changed))


def _flat(node, prefix=""):
    out = {}
    for key, value in node.items():
        if hasattr(value, "items"):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
