"""Checkpoint -> a model in eval mode, for the procedures that only run one (infer, export, ...).

A stage-2 checkpoint written by tools/train_stage2.py is rebuilt from its own config; any other MIST
file (the authors' checkpoints, converted state dicts) from the given config's MODEL keys, as
engine/evaluate.py does. Files are read by utils.checkpoint.read_checkpoint (a stored config is
merged into today's defaults)."""

import torch

from models.build import build_generator, build_model
from models.weights import load_weights
from utils.checkpoint import read_checkpoint
from utils.errors import InputError


def stage1_refusal(path, needs, what="a stage-1 checkpoint", checkpoint=None):
    """-> the InputError for a stage-1 generator given where a MIST model is needed.

    needs: what needs the MIST model (e.g. "online inference (tools/infer.py)"); what: what `path`
    is; checkpoint: the stage-1 checkpoint to test instead (default `path`)."""
    return InputError(
        f"{path} is {what} (the MIL generator, which scores pre-extracted clip features), but "
        f"{needs} needs a stage-2 MIST model, which scores video frames: a checkpoints/*.pth of "
        "tools/train_stage2.py, the authors' MIST checkpoint, or a tools/export.py file of one "
        "(.onnx / .pt). To score features with this generator, run tools/test.py --cfg <its "
        f"config> TEST.CHECKPOINT {checkpoint or path} DATA.FEATURES <feature file>"
    )


def load_mist(path, cfg, needs="this tool"):
    """MIST checkpoint (any layout of models/weights.py) -> (MIST in eval mode, config it was built
    from). A stage-1 checkpoint is refused (stage1_refusal, naming `needs`)."""
    state, saved = read_checkpoint(path)
    if isinstance(state, dict) and state.get("kind") == "stage1":
        raise stage1_refusal(path, needs)
    model_cfg = cfg if saved is None else saved
    model = build_model(model_cfg)
    load_weights(model, path)
    return model.eval(), model_cfg


def load_generator(path):
    """Stage-1 checkpoint (tools/train_stage1.py) -> (MILGenerator in eval mode, its training
    config)."""
    state, train_cfg = read_checkpoint(path)
    if not (isinstance(state, dict) and state.get("kind") == "stage1"):
        raise InputError(
            f"{path} is not a stage-1 checkpoint (no kind 'stage1'); pass a checkpoints/*.pth of "
            "a tools/train_stage1.py run"
        )
    if train_cfg is None:
        raise InputError(
            f"{path} is a stage-1 checkpoint without its config: re-save it with 'cfg'"
        )
    model = build_generator(train_cfg)
    model.load_state_dict(state["model"])
    return model.eval(), train_cfg


def inference_amp(amp, device):
    """INFER.AMP 'auto' | 'off' | 'bf16' | 'fp16' -> the mode for torch.autocast: auto = fp16 on
    CUDA, else off."""
    if amp not in ("auto", "off", "bf16", "fp16"):
        raise InputError(f"INFER.AMP = {amp!r} is not one of ('auto', 'off', 'bf16', 'fp16')")
    if amp == "auto":
        return "fp16" if torch.device(device).type == "cuda" else "off"
    return amp
