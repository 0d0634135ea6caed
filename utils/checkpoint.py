"""Checkpoints: written atomically, read without executing code (`weights_only=True`)."""

import hashlib
import json
import os
import re
from pathlib import Path

import torch
from utils.errors import InputError, NotFoundError


def save_checkpoint(path, **state):
    """Saves a dict (model/optimizer state dicts, epoch, metrics, cfg text, rng states) to `path`.

    Written to `<path>.tmp` and renamed, so an interrupted save never leaves a broken checkpoint.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def torch_load_safely(path):
    """torch.load(path, weights_only=True) on the CPU -> object; ValueError with a reason of our own
    if it fails. torch's own message advises retrying with weights_only=False (running the file's
    code): a user must not do that for a file they did not make, so that advice is never passed
    on."""
    if not Path(path).is_file():
        what = "is a folder, not a checkpoint file" if Path(path).is_dir() else "does not exist"
        raise NotFoundError(f"checkpoint {path} {what}: check the path")
    verify_release(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or code-carrying files
        raise InputError(f"cannot read {path}: {_load_failure(err)}") from None


# a release's name ends with its sha256 prefix: 8 or more hex digits, at least one a letter (so a
# date or an epoch number, all digits, is never taken for one; tools/publish.py extends the prefix)
RELEASE_NAME = re.compile(r"-([0-9a-f]{8,64})$")


def release_prefix(digest):
    """sha256 hex digest -> the shortest prefix of 8 or more digits holding a letter a-f."""
    n = 8
    while digest[:n].isdigit():
        n += 1
    return digest[:n]


def verify_release(path):
    """A file whose name ends with `-<sha256 prefix>` (a tools/publish.py release, as mmaction2's
    model zoo names them) must have a sha256 starting with it; InputError otherwise."""
    named = RELEASE_NAME.search(Path(path).stem)
    if named is None or named.group(1).isdigit():
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(named.group(1)):
        raise InputError(
            f"checkpoint {path}: its name says sha256 {named.group(1)}..., but the file's is "
            f"{digest.hexdigest()[:8]}...: the file is corrupt or was changed; download it again"
        )


def _load_failure(err):
    """-> why torch.load(weights_only=True) refused a file, without torch's retry advice."""
    text = str(err)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return (
            f"it holds a Python object ({found.group(1)}) that would run code when loaded, so it is"
            " refused; only tensor checkpoints are read: re-save it as a plain state dict where it"
            " was made"
        )
    if "weights_only" in text or "Weights only load failed" in text:
        return (
            "it holds Python objects that would run code when loaded, so it is refused; only tensor"
            " checkpoints are read: re-save it as a plain state dict where it was made"
        )
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return f"not a readable PyTorch checkpoint (truncated or another format?): {first}"


def load_checkpoint(path, expect_kind=None):
    """Reads a checkpoint saved by `save_checkpoint`; `expect_kind` checks its 'kind' (e.g.
    'stage1').

    Raises FileNotFoundError / ValueError naming the file and what it holds instead.
    """
    state = torch_load_safely(path)
    if expect_kind is not None and (
        not isinstance(state, dict) or state.get("kind") != expect_kind
    ):
        found = (
            state.get("kind", "a file without a 'kind' entry")
            if isinstance(state, dict)
            else type(state).__name__
        )
        raise InputError(f"checkpoint {path} is not a {expect_kind} checkpoint (it holds {found})")
    return state


def read_checkpoint(path, kind=None):
    """The one checkpoint reader of every tool -> (state, cfg).

    state: the file's content, loaded without running code (torch_load_safely). kind: "stage1" /
    "stage2" refuses any other file, naming what it holds. cfg: the config a mist-vad run stored in
    the file, merged into today's defaults (keys added since take their defaults), frozen; None for
    a file without one (the authors' checkpoints, converted state dicts), whose model is built from
    the caller's config."""
    state = load_checkpoint(path, expect_kind=kind)
    return state, saved_cfg(state, path)


def saved_cfg(state, path="checkpoint"):
    """-> the config stored in a mist-vad checkpoint, merged into today's defaults; None without
    one."""
    if not (isinstance(state, dict) and isinstance(state.get("cfg"), str)):
        return None
    from yacs.config import CfgNode

    from configs.defaults import get_cfg_defaults

    cfg = get_cfg_defaults()
    try:
        cfg.merge_from_other_cfg(CfgNode.load_cfg(state["cfg"]))
    except (KeyError, ValueError, AssertionError) as err:
        raise InputError(
            f"{path}: its stored config does not fit this version of mist-vad"
            f" ({' '.join(str(err).split())}); rebuild the model from a config file (--cfg) instead"
        ) from None
    cfg.freeze()
    return cfg


def atomic_write(path, write, mode="wb"):
    """write(file) into `<path>.tmp`, then renamed to path: an interrupted or failed write leaves no
    partial file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, mode) as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def missing_dirs(path):
    """-> the folders above `path` that do not exist yet, deepest first (see remove_empty_dirs)."""
    return [p for p in Path(path).resolve().parents if not p.exists()]


def remove_empty_dirs(dirs):
    """Removes the folders of missing_dirs() that are still empty: a failed run leaves no empty
    folder behind."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:  # not empty, or already gone
            pass


def write_text_atomic(path, text):
    atomic_write(path, lambda f: f.write(text), mode="w")


def save_npz(path, arrays):
    """np.savez(path, **arrays), atomically."""
    import numpy as np

    atomic_write(path, lambda f: np.savez(f, **arrays))


def write_json(path, obj):
    """Writes JSON atomically (tmp + rename)."""
    write_text_atomic(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")
