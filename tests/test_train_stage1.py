"""tools/train_stage1.py and tools/test.py end to end on a tiny dataset: outputs, reproducibility,
resume."""

import json
import os

import numpy as np
import pytest
import torch

from tests.stage1_fixtures import make_tiny_dataset, tiny_opts
from utils.pseudo_labels import load_score_dict
from utils.errors import UserError
from run_tool import run_tool

DROPOUT = {"STAGE1.DROPOUT": 0.6}  # exercises the torch random stream too


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


def _weights(out):
    state = torch.load(out / "checkpoints" / "last.pth", map_location="cpu", weights_only=True)
    return state["model"]


def test_run_writes_every_product(tiny, tmp_path):
    out = tmp_path / "run"
    results = run_tool("train_stage1", tiny_opts(tiny, out))
    for name in (
        "config.yaml",
        "log.txt",
        "metrics.jsonl",
        "checkpoints/last.pth",
        "checkpoints/best.pth",
        "pseudo_labels.npy",
        "pseudo_labels.npz",
        "test_scores.npz",
        "results.json",
    ):
        assert (out / name).exists(), name
    assert list((out / "tensorboard").iterdir())
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [2, 4, 6]
    assert all("TEST set" in r["selection"] for r in records)
    assert records[-1]["best_auc"] == max(r["auc"] for r in records)
    # feature 0 separates the classes: the generator must find it
    assert results["test"]["auc"] > 0.9
    assert results["pseudo_label_auc"] > 0.9 and results["n_train_masks"] == 12
    pls = load_score_dict(out / "pseudo_labels.npy")
    assert len(pls) == 24 and len(pls["tr_0000"]) == len(tiny["arrays"]["tr_0000"])
    abnormal = pls["tr_0001"]
    assert abnormal.min() == 0.0 and abnormal.max() == 1.0


def test_seeded_runs_are_identical(tiny, tmp_path):
    run_tool("train_stage1", tiny_opts(tiny, tmp_path / "a", epochs=4, **DROPOUT))
    run_tool("train_stage1", tiny_opts(tiny, tmp_path / "b", epochs=4, **DROPOUT))
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    run_tool("train_stage1", tiny_opts(tiny, tmp_path / "c", epochs=4, SEED=1, **DROPOUT))
    assert not torch.equal(a["regressor.0.weight"], _weights(tmp_path / "c")["regressor.0.weight"])


def test_resume_continues_exactly(tiny, tmp_path):
    """The numpy sampling stream and the torch dropout stream are restored, so 4 + 2 epochs == 6
    epochs."""
    run_tool("train_stage1", tiny_opts(tiny, tmp_path / "straight", epochs=6, **DROPOUT))
    run_tool("train_stage1", tiny_opts(tiny, tmp_path / "resumed", epochs=4, **DROPOUT))
    with pytest.raises(UserError, match="already holds a finished run"):
        run_tool("train_stage1", tiny_opts(tiny, tmp_path / "resumed", epochs=6, **DROPOUT))
    run_tool(
        "train_stage1", ["--resume"] + tiny_opts(tiny, tmp_path / "resumed", epochs=6, **DROPOUT)
    )
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    epochs = [
        json.loads(x)["epoch"]
        for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    ]
    assert epochs == [2, 4, 6]


def test_interrupted_run_resumes_without_flag(tiny, tmp_path):
    out = tmp_path / "run"
    run_tool("train_stage1", tiny_opts(tiny, out, epochs=4))
    (out / "results.json").unlink()  # as if killed after the epoch-4 checkpoint
    run_tool("train_stage1", tiny_opts(tiny, out, epochs=6))
    assert "resumed from epoch 4" in (out / "log.txt").read_text()


def test_test_tool_matches_training_evaluation(tiny, tmp_path):
    out = tmp_path / "run"
    results = run_tool("train_stage1", tiny_opts(tiny, out, epochs=4))
    opts = tiny_opts(tiny, out) + ["TEST.CHECKPOINT", str(out / "checkpoints" / "last.pth")]
    metrics = run_tool("test", opts)
    assert metrics["auc"] == pytest.approx(results["test"]["auc"], abs=1e-12)
    assert json.loads((out / "test_last.json").read_text())["auc"] == metrics["auc"]
    scores = load_score_dict(out / "test_last_scores.npz")
    from_scores = run_tool(
        "test", tiny_opts(tiny, tmp_path / "s") + ["TEST.SCORES", str(out / "test_last_scores.npz")]
    )
    assert from_scores["auc"] == metrics["auc"] and len(scores) == 12
    np.testing.assert_allclose(
        scores["te_0000"], load_score_dict(out / "test_scores.npz")["te_0000"]
    )


def test_deterministic_key_turns_on_deterministic_kernels_and_changes_nothing_on_the_cpu(
    tiny, tmp_path, monkeypatch
):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    try:
        plain = run_tool("train_stage1", tiny_opts(tiny, tmp_path / "plain", epochs=2))
        det = run_tool(
            "train_stage1", tiny_opts(tiny, tmp_path / "det", epochs=2, DETERMINISTIC=True)
        )
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert (
            not torch.backends.cudnn.benchmark
            and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        )
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[1:]
    assert det["test"]["auc"] == plain["test"]["auc"]
