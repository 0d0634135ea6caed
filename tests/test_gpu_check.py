"""benchmarks/stage2_epoch.py counts iterations and optimizer steps exactly; benchmarks/gpu_check.py
runs every part the CPU can run (--device cpu --quick), gives the reason it skips the others, and
turns a failed or hanging part into exit status 1."""

import json
import math
import subprocess
import sys

import torch

from benchmarks import stage2_epoch
from benchmarks.gpu_check import PARTS
from utils.config import REPO_ROOT

GPU_CHECK = str(REPO_ROOT / "benchmarks" / "gpu_check.py")


def test_stage2_epoch_counts_iterations_and_the_optimizer_steps_taken(tmp_path, capsys):
    """ACCUMULATE 3 (the recipe): a warm-up of 2 is rounded up to one whole window (1 step), then 4
    timed iterations close one window (the step at iteration 6) and leave 1 iteration pending."""
    stage2_epoch.main(
        [
            "--device",
            "cpu",
            "--tiny",
            "--videos",
            "2",
            "--test-videos",
            "1",
            "--batch",
            "1",
            "--workers",
            "0",
            "--warmup",
            "2",
            "--iters",
            "4",
            "--amp",
            "off",
            "--json",
            "--dir",
            str(tmp_path),
            "STAGE2.CLIP_NUM",
            "1",
        ]
    )
    out = capsys.readouterr().out
    (row,) = json.loads(out.strip().splitlines()[-1])["rows"]
    assert (row["warmup_iterations"], row["iterations"], row["accumulate"]) == (3, 4, 3)
    assert (row["windows_closed"], row["pending_iterations"], row["optimizer_steps"]) == (1, 1, 1)
    assert "4 iterations = 1 ACCUMULATE 3 windows (1 optimizer steps taken) + 1 iterations" in out
    assert row["clips_per_iteration"] == 2 and row["frames_per_s"] == 16 * row["clips_per_s"] > 0
    assert row["ms_per_iter_median"] > 0 and 0 <= row["data_wait_share"] < 1
    assert math.isfinite(row["loss_first"]) and math.isfinite(row["loss_last"])
    assert row["scaler_scale"] is None  # AMP off: no GradScaler
    # the test row's checkpoint: Adam stepped twice in all (warm-up 1 + timed 1) in 7 iterations
    state = torch.load(row["checkpoint"], map_location="cpu", weights_only=True)
    assert state["global_step"] == 7
    assert {int(s["step"]) for s in state["optimizer"]["state"].values()} == {2}
    assert row["test_clips"] > 0


def _gpu_check(tmp_path, *args):
    cmd = [sys.executable, GPU_CHECK, "--device", "cpu", "--quick", "--out", str(tmp_path), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    summary = json.loads((tmp_path / "summary.json").read_text())
    return proc, {p["name"]: p for p in summary["parts"]}, summary


def test_cpu_quick_runs_every_part_the_cpu_can_and_says_why_it_skips_the_others(tmp_path):
    proc, parts, summary = _gpu_check(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert list(parts) == [p.name for p in PARTS]
    for name in ("data", "encoder", "encoder_c3d", "stage2", "resume", "torchrun", "test"):
        assert parts[name]["status"] == "ok", parts[name]
        assert (tmp_path / parts[name]["log"]).exists()
    skipped = {
        "sync_bn": "needs CUDA",
        "encoder_fp32": "TF32 is a CUDA setting",
        "encoder_compile": "torch.compile",
        "stage2_device_augment": "a GPU row",
    }
    for name, reason in skipped.items():
        assert parts[name]["status"] == "skipped" and reason in parts[name]["reason"]
    for name in ("pipeline", "onnx"):  # skipped only with a reason (no --pipeline-only, no onnx)
        assert parts[name]["status"] == "ok" or (
            parts[name]["status"] == "skipped" and parts[name]["reason"]
        )
    stage2 = parts["stage2"]["figures"]["rows"]
    assert [r["amp"] for r in stage2] == ["off", "bf16"]
    assert all(r["iterations"] == 3 and r["optimizer_steps"] == 1 for r in stage2)
    assert all(isinstance(r["clips_per_s"], float) and r["clips_per_s"] > 0 for r in stage2)
    resume = parts["resume"]["figures"]
    assert resume["resumed_bitwise"] is True and resume["resumed_max_abs_diff"] == 0.0
    assert resume["global_step"] == 4
    torchrun = parts["torchrun"]["figures"]
    assert (torchrun["backend"], torchrun["world_size"]) == ("gloo", 1)
    test = parts["test"]["figures"]["cpu bf16"]
    assert isinstance(test["max_abs_diff"], float) and test["max_abs_diff"] <= test["tolerance"]
    encoder = parts["encoder"]["figures"]["rows"] + parts["encoder_c3d"]["figures"]["rows"]
    assert [(r["kind"], r["net"], r["size"]) for r in encoder] == [
        ("infer", "i3d", "32x32"),
        ("infer", "c3d", "32x32"),
    ]
    assert all(isinstance(r["frames_per_s"], float) and r["frames_per_s"] > 0 for r in encoder)
    wait = parts["stage2"]["figures"]["data_wait_share"]
    assert summary["goals"]["stage2_data_wait_share"] == wait and 0 <= wait < 1
    assert "part " in proc.stdout and "summary:" in proc.stdout  # the table


def test_a_failed_part_gives_exit_1_and_the_parts_needing_it_are_skipped(tmp_path):
    proc, parts, _ = _gpu_check(
        tmp_path, "--parts", "data", "stage2", "sync_bn", "--fail-part", "data"
    )
    assert proc.returncode == 1
    assert parts["data"]["status"] == "fail" and "forced failure" in parts["data"]["reason"]
    assert parts["stage2"]["status"] == "skipped"
    assert "needs the data part" in parts["stage2"]["reason"]
    assert parts["sync_bn"]["status"] == "skipped"


def test_a_part_past_its_budget_is_killed_and_reported_as_timeout(tmp_path):
    proc, parts, _ = _gpu_check(tmp_path, "--parts", "data", "--timeout", "data=1")
    assert proc.returncode == 1
    assert parts["data"]["status"] == "timeout" and parts["data"]["seconds"] < 10
    assert (tmp_path / "data.log").read_text().startswith("$ ")
