"""Run folders: one per run, refusing to overwrite a finished run, resuming an interrupted one."""
import logging
from pathlib import Path

from utils.checkpoint import load_checkpoint
from utils.errors import ExistsError

FINISHED_MARKER = "results.json"  # written last: its presence means the run finished
logger = logging.getLogger("mist")


def prepare_output_dir(cfg, resume, kind):
    """Creates OUTPUT_DIR and returns the checkpoint to resume from (None for a fresh run).

    A finished run (its `results.json` exists) is refused unless `resume`; an interrupted one (only
    `checkpoints/last.pth`) is resumed automatically.
    """
    out = Path(cfg.OUTPUT_DIR)
    last = out / "checkpoints" / "last.pth"
    if (out / FINISHED_MARKER).exists() and not resume:
        raise ExistsError(f"{out} already holds a finished run ({FINISHED_MARKER}); pass --resume to continue it "
                         "(e.g. with more epochs) or set OUTPUT_DIR to a new folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(cfg.dump())
    return load_checkpoint(last, expect_kind=kind) if last.exists() else None


def check_resumed_cfg(state, cfg):
    """Logs the config keys that differ between the checkpoint's run and this one."""
    from yacs.config import CfgNode

    old = CfgNode.load_cfg(state["cfg"])
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
