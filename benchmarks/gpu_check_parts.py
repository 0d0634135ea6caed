"""The parts of benchmarks/gpu_check.py. Each has a plan (ctx -> the commands it runs, or the reason
it is skipped) and a reader (ctx, its log -> figures; Failed when the figures show a failure); some
run a child (`gpu_check.py --child NAME`) whose last line is MARK + the JSON of its figures."""

import json
import math
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY, GPU_CHECK = sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")
S2E, ENC, DATA = (
    str(ROOT / "benchmarks" / f) for f in ("stage2_epoch.py", "encoder.py", "data.py")
)
CFG = str(ROOT / "configs" / "shanghaitech" / "i3d_stage2.yaml")
# benchmarks/stage2_epoch.py --tiny: the 1/8-width I3D at tiny sizes
TINY = ["MODEL.WIDTH", "0.125", "DATA.TRAIN_SIZE", "[64, 85, 48]", "DATA.TEST_SIZE", "[72, 96, 48]"]
MARK = "GPU_CHECK_FIGURES "
# max |score - CPU fp32 score| allowed, scores in [0, 1] (softmax of the logits)
TEST_TOLERANCE = {"cuda fp32": 1e-3, "cuda tf32": 5e-3, "cuda bf16": 2e-2, "cpu bf16": 2e-2}
# x max(1, max |PyTorch|): fp32 on both sides, other convolution algorithms
ONNX_TOLERANCE = 2e-3
GOALS = {
    "i3d_bf16_infer_frames_per_s": 20000,
    "device_augment_frames_per_s": 10000,
    "data_wait_share": 0.1,
}


class Failed(Exception):
    """A part ran but its figures show a failure (the message says which)."""


@dataclass
class Ctx:
    device: str
    quick: bool
    out: Path

    @property
    def cuda(self):
        return self.device.startswith("cuda")

    @property
    def work(self):
        return self.out / "work"

    def sizes(self):
        """stage2_epoch.py's data and batch flags, the same for every part that reads the data."""
        if self.quick:
            return ["--tiny", "--videos", "2", "--test-videos", "1", "--batch", "1"]
        return ["--videos", "24", "--test-videos", "2", "--batch", "8"]

    def data_opts(self):
        made = json.loads((self.work / "data" / "opts.json").read_text())
        return made["opts"] + (TINY if self.quick else [])


def figures_of(text):
    """-> the JSON after the last MARK line of a child's output."""
    lines = [ln for ln in text.splitlines() if ln.startswith(MARK)]
    if not lines:
        raise Failed("the part printed no figures")
    return json.loads(lines[-1][len(MARK) :])


def launch(script, *args, tf32=None, group=None):
    """A command running `script` through gpu_check.py --launch (backend flags set first)."""
    flags = (["--tf32", tf32] if tf32 else []) + (["--group", group] if group else [])
    return [PY, GPU_CHECK, "--launch", script, *flags, "--", *args]


def workers(ctx):
    """DATA.NUM_WORKERS of the tool runs: 2 (resume with loader workers is the case to check); none
    on a --quick run, where starting them would be most of its time (tests/test_ddp_stage2.py
    checks resume with workers on the CPU)."""
    return "0" if ctx.quick else "2"


def small_test_split(ctx):
    """The first normal and the first abnormal test video: a short evaluation after each epoch."""
    path = ctx.work / "test_small.txt"
    if not path.exists():
        opts = json.loads((ctx.work / "data" / "opts.json").read_text())["opts"]
        lines = Path(opts[opts.index("DATA.TEST_SPLIT") + 1]).read_text().split()
        picked = [next(ln for ln in lines if ln.split(",")[1] == label) for label in ("0", "1")]
        path.write_text("\n".join(picked) + "\n")
    return path


# ---------------------------------------------------------------------------------------- encoder
ROW = re.compile(
    r"^(infer|train)\s+(\w+)\s+(\d+x\d+)\s+(\d+)\s+(off|bf16|fp16)\s+(cl|-)\s+"
    r"(on|off)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(.*)$"
)
ROW_KEYS = (
    "kind",
    "net",
    "size",
    "batch",
    "amp",
    "format",
    "compile",
    "ms",
    "clips_per_s",
    "frames_per_s",
    "tflops",
)
SKIP_ENCODER = {
    "fp32": "TF32 is a CUDA setting: the CPU's fp32 rows are in the encoder parts",
    "compile": "torch.compile rows run on CUDA (compiling MIST-I3D takes minutes on a CPU)",
}
TORCHVISION_MODELS = ["r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t"]  # models/tv_video.py


def plan_encoder_torchvision(ctx):
    """The torchvision backbones (docs/backbones.md) at their crops: bf16 inference at batch 32 and
    training at batch 8, channels_last; --quick: the two that take 32x32 clips, fp32, on the CPU."""
    if ctx.quick:
        cmd = [ENC, "--device", ctx.device, "--models", "r2plus1d_18", "swin3d_t"]
        cmd += ["--sizes", "32x32", "--batches", "1", "--amp", "off", "--channels-last", "off"]
        cmd += ["--train-batches", "--iters", "1", "--repeats", "1", "--compile", "off"]
        return [launch(*cmd) if ctx.cuda else [PY, *cmd]]
    cmd = [ENC, "--device", ctx.device, "--models", *TORCHVISION_MODELS, "--sizes", "test"]
    cmd += ["--batches", "32", "--amp", "bf16", "--channels-last", "on", "--compile", "off"]
    return [launch(*cmd, "--train-batches", "8", "--iters", "5", "--repeats", "2")]


def plan_encoder(ctx, kind="i3d"):
    """kind i3d / c3d: that model's rows with TF32 allowed; fp32: both, TF32 off; compile: both,
    torch.compile. Rows run in the order printed, so a part killed at its budget keeps the first."""
    if kind in SKIP_ENCODER and not ctx.cuda:
        return SKIP_ENCODER[kind]
    tf32 = "off" if kind == "fp32" else "on"
    models = ["--models", kind] if kind in ("i3d", "c3d") else ["--models", "i3d", "c3d"]
    if ctx.quick:
        cmd = [
            ENC,
            "--device",
            ctx.device,
            *models,
            "--sizes",
            "32x32",
            "--batches",
            "1",
            "--amp",
            "off",
            "--channels-last",
            "off",
            "--train-batches",
            "--iters",
            "1",
            "--repeats",
            "1",
            "--compile",
            "on" if kind == "compile" else "off",
        ]
        return [launch(*cmd, tf32=tf32) if ctx.cuda else [PY, *cmd]]
    common = ["--device", ctx.device, *models, "--batches", "32", "--repeats", "2"]
    sizes = ["--sizes", "240x320", "224x224"]
    if kind == "compile":  # each model at its test size: I3D 240x320, C3D 112x112
        return [
            launch(
                ENC,
                *common,
                "--sizes",
                "test",
                "--amp",
                "bf16",
                "--channels-last",
                "on",
                "--compile",
                "on",
                "--train-batches",
                "--iters",
                "10",
                tf32=tf32,
            )
        ]
    if kind == "fp32":
        return [
            launch(
                ENC,
                *common,
                "--sizes",
                "240x320",
                "--amp",
                "off",
                "--channels-last",
                "on",
                "--compile",
                "off",
                "--train-batches",
                "16",
                "--iters",
                "5",
                tf32=tf32,
            )
        ]
    return [
        launch(
            ENC,
            *common,
            *sizes,
            "--amp",
            "off",
            "bf16",
            "fp16",
            "--channels-last",
            "on",
            "--compile",
            "off",
            "--train-batches",
            "16",
            "--iters",
            "10",
            tf32=tf32,
        ),
        launch(
            ENC,
            *common,
            *sizes,
            "--amp",
            "bf16",
            "--channels-last",
            "off",
            "--compile",
            "off",
            "--train-batches",
            "16",
            "--iters",
            "10",
            tf32=tf32,
        ),
    ]


def read_encoder(ctx, text):
    rows = []
    for line in text.splitlines():
        m = ROW.match(line.strip())
        if m:
            row = dict(zip(ROW_KEYS, m.groups()[:11]))
            row.update({k: float(row[k]) for k in ("ms", "clips_per_s", "frames_per_s", "tflops")})
            pct = re.match(r"\s*([\d.]+)% of", m.group(12))
            row["pct_of_peak"] = float(pct.group(1)) if pct else None
            rows.append(row)
    if not rows:
        raise Failed("benchmarks/encoder.py printed no result row")
    infer = [r for r in rows if r["kind"] == "infer"] or rows
    best = max(infer, key=lambda r: r["frames_per_s"])
    out = {
        "rows": rows,
        "key": (
            f"{len(rows)} rows; best {best['net']} {best['size']} "
            f"{best['amp']}: {best['frames_per_s']:.0f} frames/s"
        ),
    }
    goal = ("i3d", "240x320", "bf16")
    i3d = [r["frames_per_s"] for r in infer if (r["net"], r["size"], r["amp"]) == goal]
    if i3d:
        out["i3d_240x320_bf16_infer_frames_per_s"] = max(i3d)
    return out


# ---------------------------------------------------------------------------------------- stage 2
def plan_stage2(ctx, device_augment=False):
    if device_augment and not ctx.cuda:
        return (
            "a GPU row (nvjpeg decode + augment on the training device); "
            "tests/test_device_augment.py runs that path on the CPU"
        )
    if ctx.quick:  # fp16 convolutions on a CPU take seconds each: off and bf16 only there
        warmup, iters = ("3", "6") if ctx.cuda else ("0", "3")
        loop = ["--workers", "0", "--warmup", warmup, "--iters", iters, "STAGE2.CLIP_NUM", "1"]
        amps = ["off", "bf16", "fp16"] if ctx.cuda else ["off", "bf16"]
    else:
        loop = ["--workers", "12", "--warmup", "5", "--iters", "24"]
        amps = ["bf16"] if device_augment else ["off", "bf16", "fp16"]
    extra = ["STAGE2.DEVICE_AUGMENT", "True"] if device_augment else []
    return [
        [
            PY,
            S2E,
            "--device",
            ctx.device,
            "--dir",
            str(ctx.work),
            *ctx.sizes(),
            "--amp",
            *amps,
            "--no-test",
            "--json",
            *loop,
            *extra,
        ]
    ]


def read_stage2(ctx, text):
    lines = [ln for ln in text.splitlines() if ln.startswith('{"benchmark": "stage2_epoch"')]
    if not lines:
        raise Failed("benchmarks/stage2_epoch.py printed no JSON line")
    rows = json.loads(lines[-1])["rows"]
    for r in rows:
        if not (math.isfinite(r["loss_first"]) and math.isfinite(r["loss_last"])):
            raise Failed(f"AMP {r['amp']}: loss not finite ({r['loss_first']}, {r['loss_last']})")
        if r["optimizer_steps"] == 0:
            raise Failed(
                f"AMP {r['amp']}: no optimizer step in {r['iterations']} timed iterations "
                f"(GradScaler scale {r['scaler_scale']})"
            )
    key = ", ".join(
        f"{r['amp']} {r['frames_per_s']:.0f} frames/s, wait "
        f"{100 * r['data_wait_share']:.0f}%, loss "
        f"{'falls' if r['loss_falling'] else 'flat'}"
        for r in rows
    )
    return {"rows": rows, "key": key, "data_wait_share": max(r["data_wait_share"] for r in rows)}


# ---------------------------------------------------------------------------------------- resume
def resume_opts(ctx, out, epochs):
    """The resume part's training overrides: an accumulation window (ACCUMULATE 3) across epochs."""
    dev = ["DEVICE", ctx.device, "STAGE2.AMP", "fp16" if ctx.cuda else "off"]
    # 4 iterations an epoch on the GPU (24 videos per class, 6 a batch), 2 with --quick
    batch = (
        ["STAGE2.BATCH_SIZE", "1", "STAGE2.CLIP_NUM", "1"]
        if ctx.quick
        else ["STAGE2.BATCH_SIZE", "6"]
    )
    return [
        "--cfg",
        CFG,
        *ctx.data_opts(),
        *dev,
        *batch,
        "MODEL.PRETRAINED",
        "",
        "DATA.NUM_WORKERS",
        workers(ctx),
        "STAGE2.FREEZE_EPOCHS",
        "0",
        "STAGE2.EVAL_PERIOD",
        "1",
        "STAGE2.EPOCHS",
        str(epochs),
        "DATA.TEST_SPLIT",
        str(small_test_split(ctx)),
        "OUTPUT_DIR",
        str(out),
    ]


def child_resume(ctx):
    import torch
    from utils.checkpoint import saved_cfg

    from engine import stage2
    from utils.config import load_cfg

    def train(out, epochs, resume=False):
        opts = resume_opts(ctx, out, epochs) + det
        return stage2.train(load_cfg(opts[1], opts[2:]), resume)

    root = ctx.work / "resume"
    # bitwise equal on a GPU needs deterministic kernels: the DETERMINISTIC key users set for it
    det = ["DETERMINISTIC", "True"] if ctx.cuda else []
    for name in ("straight", "again") if ctx.cuda else ("straight",):
        train(root / name, 2)
    train(root / "resumed", 1)
    train(root / "resumed", 2, resume=True)

    def load(name):
        path = root / name / "checkpoints" / "last.pth"
        return torch.load(path, map_location="cpu", weights_only=True)

    ref = load("straight")
    figures = {
        "amp": saved_cfg(ref).STAGE2.AMP,
        "global_step": ref["global_step"],
        "deterministic_algorithms": ctx.cuda,
    }
    for name in ("resumed", "again") if ctx.cuda else ("resumed",):
        same, diff = compare_states(ref, load(name))
        figures.update({f"{name}_bitwise": same, f"{name}_max_abs_diff": diff})
    print(MARK + json.dumps(figures))


def compare_states(a, b):
    """-> (model, optimizer moments, GradScaler, step bitwise equal; max |a - b| of the model)."""
    import torch

    model = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    moments = [
        torch.equal(x[k], y[k])
        for x, y in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values())
        for k in x
    ]
    diff = max(
        ((a["model"][k].double() - b["model"][k].double()).abs().max().item() for k in model),
        default=0.0,
    )
    rest = (a["global_step"], a["scaler"]) == (b["global_step"], b["scaler"])
    same = not model and all(moments) and rest
    return same, diff


def read_resume(ctx, text):
    f = figures_of(text)
    if not f["resumed_bitwise"]:
        noise = (
            ""
            if f.get("again_bitwise") is not False
            else (
                f" (two straight runs differ too, by {f['again_max_abs_diff']:.3g}: kernels not "
                "deterministic)"
            )
        )
        raise Failed(
            "the resumed run differs from the straight one: max |diff| "
            f"{f['resumed_max_abs_diff']:.3g}{noise}"
        )
    f["key"] = f"bitwise equal after {f['global_step']} iterations ({f['amp']})"
    return f


# ---------------------------------------------------------------------------------------- torchrun
def plan_torchrun(ctx, sync_bn=False):
    if sync_bn and not ctx.cuda:
        return "needs CUDA (torch's SyncBatchNorm has no CPU kernel; train_stage2.py refuses it)"
    opts = [
        "--cfg",
        CFG,
        *ctx.data_opts(),
        *([] if ctx.quick else TINY),
        "MODEL.PRETRAINED",
        "",
        "DEVICE",
        ctx.device,
        "DATA.NUM_WORKERS",
        workers(ctx),
        "STAGE2.BATCH_SIZE",
        "2",
        "STAGE2.EPOCHS",
        "1",
        "STAGE2.FREEZE_EPOCHS",
        "0",
        "STAGE2.SYNC_BN",
        str(sync_bn),
        "DATA.TEST_SPLIT",
        str(small_test_split(ctx)),
        "OUTPUT_DIR",
        str(ctx.work / ("sync_bn" if sync_bn else "torchrun")),
    ]
    run = [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    backend = "nccl" if ctx.cuda else "gloo"
    tool = launch(str(ROOT / "tools" / "train_stage2.py"), *opts, group=backend)
    return [run + tool[1:]]


def read_torchrun(ctx, text, sync_bn=False):
    group = re.search(r"process group: (\w+), world size (\d+)", text)
    results = ctx.work / ("sync_bn" if sync_bn else "torchrun") / "results.json"
    auc = json.loads(results.read_text())["test"]["auc"]
    layers = re.search(r"SyncBatchNorm layers: (\d+)", text)
    f = {
        "backend": group.group(1),
        "world_size": int(group.group(2)),
        "test_auc": auc,
        "sync_bn_layers": int(layers.group(1)) if layers else 0,
    }
    if sync_bn and not f["sync_bn_layers"]:
        raise Failed("STAGE2.SYNC_BN True built no SyncBatchNorm layer")
    f["key"] = f"{f['backend']}, world size {f['world_size']}"
    if sync_bn:
        f["key"] += f", {f['sync_bn_layers']} SyncBatchNorm layers"
    return f


# ---------------------------------------------------------------------------------------- test
def test_checkpoint(ctx):
    return ctx.work / "resume" / "straight" / "checkpoints" / "last.pth"


def child_test(ctx):
    import numpy as np
    import torch

    from engine import evaluate
    from utils.config import load_cfg

    gpu = [
        ("cuda fp32", ctx.device, "off", False),
        ("cuda tf32", ctx.device, "off", True),
        ("cuda bf16", ctx.device, "bf16", True),
    ]
    cpu = [("cpu bf16", "cpu", "bf16", False)]
    scores, figures = {}, {}
    for name, device, amp, tf32 in [("cpu fp32", "cpu", "off", False)] + (gpu if ctx.cuda else cpu):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        out = ctx.work / "test" / name.replace(" ", "_")
        start = time.perf_counter()
        cfg = load_cfg(
            CFG,
            [
                *ctx.data_opts(),
                "DATA.NUM_WORKERS",
                workers(ctx),
                "DATA.TEST_SPLIT",
                str(small_test_split(ctx)),
                "DEVICE",
                device,
                "STAGE2.AMP",
                amp,
                "TEST.CHECKPOINT",
                str(test_checkpoint(ctx)),
                "OUTPUT_DIR",
                str(out),
            ],
        )
        metrics = evaluate.test(cfg)
        figures[name] = {
            "seconds": time.perf_counter() - start,
            "clips": metrics["n_clips"],
            "auc": metrics["auc"],
        }
        scores[name] = dict(np.load(out / "test_last_scores.npz"))
        if name != "cpu fp32":
            ref = scores["cpu fp32"]
            diff = max(float(np.abs(scores[name][v] - ref[v]).max()) for v in ref)
            figures[name].update(max_abs_diff=diff, tolerance=TEST_TOLERANCE[name])
    print(MARK + json.dumps(figures))


def read_test(ctx, text):
    f = figures_of(text)
    bad = [
        f"{k}: {v['max_abs_diff']:.3g} > {v['tolerance']}"
        for k, v in f.items()
        if "tolerance" in v and not v["max_abs_diff"] <= v["tolerance"]
    ]
    if bad:
        raise Failed("scores differ from the CPU's: " + "; ".join(bad))
    f["key"] = ", ".join(f"{k} {v['max_abs_diff']:.2g}" for k, v in f.items() if "tolerance" in v)
    return f


# ---------------------------------------------------------------------------------------- pipeline
def plan_pipeline(ctx):
    usage = subprocess.run([PY, DATA, "--help"], capture_output=True, text=True, cwd=ROOT).stdout
    if "--pipeline-only" not in usage:
        return "benchmarks/data.py has no --pipeline-only"
    quick = ["--quick"] if ctx.quick else []
    return [[PY, DATA, "--device", ctx.device, "--pipeline-only", *quick]]


def read_pipeline(ctx, text):
    rows = {
        m.group(1).strip(): float(m.group(2))
        for m in re.finditer(r"^(\S.*?)\s+\d+\s+[\d.]+\s+([\d.]+|nan)\s*$", text, re.M)
    }
    if not rows:
        raise Failed("benchmarks/data.py printed no row")
    f = {"frames_per_s": rows}
    augment = [v for k, v in rows.items() if k.startswith("device augment i3d")]
    if augment:
        f["device_augment_frames_per_s"] = augment[0]
    shown = ("device augment", "transform i3d")
    f["key"] = ", ".join(f"{k} {v:.0f}" for k, v in rows.items() if k.startswith(shown))
    return f


# ---------------------------------------------------------------------------------------- onnx
def child_onnx(ctx):
    import importlib.util

    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        reason = (
            f"{' and '.join(missing)} not installed (pip install -r "
            "requirements-optional.txt; onnxruntime-gpu for CUDA)"
        )
        print(MARK + json.dumps({"skipped": reason}))
        return
    import onnxruntime as ort

    provider = "CUDAExecutionProvider" if ctx.cuda else "CPUExecutionProvider"
    if provider not in ort.get_available_providers():
        reason = f"onnxruntime has no {provider} (pip install onnxruntime-gpu)"
        print(MARK + json.dumps({"skipped": reason}))
        return
    print(MARK + json.dumps(onnx_parity(ctx, ort, provider)))


def onnx_parity(ctx, ort, provider):
    """engine/export.py on resume's checkpoint, then its .onnx under `provider` vs PyTorch."""
    import numpy as np
    import torch

    from engine import export
    from utils.config import load_cfg

    prefix, ckpt = ctx.work / "onnx" / "mist", str(test_checkpoint(ctx))
    cfg = load_cfg(CFG, ctx.data_opts())
    export.export_checkpoint(cfg, ckpt, str(prefix), formats="onnx")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    module, example, *_ = export.prepare(ckpt, cfg)
    x = torch.randn(4, *example.shape[1:], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = [o.float().cpu().numpy() for o in module.to(ctx.device)(x.to(ctx.device))]
    session, tf32 = ort_session(ort, str(prefix) + ".onnx", provider)
    ours = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, reference))
    allowed = ONNX_TOLERANCE * max(1.0, max(float(np.abs(b).max()) for b in reference))
    return {
        "provider": session.get_providers()[0],
        "ort_tf32": tf32,
        "max_abs_diff": diff,
        "allowed": allowed,
    }


def ort_session(ort, path, provider):
    """-> (InferenceSession, TF32 setting): CUDA with TF32 off where onnxruntime has the option."""
    if provider == "CUDAExecutionProvider":
        try:
            return ort.InferenceSession(path, providers=[(provider, {"use_tf32": "0"})]), "off"
        except Exception:  # an onnxruntime without that option: its default
            pass
    return ort.InferenceSession(path, providers=[provider]), "default"


def read_onnx(ctx, text):
    f = figures_of(text)
    if "skipped" in f:
        return f
    if f["provider"] != ("CUDAExecutionProvider" if ctx.cuda else "CPUExecutionProvider"):
        raise Failed(f"onnxruntime ran the model on {f['provider']}")
    if not f["max_abs_diff"] <= f["allowed"]:
        raise Failed(f"ONNX vs PyTorch: max |diff| {f['max_abs_diff']:.3g} > {f['allowed']:.3g}")
    f["key"] = f"{f['provider']}: max |diff| {f['max_abs_diff']:.2g}"
    return f
