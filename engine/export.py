"""Export a trained model to ONNX and TorchScript, with a parity check against PyTorch on the same input.

    python tools/export.py output/sht_i3d_stage2/checkpoints/best.pth export/mist_sht_i3d \
        --cfg configs/shanghaitech/i3d_stage2.yaml
    python tools/export.py output/shanghaitech/i3d_stage1/checkpoints/last.pth export/generator_sht_i3d
    python tools/export.py SHT_I3D_AUC_0.9483.pth export/mist --formats onnx --cfg configs/shanghaitech/i3d_stage2.yaml

CHECKPOINT: a stage-2 MIST checkpoint (ours, rebuilt from its own config; or any layout of models/weights.py,
built from the config's MODEL keys) or a stage-1 checkpoint (the MIL generator). OUT: path prefix; writes
  OUT.onnx   torch.onnx.export (the TorchScript-based exporter, opset 17), dynamic batch axis
  OUT.pt     torch.jit.trace, loadable with torch.jit.load and no repository code
  OUT.json   what the model takes and returns, its transform settings and the parity figures;
             tools/infer.py reads it to preprocess frames for an exported model
Stage 2: clips float32 (N, 3, 16, H, W) as the test transform makes them (backbone, DATA.DATASET,
DATA.TEST_SIZE, TEST.TEN_CROP of the config: H, W is the view size) -> score (N,) = softmax(logits)[:, 1]
and logits (N, 2). Stage 1: features float32 (N, D) (L2-normalised first if the run used DATA.L2_NORM)
-> score (N,).
Parity: each exported file is loaded back (onnxruntime, torch.jit.load) and run on one seeded random input
whose batch differs from the traced one; max |exported - PyTorch| over all outputs must be <= 1e-4 x
max(1, max |PyTorch|), else nothing is written and the exit code is 1. Without onnxruntime the ONNX file
is written unchecked, with a warning (pip install -r requirements-optional.txt).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from datasets.build import stage2_transforms  # noqa: E402
from models.loading import load_generator, load_mist  # noqa: E402
from models.weights import read_checkpoint  # noqa: E402
from utils.checkpoint import write_json  # noqa: E402
from utils.config import load_cfg  # noqa: E402
from utils.errors import ExistsError, InputError  # noqa: E402
from utils import cli  # noqa: E402

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
    test_cfg = cfg.clone()
    test_cfg.defrost()
    test_cfg.MODEL.BACKBONE = backbone
    _, transform = stage2_transforms(test_cfg)
    shape = tuple(transform(np.zeros((16, 240, 320, 3), np.uint8)).shape)
    return shape[1:] if len(shape) == 5 else shape


def prepare(checkpoint, cfg):
    """-> (module, example input (2, ...), input name, output names, metadata) for a stage-1 or -2 checkpoint."""
    state = read_checkpoint(checkpoint)
    if isinstance(state, dict) and state.get("kind") == "stage1":
        model, train_cfg = load_generator(checkpoint)
        dim = train_cfg.DATA.FEATURE_DIM
        meta = {"kind": "stage1", "feature_dim": dim, "l2_norm": train_cfg.DATA.L2_NORM,
                "input": {"name": "features", "shape": ["N", dim], "dtype": "float32"}, "outputs": ["score"]}
        return model, torch.randn(2, dim), "features", ["score"], meta
    model, model_cfg = load_mist(checkpoint, cfg)
    backbone = model_cfg.MODEL.BACKBONE
    shape = view_shape(cfg, backbone)
    meta = {"kind": "stage2", "backbone": backbone, "dataset": cfg.DATA.DATASET,
            "test_size": [int(v) for v in cfg.DATA.TEST_SIZE], "ten_crop": bool(cfg.TEST.TEN_CROP),
            "width": model_cfg.MODEL.WIDTH, "expand_k": model_cfg.MODEL.EXPAND_K,
            "input": {"name": "clips", "shape": ["N", *shape], "dtype": "float32"}, "outputs": ["score", "logits"]}
    return ClipScorer(model).eval(), torch.randn(2, *shape), "clips", ["score", "logits"], meta


def _as_list(out):
    return [o.detach().float().cpu().numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]


def max_diff(ours, reference):
    """-> (max |ours - reference| over all outputs, allowed difference)."""
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, reference))
    return diff, TOLERANCE * max(1.0, max(float(np.abs(b).max()) for b in reference))


def export_onnx(module, example, path, input_name, output_names):
    if importlib.util.find_spec("onnx") is None:  # torch.onnx.export serialises through the onnx package
        raise InputError("ONNX export needs the onnx package: pip install -r requirements-optional.txt "
                         "(or export only TorchScript: --formats torchscript)")
    with warnings.catch_warnings():  # the TorchScript-based exporter announces its deprecation
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=[input_name], output_names=output_names,
                          dynamic_axes={name: {0: "N"} for name in [input_name, *output_names]})


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
    with torch.no_grad(), torch.jit.optimized_execution(False):  # the plain graph: no fusion passes to wait for
        return _as_list(torch.jit.load(str(path), map_location="cpu")(x))


def export(checkpoint, out, cfg, formats=FORMATS, seed=0):
    """Writes OUT.<ext> for each format and OUT.json -> the metadata dict (with 'parity' and 'files')."""
    module, example, input_name, output_names, meta = prepare(checkpoint, cfg)
    torch.manual_seed(seed)
    x = torch.randn(3, *example.shape[1:])  # another batch than the traced one: the batch axis is dynamic
    with torch.no_grad():
        reference = _as_list(module(x))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    writers = {"onnx": (".onnx", lambda p: export_onnx(module, example, p, input_name, output_names), run_onnx),
               "torchscript": (".pt", lambda p: export_torchscript(module, example, p), run_torchscript)}
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
    meta.update(checkpoint=str(checkpoint), torch=torch.__version__, opset=OPSET, parity=parity,
                files={fmt: out.name + writers[fmt][0] for fmt in formats})
    write_json(out.with_name(out.name + ".json"), meta)
    return meta


def _check(fmt, outputs, reference):
    """-> parity record; ParityError beyond TOLERANCE."""
    if outputs is None:
        logger.warning("onnxruntime is not installed: the ONNX file is written without a parity check "
                       "(pip install -r requirements-optional.txt)")
        return {"max_abs_diff": None, "checked": False}
    diff, allowed = max_diff([np.asarray(o) for o in outputs], reference)
    logger.info("%s parity: max |exported - PyTorch| = %.3g (allowed %.3g)", fmt, diff, allowed)
    if not diff <= allowed:
        raise ParityError(f"{fmt} export differs from PyTorch by {diff:.3g} > {allowed:.3g} on the same input; "
                          "nothing was written")
    return {"max_abs_diff": diff, "allowed": allowed, "checked": True}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="stage-2 MIST checkpoint (any supported layout) or stage-1 checkpoint")
    parser.add_argument("out", help="output path prefix: writes OUT.onnx, OUT.pt and OUT.json")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated: onnx,torchscript (default both)")
    parser.add_argument("--cfg", default="", help="config whose MODEL / DATA.TEST_SIZE / TEST.TEN_CROP keys apply")
    parser.add_argument("--force", action="store_true", help="overwrite an earlier export at OUT")
    parser.add_argument("opts", nargs="*", help="KEY VALUE config overrides")
    return parser.parse_intermixed_args(argv)  # options may follow the positional arguments


def main(argv=None):
    args = parse_args(argv)
    earlier = Path(args.out).with_name(Path(args.out).name + ".json")
    if earlier.exists() and not args.force:
        raise ExistsError(f"{earlier} describes an earlier export to {args.out}: pass --force to overwrite it, or "
                          "choose another OUT")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    cfg = load_cfg(args.cfg or None, args.opts)
    formats = [f for f in args.formats.split(",") if f]
    if not formats or set(formats) - set(FORMATS):
        raise InputError(f"--formats {args.formats!r}: use a comma-separated subset of {','.join(FORMATS)}")
    try:
        meta = export(args.checkpoint, args.out, cfg, formats)
    except ParityError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for fmt, name in meta["files"].items():
        print(f"wrote {Path(args.out).parent / name} (parity {meta['parity'][fmt]['max_abs_diff']})")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
