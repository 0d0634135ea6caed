"""tools/sweep.py: one run per seed, mean ± std (ddof 1) of the final metrics, finished seeds
reused."""

import json

import numpy as np
import pytest

from tests.stage1_fixtures import make_tiny_dataset, tiny_opts
from engine import sweep
from run_tool import run_tool, tool_namespace


def test_aggregate_hand_computed_and_argument_split():
    mean, std = sweep.aggregate({0: {"a": 0.5, "b": 1.0}, 1: {"a": 0.7}, 2: {"a": 0.9}})
    # "b" is not in every seed
    assert mean == {"a": pytest.approx(0.7)} and std == {"a": pytest.approx(0.2)}
    args = tool_namespace("sweep")["parse_args"](
        ["--cfg", "x.yaml", "--seeds", "0", "1", "STAGE1.EPOCHS", "2", "DEVICE", "cpu"]
    )
    assert (
        args.seeds == [0, 1]
        and args.opts == ["STAGE1.EPOCHS", "2", "DEVICE", "cpu"]
        and args.stage == 1
    )
    with pytest.raises(SystemExit):
        tool_namespace("sweep")["parse_args"](["--seeds", "0", "SEED", "3"])


def test_sweep_over_two_seeds(tmp_path, capsys):
    tiny = make_tiny_dataset(tmp_path / "data", n_train=8, n_test=4)
    opts = tiny_opts(tiny, tmp_path / "sweep", epochs=2)[2:]
    result = run_tool("sweep", ["--cfg", "", "--seeds", "0", "1"] + opts)
    runs = [
        json.loads((tmp_path / "sweep" / f"seed_{s}" / "results.json").read_text()) for s in (0, 1)
    ]
    aucs = [r["test"]["auc"] for r in runs]
    assert aucs[0] != aucs[1]  # the seeds differ
    assert result["mean"]["test/auc"] == pytest.approx(np.mean(aucs))
    assert result["std"]["test/auc"] == pytest.approx(np.std(aucs, ddof=1))
    assert result["per_seed"]["1"]["pseudo_label_auc"] == runs[1]["pseudo_label_auc"]
    assert {"last/auc", "best/auc"} <= set(result["mean"])
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text()) == json.loads(
        json.dumps(result)
    )
    assert "test/auc" in capsys.readouterr().out
    # finished seeds are read back, not retrained
    again = run_tool("sweep", ["--cfg", "", "--seeds", "0", "1"] + opts)
    assert again["mean"] == result["mean"] and "already finished, reused" in capsys.readouterr().out
