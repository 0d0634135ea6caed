"""tools/train_stage2.py end to end on tiny videos: products, resume, accumulation, DDP with
gloo."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.stage2_fixtures import make_tiny_videos, tiny_stage2_opts
from utils.config import REPO_ROOT
from run_tool import run_tool


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_tiny_videos(tmp_path_factory.mktemp("videos"))


def _state(out, name="last"):
    return torch.load(out / "checkpoints" / f"{name}.pth", map_location="cpu", weights_only=True)


def test_run_writes_products_and_learns(videos, tmp_path):
    out = tmp_path / "run"
    results = run_tool("train_stage2", tiny_stage2_opts(videos, out, epochs=3))
    for name in (
        "config.yaml",
        "log.txt",
        "metrics.jsonl",
        "checkpoints/last.pth",
        "checkpoints/best.pth",
        "test_scores.npz",
        "results.json",
    ):
        assert (out / name).exists(), name
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3] and "TEST set" in records[0]["selection"]
    # warm-up over 1 epoch: factor 0.5 during epoch 0, then 1 (official (e + 0.5) / W rule)
    assert [r["lr"] for r in records] == pytest.approx([5e-4, 1e-3, 1e-3])
    # every epoch: 2 iterations x 2 x BATCH_SIZE videos x 3 clips in train/clips_per_s; no CUDA, no
    # peak memory
    assert all(r["train/clips_per_s"] > 0 and "train/peak_memory_gib" not in r for r in records)
    assert results["test"]["n_clips"] == sum(
        len(v) for v in __import__("numpy").load(out / "test_scores.npz").values()
    )
    state = _state(out)
    # 2 iterations per epoch x 3 epochs = 6 steps of accumulation 3: no gradients pending at the end
    assert state["global_step"] == 6 and all(g is None for g in state["pending_grads"])


def test_frozen_backbone_and_bn_statistics_do_not_move(videos, tmp_path):
    out = tmp_path / "frozen"
    run_tool("train_stage2", tiny_stage2_opts(videos, out, epochs=1, **{"STAGE2.ACCUMULATE": 1}))
    from models.build import build_model
    from utils.config import load_cfg

    cfg = load_cfg(None, tiny_stage2_opts(videos, out)[2:])
    torch.manual_seed(cfg.SEED)
    initial = build_model(cfg).state_dict()
    trained = _state(out)["model"]
    backbone = [k for k in initial if k.startswith("backbone.")]
    # weights and BN running stats
    assert all(torch.equal(initial[k], trained[k]) for k in backbone)
    assert not torch.equal(initial["head.weight"], trained["head.weight"])


def test_uint8_input_normalised_on_the_device_trains_the_same_weights(videos, tmp_path):
    runs = {}
    for uint8 in (True, False):
        out = tmp_path / f"uint8_{uint8}"
        run_tool(
            "train_stage2",
            tiny_stage2_opts(
                videos, out, epochs=1, **{"STAGE2.FREEZE_EPOCHS": 0, "STAGE2.UINT8_INPUT": uint8}
            ),
        )
        runs[uint8] = _state(out)["model"]
    assert all(torch.equal(runs[True][k], runs[False][k]) for k in runs[True])
    from datasets.build import stage2_transforms
    from utils.config import load_cfg

    # the key reaches the loader's transform (uint8 out, normalised in Trainer.step)
    for uint8 in (True, False):
        cfg = load_cfg(
            None,
            tiny_stage2_opts(videos, tmp_path / "cfg")[2:] + ["STAGE2.UINT8_INPUT", str(uint8)],
        )
        assert stage2_transforms(cfg)[0].normalise is not uint8


def test_accumulation_carries_across_epochs_and_resume_is_exact(videos, tmp_path):
    """2 iterations/epoch with ACCUMULATE 3: an optimizer step straddles epochs 1-2; resume at epoch
    1."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_tool(
        "train_stage2", tiny_stage2_opts(videos, straight, epochs=2, **{"STAGE2.FREEZE_EPOCHS": 0})
    )
    run_tool(
        "train_stage2", tiny_stage2_opts(videos, resumed, epochs=1, **{"STAGE2.FREEZE_EPOCHS": 0})
    )
    mid = _state(resumed)
    # 2 of 3 accumulated
    assert mid["global_step"] == 2 and any(g is not None for g in mid["pending_grads"])
    run_tool(
        "train_stage2",
        ["--resume"] + tiny_stage2_opts(videos, resumed, epochs=2, **{"STAGE2.FREEZE_EPOCHS": 0}),
    )
    a, b = _state(straight)["model"], _state(resumed)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_two_gloo_ranks_end_with_identical_weights(videos, tmp_path):
    """Two CPU processes (gloo) share each batch; with no dropout (C3D has no BatchNorm) they must
    also match one process training on the whole batch: the shards cover it and the gradients are
    averaged."""
    out = tmp_path / "ddp"
    opts = {"MODEL.DROPOUT": 0.0, "STAGE2.FREEZE_EPOCHS": 0}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(REPO_ROOT / "tools" / "train_stage2.py"),
    ] + tiny_stage2_opts(videos, out, epochs=2, DEVICE="cpu", **opts)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    digests = results["weights_digest_per_rank"]
    assert results["world_size"] == 2 and len(digests) == 2 and digests[0] == digests[1]
    run_tool("train_stage2", tiny_stage2_opts(videos, tmp_path / "single", epochs=2, **opts))
    a, b = _state(out)["model"], _state(tmp_path / "single")["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_training_runs_and_learns_on_cpu(videos, tmp_path, amp):
    """torch.autocast (bf16; fp16 with a GradScaler): finite losses, weights that move, the same
    products."""
    out = tmp_path / amp
    results = run_tool(
        "train_stage2",
        tiny_stage2_opts(videos, out, epochs=2, **{"STAGE2.AMP": amp, "STAGE2.FREEZE_EPOCHS": 0}),
    )
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert (
        all(np.isfinite(r["train/loss"]) for r in records) and 0.0 <= results["test"]["auc"] <= 1.0
    )
    state = _state(out)
    if amp == "fp16":  # the GradScaler's state is checkpointed for an exact resume
        assert state["scaler"]["scale"] > 0
    from models.build import build_model
    from utils.config import load_cfg

    torch.manual_seed(0)
    initial = build_model(load_cfg(None, tiny_stage2_opts(videos, out)[2:])).state_dict()
    assert not torch.equal(
        initial["backbone.conv1a.weight"], state["model"]["backbone.conv1a.weight"]
    )


def test_compile_wraps_the_training_forward_with_the_configured_mode(videos, tmp_path, monkeypatch):
    # the real compilation is exercised by the GPU check (benchmarks/gpu_check.py); here: the wiring
    calls = []

    def fake_compile(module, mode=None):
        calls.append((type(module).__name__, mode))
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    out = tmp_path / "compiled"
    run_tool(
        "train_stage2",
        tiny_stage2_opts(
            videos,
            out,
            epochs=2,
            **{"STAGE2.FREEZE_EPOCHS": 1, "STAGE2.COMPILE": "reduce-overhead"},
        ),
    )
    assert calls == [("MIST", "reduce-overhead")] * 2  # frozen phase, then unfrozen: rebuilt once
    from utils.config import ConfigError, load_cfg

    with pytest.raises(ConfigError, match="STAGE2.COMPILE"):
        load_cfg(None, ["STAGE2.COMPILE", "fast"])
