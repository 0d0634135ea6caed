"""A finished run -> a release file others can download, load and verify (tools/publish.py).

The release keeps what loading and testing need — the model's weights, the run's config, its kind
(stage1 / stage2), epoch and best record — and drops the optimizer, scheduler, scaler, gradients and
random streams. As in mmaction2's model zoo, the file's name ends with the first 8 hex digits of its
sha256 (more while they are all decimal digits) (`<run>_<checkpoint>-1a2b3c4d.pth`); every loader of
the project (utils.checkpoint torch_load_safely) checks a file named so against its digest and
refuses a file that does not match. Next to it: `<same>.md`, the model card (config, data, metrics,
commit, sha256), and `<same>.json`, the same as data.
"""

import datetime
import hashlib
import json
import logging
import subprocess
from pathlib import Path

import torch

from utils.checkpoint import read_checkpoint, release_prefix, write_json, write_text_atomic
from utils.errors import ExistsError, NotFoundError

logger = logging.getLogger("mist")
KEPT = ("kind", "model", "cfg", "epoch", "best")


def publish(run_dir, checkpoint="best_val", out_dir=None, force=False):
    """run_dir/checkpoints/<checkpoint>.pth (best_val falls back to last without a validation
    split) -> {"file", "sha256", "card"} of the release written to out_dir (default
    run_dir/release)."""
    run_dir = Path(run_dir)
    source = _source(run_dir, checkpoint)
    state, cfg = read_checkpoint(source)
    release = {k: state[k] for k in KEPT if k in state}
    if not {"kind", "model", "cfg"} <= set(release):
        raise NotFoundError(
            f"{source} is not a checkpoint of tools/train_stage1.py or "
            "train_stage2.py (no kind / model / cfg): nothing to publish"
        )
    out = Path(out_dir) if out_dir else run_dir / "release"
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{source.stem}.publishing"
    try:
        torch.save(release, tmp)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        name = f"{run_dir.resolve().name}_{source.stem}-{release_prefix(digest)}"
        final = out / f"{name}.pth"
        if final.exists() and not force:
            raise ExistsError(f"{final} exists: pass --force to write it again")
        card = model_card(run_dir, source, release, cfg, digest, final.name)
        write_json(out / f"{name}.json", card)
        write_text_atomic(out / f"{name}.md", card_text(card))
        # the release file last: where it exists, its model card does too
        tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("released %s (sha256 %s), model card %s", final, digest, out / f"{name}.md")
    return {"file": str(final), "sha256": digest, "card": card}


def _source(run_dir, checkpoint):
    path = run_dir / "checkpoints" / f"{checkpoint}.pth"
    if checkpoint == "best_val" and not path.exists():
        path = run_dir / "checkpoints" / "last.pth"
    if not path.exists():
        raise NotFoundError(
            f"{path} does not exist: pass a finished run's OUTPUT_DIR and one of "
            "its checkpoints (last, best, best_val)"
        )
    return path


def model_card(run_dir, source, release, cfg, digest, file_name):
    """-> the card's content: what the model is, what it was trained on, how well it did."""
    results = run_dir / "results.json"
    metrics = json.loads(results.read_text()) if results.exists() else {}
    data = cfg.DATA
    return {
        "file": file_name,
        "sha256": digest,
        "kind": release["kind"],
        "checkpoint": source.stem,
        "epoch": release.get("epoch"),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(),
        "model": {
            "backbone": cfg.MODEL.BACKBONE,
            "feature_dim": data.FEATURE_DIM,
            "sga": cfg.MODEL.SGA,
            "width": cfg.MODEL.WIDTH,
        },
        "data": {
            "dataset": data.DATASET,
            "manifest": data.MANIFEST,
            "train_split": data.TRAIN_SPLIT,
            "test_split": data.TEST_SPLIT,
            "features": data.FEATURES,
            "frames": data.FRAMES,
        },
        "metrics": {
            "test": metrics.get("test"),
            "by_checkpoint": metrics.get("test_by_checkpoint"),
            "selection": metrics.get("selection"),
        },
        "config": release["cfg"],
    }


def _commit():
    """-> the git commit of this code (with '+dirty' for uncommitted changes), or 'unknown'."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def card_text(card):
    """-> the model card as Markdown."""
    test = card["metrics"]["test"] or {}
    rows = [f"| {k} | {test[k]:.4f} |" for k in ("auc", "ap", "far") if test.get(k) is not None]
    lines = [
        f"# {card['file']}",
        "",
        f"MIST {card['kind']} model ({card['model']['backbone']}), checkpoint "
        f"`{card['checkpoint']}` (epoch {card['epoch']}), released {card['created']} from commit "
        f"`{card['commit']}`.",
        "",
        f"- sha256: `{card['sha256']}` (the file name ends with its first 8 digits; the project's "
        "loaders check it)",
        f"- data: {card['data']['dataset']}"
        + (f", manifest `{card['data']['manifest']}`" if card["data"]["manifest"] else ""),
        f"- selection: {card['metrics']['selection'] or 'n/a'}",
        "",
        "| test metric | value |",
        "|---|---|",
        *rows,
        "",
        "## Config",
        "",
        "```yaml",
        card["config"].rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)
