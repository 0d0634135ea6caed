"""The GPU check (issue 12): every CUDA path run for real by one unattended command, ~6-9 minutes.

    bash benchmarks/gpu_check.sh [--out DIR]          # python benchmarks/gpu_check.py --device cuda
    python benchmarks/gpu_check.py --device cpu --quick     # what the CPU can run, tiny (the tests)
    python benchmarks/gpu_check.py --device cuda --quick    # the same tiny run on a GPU (1-2 min)
    python benchmarks/gpu_check.py --parts test onnx        # some parts again (data and resume's
                                                            # checkpoint from the earlier run)
Each part runs as a subprocess (its own process group) with its own time budget: a part that hangs
is killed at its budget and the others still run; no part starts once --budget seconds (default
540) are spent. Writes OUT/<part>.log (the part's commands and full output) and OUT/summary.json
(per part: status ok | fail | skipped | timeout, seconds, CPU seconds, reason, figures; the GPU; the
issue's goals), prints a table, exits 1 if any part failed or timed out. OUT: gpu_check_out/.

Parts, in order (the data serves the training parts, resume's checkpoint serves test and onnx):
  data      240x320 demo videos -> frames h5 -> pseudo-labels (stage2_epoch.py --data-only)
  encoder   benchmarks/encoder.py, MIST-I3D at 240x320 and 224x224: inference (batch 32) and
            training (forward+backward, batch 16) rows, fp32 with TF32 allowed / bf16 / fp16 with
            channels_last, bf16 without; frames/s and % of the chip's dense peak
  stage2    benchmarks/stage2_epoch.py: Trainer.step of tools/train_stage2.py, full-width I3D at
            224, STAGE2.AMP off / bf16 / fp16, 24 timed iterations after the warm-up. Fails on a
            non-finite loss or no optimizer step; reports loss falling, scaler scale, data wait
  resume    tools/train_stage2.py, full I3D, fp16, 2 loader workers, deterministic kernels: 2 epochs
            straight, the same again (the GPU's run-to-run noise), 1 epoch + --resume to 2; model,
            optimizer moments, GradScaler and step compared bit for bit
  torchrun  torchrun --nproc_per_node 1 tools/train_stage2.py (1/8-width I3D, 1 epoch) in an NCCL
            process group (gloo on the CPU), so that the tool's collectives (broadcast, all_gather,
            all_reduce, buffer sync) run on it: at world size 1 utils/distributed.py starts none
  sync_bn   the same with STAGE2.SYNC_BN True, SyncBatchNorm layers counted (CUDA only; at world
            size 1 torch runs them as plain BatchNorm: statistics across GPUs need 2 GPUs)
  test      tools/test.py at 240x320 on resume's checkpoint, CPU fp32 vs GPU: max |score difference|
            <= 1e-3 in fp32 (TF32 off), 5e-3 with TF32 (torch's default for convolutions), 2e-2 bf16
  pipeline  benchmarks/data.py --pipeline-only --device DEV: transforms, decode + augment on DEV
  onnx      tools/export.py, then the .onnx under onnxruntime's CUDAExecutionProvider vs PyTorch on
            the GPU, both fp32: max |diff| <= 2e-3 x max(1, max |PyTorch|); skipped without it
  encoder_c3d             the same rows for MIST-C3D
  encoder_fp32            I3D and C3D at 240x320 with TF32 off (the fp32 peak)
  stage2_device_augment   stage2 in bf16 with STAGE2.DEVICE_AUGMENT True (JPEGs decoded on the GPU)
  encoder_compile         torch.compile rows (bf16, channels_last, each model at its test size)
  encoder_torchvision     the torchvision backbones (r2plus1d_18, s3d, mvit_v2_s, swin3d_t): bf16
                          inference (batch 32) and training (batch 8) rows at their crops
--device cpu --quick: the 1/8-width I3D on 72x96 videos, 3 iterations, gloo; what needs CUDA is
skipped with the reason; 2 parts at a time, one thread each (--jobs; 1 elsewhere, so that GPU
figures are taken alone). --fail-part NAME makes a part exit 1, --timeout NAME=S sets its budget.
"""

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.gpu_check_parts import (
    GOALS,
    GPU_CHECK,
    PY,
    S2E,
    Ctx,
    Failed,
    child_onnx,
    child_resume,
    child_test,
    plan_encoder,
    plan_encoder_torchvision,
    plan_pipeline,
    plan_stage2,
    plan_torchrun,
    read_encoder,
    read_onnx,
    read_pipeline,
    read_resume,
    read_stage2,
    read_test,
    read_torchrun,
    small_test_split,
)


# ------------------------------------------------------------------------------------------ the run
@dataclass
class Part:
    name: str
    budget: tuple  # seconds: (CUDA, --quick)
    plan: object  # ctx -> commands, or the reason the part is skipped
    read: object  # (ctx, log text) -> figures; raises Failed
    needs: tuple = ("data",)
    work: str = ""  # its folder under OUT/work, emptied before it runs


def child(name):
    """The plan of a part run by `gpu_check.py --child NAME`."""
    return lambda ctx: [
        [PY, GPU_CHECK, "--child", name, "--device", ctx.device, "--out", str(ctx.out)]
        + (["--quick"] if ctx.quick else [])
    ]


def data_plan(ctx):
    return [[PY, S2E, "--dir", str(ctx.work), "--data-only", "--workers", "1", *ctx.sizes()]]


def read_data(ctx, text):
    made = re.findall(r"^data: .*$", text, re.M)
    if not made:
        raise Failed("benchmarks/stage2_epoch.py --data-only printed no 'data:' line")
    return {"key": made[-1]}


PARTS = [
    Part("data", (40, 30), data_plan, read_data, needs=()),
    Part("encoder", (90, 30), plan_encoder, read_encoder, needs=()),
    Part("stage2", (100, 40), plan_stage2, read_stage2),
    Part("resume", (70, 40), child("resume"), read_resume, work="resume"),
    Part("torchrun", (30, 30), plan_torchrun, read_torchrun, work="torchrun"),
    Part(
        "sync_bn",
        (30, 30),
        lambda c: plan_torchrun(c, sync_bn=True),
        lambda c, t: read_torchrun(c, t, sync_bn=True),
        work="sync_bn",
    ),
    Part("test", (45, 30), child("test"), read_test, needs=("data", "resume"), work="test"),
    Part("pipeline", (30, 30), plan_pipeline, read_pipeline, needs=()),
    Part("onnx", (30, 30), child("onnx"), read_onnx, needs=("data", "resume"), work="onnx"),
    Part("encoder_c3d", (70, 30), lambda c: plan_encoder(c, "c3d"), read_encoder, needs=()),
    Part("encoder_fp32", (35, 30), lambda c: plan_encoder(c, "fp32"), read_encoder, needs=()),
    Part(
        "stage2_device_augment",
        (40, 30),
        lambda c: plan_stage2(c, device_augment=True),
        read_stage2,
    ),
    Part("encoder_compile", (60, 60), lambda c: plan_encoder(c, "compile"), read_encoder, needs=()),
    Part("encoder_torchvision", (60, 60), plan_encoder_torchvision, read_encoder, needs=()),
]
# what a part leaves for those that need it (used from an earlier run when the part is not run now)
PRODUCTS = {"data": "data/opts.json", "resume": "resume/straight/checkpoints/last.pth"}
FORCED_FAILURE = [PY, "-c", "import sys; print('forced failure (--fail-part)'); sys.exit(1)"]


def run_command(cmd, log, seconds, env):
    """Runs cmd in its own process group, output appended to `log` -> (exit code, None when killed
    at `seconds`; CPU seconds of it and of the processes it waited for)."""
    log.write(f"$ {shlex.join(cmd)}\n")
    log.flush()
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True
    )
    ended = reap(proc.pid, max(1.0, seconds))
    if ended is None:  # the child and its workers: it leads its own process group
        for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 60)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            ended = reap(proc.pid, grace)
            if ended:
                break
        ended = (None, ended[1] if ended else 0.0)
    proc.returncode = -1 if ended[0] is None else ended[0]  # reaped here, not by Popen
    return ended


def reap(pid, seconds):
    """-> (exit code, CPU seconds) of child `pid` if it ends within `seconds`, else None."""
    end = time.monotonic() + seconds
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime
        if time.monotonic() >= end:
            return None
        time.sleep(0.05)


def blocked(part, ctx, done):
    """-> why the part cannot run now (a part it needs failed or left nothing), else None."""
    missing = [
        n
        for n in part.needs
        if done.get(n, "not run") != "ok"
        and not (n not in done and (ctx.work / PRODUCTS[n]).exists())
    ]
    return f"needs the {', '.join(missing)} part(s) to pass" if missing else None


def run_part(part, ctx, budget, forced, done, out_of_time=False):
    """-> the part's summary record: status, seconds, cpu_s, reason, figures, log."""
    record = {
        "name": part.name,
        "status": "skipped",
        "seconds": 0.0,
        "budget_s": round(budget, 1),
        "reason": None,
        "figures": {},
        "log": f"{part.name}.log",
    }
    reason = None if forced else blocked(part, ctx, done)
    plan = [FORCED_FAILURE] if forced else None if reason else part.plan(ctx)
    if isinstance(plan, str) or reason:
        return {**record, "reason": reason or plan}
    if out_of_time:
        return {**record, "reason": "no time left in --budget"}
    if part.work:
        shutil.rmtree(ctx.work / part.work, ignore_errors=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if ctx.quick and not ctx.cuda:  # tiny models: one thread is as fast, spins less on a busy CPU
        env.setdefault("OMP_NUM_THREADS", "1")
    start, cpu, code = time.perf_counter(), 0.0, 0
    with open(ctx.out / record["log"], "w") as log:
        for cmd in plan:
            code, used = run_command(cmd, log, budget - (time.perf_counter() - start), env)
            cpu += used
            if code != 0:
                break
    record.update(seconds=round(time.perf_counter() - start, 1), cpu_s=round(cpu, 1))
    return judge(part, ctx, record, code, (ctx.out / record["log"]).read_text(errors="replace"))


def judge(part, ctx, record, code, text):
    """The status from the exit code and the figures (a failed or killed part keeps its figures)."""
    try:
        figures, problem = part.read(ctx, text), None
    except (Failed, KeyError, ValueError, OSError, AttributeError, IndexError) as err:
        figures, problem = {}, f"{type(err).__name__}: {err}"
    if code is None:
        reason = f"killed after {record['budget_s']} s"
        return {**record, "status": "timeout", "figures": figures, "reason": reason}
    if code:
        last = [ln for ln in text.splitlines() if ln.strip()][-1:] or [""]
        reason = f"exit {code}: {last[0][:200]}"
        return {**record, "status": "fail", "figures": figures, "reason": reason}
    if problem:
        return {**record, "status": "fail", "reason": problem}
    if "skipped" in figures:
        return {**record, "reason": figures["skipped"]}
    return {**record, "status": "ok", "figures": figures}


def goals(records):
    """The issue's targets, from the parts' figures (None where a part did not give the figure)."""
    fig = {r["name"]: r["figures"] for r in records}
    wait = fig.get("stage2", {}).get("data_wait_share")
    i3d = fig.get("encoder", {}).get("i3d_240x320_bf16_infer_frames_per_s")
    aug = fig.get("pipeline", {}).get("device_augment_frames_per_s")
    return {
        "i3d_240x320_bf16_infer_frames_per_s": i3d,
        "goal_i3d_frames_per_s": GOALS["i3d_bf16_infer_frames_per_s"],
        "device_augment_frames_per_s": aug,
        "goal_device_augment_frames_per_s": GOALS["device_augment_frames_per_s"],
        "stage2_data_wait_share": wait,
        "training_input_bound": None if wait is None else wait > GOALS["data_wait_share"],
    }


def print_table(records):
    print(f"\n{'part':<22} {'status':<8} {'seconds':>7}  figures / reason")
    for r in records:
        note = r["reason"] if r["status"] != "ok" else r["figures"].get("key", "")
        print(f"{r['name']:<22} {r['status']:<8} {r['seconds']:>7.1f}  {note}")


def parse_args(argv):
    names = [p.name for p in PARTS]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--device", default="cuda", help="cuda (the GPU check) or cpu")
    add("--quick", action="store_true", help="tiny sizes, a few iterations (the CPU test)")
    add("--out", default="gpu_check_out", help="logs and summary.json (default gpu_check_out)")
    add("--parts", nargs="+", choices=names, help="run these parts only")
    add("--budget", type=float, default=None, help="seconds for all (default 540, 240 --quick)")
    add("--timeout", action="append", default=[], metavar="PART=S", help="one part's budget")
    add("--fail-part", action="append", default=[], metavar="PART", help="make PART exit 1")
    add("--jobs", type=int, default=None, help="parts at a time (1; 2 with --quick on a CPU)")
    add("--child", choices=["resume", "test", "onnx"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for item in args.timeout:
        name, _, seconds = item.partition("=")
        if name not in names or not re.fullmatch(r"\d+(\.\d*)?", seconds):
            parser.error(f"--timeout {item}: give PART=SECONDS, PART one of {', '.join(names)}")
    if set(args.fail_part) - set(names):
        parser.error(f"--fail-part: PART is one of {', '.join(names)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    ctx = Ctx(args.device, args.quick, Path(args.out).resolve())
    if args.child:
        return {"resume": child_resume, "test": child_test, "onnx": child_onnx}[args.child](ctx)
    ctx.out.mkdir(parents=True, exist_ok=True)
    budgets = {p.name: p.budget[1 if args.quick else 0] for p in PARTS}
    budgets.update({k: float(v) for k, v in (t.split("=", 1) for t in args.timeout)})
    deadline = time.perf_counter() + (args.budget or (240 if args.quick else 540))
    jobs = args.jobs or (2 if args.quick and not ctx.cuda else 1)
    records = run_all(
        [p for p in PARTS if not args.parts or p.name in args.parts],
        ctx,
        jobs,
        budgets,
        deadline,
        args.fail_part,
    )
    print_table(records)
    summary = {
        "device": args.device,
        "quick": args.quick,
        "command": shlex.join([PY, *sys.argv]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "gpu": gpu_name(ctx.out, records),
        "parts": records,
        "goals": goals(records),
    }
    (ctx.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"summary: {ctx.out / 'summary.json'}")
    return 1 if any(r["status"] in ("fail", "timeout") for r in records) else 0


def run_all(parts, ctx, jobs, budgets, deadline, forced):
    """Runs the parts, `jobs` at a time, each once the parts it needs are done -> their records, in
    order. Tasks start in order, so a waiting part's needs have started before it: no deadlock."""
    finished = {p.name: threading.Event() for p in parts}
    done = {}

    def task(part):
        for name in part.needs:
            if name in finished:
                finished[name].wait()
        left = deadline - time.perf_counter()
        record = run_part(
            part,
            ctx,
            min(budgets[part.name], left),
            part.name in forced,
            dict(done),
            out_of_time=left < 5,
        )
        if part.name == "data" and record["status"] == "ok":
            small_test_split(ctx)  # written once here, read by the parts that run next
        done[part.name] = record["status"]
        finished[part.name].set()
        print(f"{part.name}: {record['status']} in {record['seconds']:.1f} s", flush=True)
        return record

    with ThreadPoolExecutor(jobs) as pool:
        return [f.result() for f in [pool.submit(task, p) for p in parts]]


def gpu_name(out, records):
    """-> the 'GPU:' that describe_machine() printed in the first log that has one."""
    for r in records:
        log = out / r["log"]
        text = log.read_text(errors="replace") if log.exists() else ""
        found = re.search(r"GPU: (.+)$", text, re.M)
        if found:
            return found.group(1).strip()
    return None


def launch_main(argv):
    """--launch SCRIPT [--tf32 on|off] [--group nccl|gloo] -- ARGS: runs SCRIPT as __main__ after
    setting the TF32 flags and, under torchrun, joining a process group on that backend (the
    script's collectives then run on it even at world size 1, where utils/distributed.py starts
    none)."""
    import runpy

    import torch

    split = argv.index("--")
    script, flags, rest = argv[1], argv[2:split], argv[split + 1 :]
    opts = dict(zip(flags[::2], flags[1::2]))
    if "--tf32" in opts:
        tf32 = opts["--tf32"] == "on"
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    if "--group" in opts:
        if opts["--group"] == "nccl":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        torch.distributed.init_process_group(opts["--group"])
        print(
            f"process group: {torch.distributed.get_backend()}, "
            f"world size {torch.distributed.get_world_size()}"
        )
        count_sync_bn(torch)
    sys.argv = [script, *rest]
    runpy.run_path(script, run_name="__main__")


def count_sync_bn(torch):
    """Prints at exit how many SyncBatchNorm layers were built: STAGE2.SYNC_BN took effect."""
    import atexit

    built, init = [0], torch.nn.SyncBatchNorm.__init__

    def counted(self, *a, **k):
        built[0] += 1
        init(self, *a, **k)

    torch.nn.SyncBatchNorm.__init__ = counted
    atexit.register(lambda: built[0] and print(f"SyncBatchNorm layers: {built[0]}", flush=True))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--launch"]:
        launch_main(sys.argv[1:])
        sys.exit(0)
    from utils import cli

    sys.exit(cli.run(main))
