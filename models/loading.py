"""Checkpoint file -> a ready model in eval mode, for the tools that only run models (infer, export, extract).

A stage-2 checkpoint written by tools/train_stage2.py is rebuilt from its own config; any other MIST file
(the authors' checkpoints, converted state dicts) from the given config's MODEL keys, as tools/test.py does.
"""
import torch
from yacs.config import CfgNode

from configs.defaults import get_cfg_defaults
from models.build import build_generator, build_model
from models.weights import load_weights, read_checkpoint
from utils.errors import InputError


def checkpoint_cfg(state, cfg):
    """-> the config a checkpoint was trained with (ours: stored in it), else `cfg`."""
    if not (isinstance(state, dict) and state.get("kind") in ("stage1", "stage2") and "cfg" in state):
        return cfg
    saved = CfgNode.load_cfg(state["cfg"])
    merged = get_cfg_defaults()
    try:  # keys added since the checkpoint was written take their defaults
        merged.merge_from_other_cfg(saved)
    except (KeyError, ValueError):  # a key since removed or retyped: the saved config as it is
        return saved
    return merged


def load_mist(path, cfg):
    """MIST checkpoint (any layout of models/weights.py) -> (MIST in eval mode, config it was built from)."""
    model_cfg = checkpoint_cfg(read_checkpoint(path), cfg)
    model = build_model(model_cfg)
    load_weights(model, path)
    return model.eval(), model_cfg


def load_generator(path):
    """Stage-1 checkpoint (tools/train_stage1.py) -> (MILGenerator in eval mode, its training config)."""
    state = read_checkpoint(path)
    if not (isinstance(state, dict) and state.get("kind") == "stage1"):
        raise InputError(f"{path} is not a stage-1 checkpoint (no kind 'stage1'); pass a checkpoints/*.pth of "
                         "a tools/train_stage1.py run")
    train_cfg = CfgNode.load_cfg(state["cfg"])
    model = build_generator(train_cfg)
    model.load_state_dict(state["model"])
    return model.eval(), train_cfg


def inference_amp(amp, device):
    """INFER.AMP 'auto' | 'off' | 'bf16' | 'fp16' -> the mode for torch.autocast: auto = fp16 on CUDA, else off."""
    if amp not in ("auto", "off", "bf16", "fp16"):
        raise InputError(f"INFER.AMP = {amp!r} is not one of ('auto', 'off', 'bf16', 'fp16')")
    if amp == "auto":
        return "fp16" if torch.device(device).type == "cuda" else "off"
    return amp
