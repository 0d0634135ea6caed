"""Export of a trained model to ONNX and TorchScript, with a parity check against PyTorch.

CHECKPOINT: a stage-2 MIST checkpoint (ours, rebuilt from its own config; or any layout of
models/weights.py, built from the config's MODEL keys) or a stage-1 checkpoint (the MIL generator).
OUT: path prefix; writes
  OUT.onnx   torch.onnx.export (the TorchScript-based exporter, opset 17), dynamic batch axis
  OUT.pt     torch.jit.trace, loadable with torch.jit.load and no repository code
  OUT.json   what the model takes and returns, its transform settings and the parity figures;
             tools/infer.py reads it to preprocess frames for an exported model
Stage 2: clips float32 (N, 3, 16, H, W) as the test transform makes them (backbone, DATA.DATASET,
DATA.TEST_SIZE, TEST.TEN_CROP of the config: H, W is the view size) -> score (N,) =
softmax(logits)[:, 1] and logits (N, 2). Stage 1: features float32 (N, D) (L2-normalised first if
the run used DATA.L2_NORM) -> score (N,).
Parity: each exported file is loaded back (onnxruntime, torch.jit.load) and run on one seeded random
input whose batch differs from the traced one; max |exported - PyTorch| over all outputs must be
<= 1e-4 x max(1, max |PyTorch|), else nothing is written and the exit code is 1. Without onnxruntime
the ONNX file is written unchecked, with a warning (pip install -r requirements-optional.txt).
"""

import importlib.util
import logging
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from datasets.build import test_transform
from models.loading import load_generator, load_mist
from utils.checkpoint import read_checkpoint, write_json
from utils.errors import ExistsError, InputError

logger = logging.getLogger("mist.export")
OPSET = 17
TOLERANCE = 1e-4  # relative to max(1, max |PyTorch output|)
FORMATS = ("onnx", "torchscript")


class ParityError(RuntimeError):
    """An exported model's outputs differ from PyTorch's beyond TOLERANCE."""


class ClipScorer(nn.Module):
    """MIST -> a module returning (score (N,), logits (N, 2)): plain tensors, as exporters need."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, clips):
        logits = self.model(clips)["logits"]
        return torch.softmax(logits, dim=1)[:, 1], logits


def view_shape(cfg, backbone):
    """-> (3, 16, H, W) of one view the test transform makes for `backbone` under cfg."""
    transform = test_transform(cfg, backbone=backbone)
    shape = tuple(transform(np.zeros((16, 240, 320, 3), np.uint8)).shape)
    return shape[1:] if len(shape) == 5 else shape


def prepare(checkpoint, cfg):
    """-> (module, example input (2, ...), input name, output names, metadata) of a stage-1 or
    stage-2 checkpoint."""
    state, _ = read_checkpoint(checkpoint)
    if isinstance(state, dict) and state.get("kind") == "stage1":
        model, train_cfg = load_generator(checkpoint)
        dim = train_cfg.DATA.FEATURE_DIM
        meta = {
            "kind": "stage1",
            "feature_dim": dim,
            "l2_norm": train_cfg.DATA.L2_NORM,
            "input": {"name": "features", "shape": ["N", dim], "dtype": "float32"},
            "outputs": ["score"],
        }
        return model, torch.randn(2, dim), "features", ["score"], meta
    model, model_cfg = load_mist(checkpoint, cfg)
    backbone = model_cfg.MODEL.BACKBONE
    shape = view_shape(cfg, backbone)
    meta = {
        "kind": "stage2",
        "backbone": backbone,
        "dataset": cfg.DATA.DATASET,
        "test_size": [int(v) for v in cfg.DATA.TEST_SIZE],
        "ten_crop": bool(cfg.TEST.TEN_CROP),
        "width": model_cfg.MODEL.WIDTH,
        "expand_k": model_cfg.MODEL.EXPAND_K,
        "input": {"name": "clips", "shape": ["N", *shape], "dtype": "float32"},
        "outputs": ["score", "logits"],
    }
    return ClipScorer(model).eval(), torch.randn(2, *shape), "clips", ["score", "logits"], meta


def _as_list(out):
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().float().cpu().numpy() for o in outs]


def max_diff(ours, reference):
    """-> (max |ours - reference| over all outputs, allowed difference)."""
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, reference))
    return diff, TOLERANCE * max(1.0, max(float(np.abs(b).max()) for b in reference))


def export_onnx(module, example, path, input_name, output_names):
    # torch.onnx.export serialises through the onnx package
    if importlib.util.find_spec("onnx") is None:
        raise InputError(
            "ONNX export needs the onnx package: pip install -r "
            "requirements-optional.txt (or export only TorchScript: --formats "
            "torchscript)"
        )
    with warnings.catch_warnings():  # the TorchScript-based exporter announces its deprecation
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[input_name],
            output_names=output_names,
            dynamic_axes={name: {0: "N"} for name in [input_name, *output_names]},
        )


def run_onnx(path, x):
    """-> outputs of the ONNX file on x, or None without onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})


def export_torchscript(module, example, path):
    with warnings.catch_warnings():  # torch.jit.trace is deprecated in favour of torch.export
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, example, check_trace=False)
    traced.save(str(path))


def run_torchscript(path, x):
    # the plain graph: no fusion passes to wait for
    with torch.no_grad(), torch.jit.optimized_execution(False):
        return _as_list(torch.jit.load(str(path), map_location="cpu")(x))


def export(checkpoint, out, cfg, formats=FORMATS, seed=0):
    """Writes OUT.<ext> for each format and OUT.json -> the metadata (with 'parity' and 'files')."""
    module, example, input_name, output_names, meta = prepare(checkpoint, cfg)
    torch.manual_seed(seed)
    # another batch than the traced one: the batch axis is dynamic
    x = torch.randn(3, *example.shape[1:])
    with torch.no_grad():
        reference = _as_list(module(x))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = input_name, output_names
    writers = {
        "onnx": (".onnx", lambda p: export_onnx(module, example, p, *names), run_onnx),
        "torchscript": (".pt", lambda p: export_torchscript(module, example, p), run_torchscript),
    }
    done, parity = {}, {}
    try:
        for fmt in formats:
            suffix, write, run = writers[fmt]
            tmp = out.with_name(out.name + suffix + ".tmp")
            done[fmt] = tmp
            write(tmp)
            parity[fmt] = _check(fmt, run(tmp, x), reference)
        for fmt, tmp in done.items():
            os.replace(tmp, out.with_name(out.name + writers[fmt][0]))
    finally:
        for tmp in done.values():
            tmp.unlink(missing_ok=True)
    meta.update(
        checkpoint=str(checkpoint),
        torch=torch.__version__,
        opset=OPSET,
        parity=parity,
        files={fmt: out.name + writers[fmt][0] for fmt in formats},
    )
    write_json(out.with_name(out.name + ".json"), meta)
    return meta


def _check(fmt, outputs, reference):
    """-> parity record; ParityError beyond TOLERANCE."""
    if outputs is None:
        logger.warning(
            "onnxruntime is not installed: the ONNX file is written without a parity "
            "check (pip install -r requirements-optional.txt)"
        )
        return {"max_abs_diff": None, "checked": False}
    diff, allowed = max_diff([np.asarray(o) for o in outputs], reference)
    logger.info("%s parity: max |exported - PyTorch| = %.3g (allowed %.3g)", fmt, diff, allowed)
    if not diff <= allowed:
        raise ParityError(
            f"{fmt} export differs from PyTorch by {diff:.3g} > {allowed:.3g} on the "
            "same input; nothing was written"
        )
    return {"max_abs_diff": diff, "allowed": allowed, "checked": True}


def export_checkpoint(cfg, checkpoint, out, formats=",".join(FORMATS), force=False):
    """tools/export.py: checkpoint -> OUT.onnx / OUT.pt / OUT.json -> exit status, 0 (or 1 when an
    export differs from PyTorch). formats: comma-separated subset of FORMATS; force: overwrite an
    earlier export at OUT."""
    earlier = Path(out).with_name(Path(out).name + ".json")
    if earlier.exists() and not force:
        raise ExistsError(
            f"{earlier} describes an earlier export to {out}: pass --force to "
            "overwrite it, or choose another OUT"
        )
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    chosen = [f for f in formats.split(",") if f]
    if not chosen or set(chosen) - set(FORMATS):
        raise InputError(
            f"--formats {formats!r}: use a comma-separated subset of {','.join(FORMATS)}"
        )
    try:
        meta = export(checkpoint, out, cfg, chosen)
    except ParityError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for fmt, name in meta["files"].items():
        print(f"wrote {Path(out).parent / name} (parity {meta['parity'][fmt]['max_abs_diff']})")
    return 0
