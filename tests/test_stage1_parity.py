"""Golden-vector parity of the stage-1 pieces with the official code (tests/golden,
docs/REFERENCE.md §1)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets.sampling import sparse_continuous_sample
from models.losses import mil_ranking_loss
from models.mil_generator import MILGenerator
from utils.pseudo_labels import refine_scores, smooth

GOLDEN = Path(__file__).parent / "golden"


def _npz(name):
    return np.load(GOLDEN / f"{name}.npz", allow_pickle=False)


@pytest.mark.parametrize(
    "case",
    json.loads((GOLDEN / "stage1_sampling.json").read_text())["cases"],
    ids=lambda c: c["key"],
)
def test_uniform_sampling_matches_official(case):
    expected = _npz("stage1_sampling")[case["key"]]
    for seed in range(3):
        idx = sparse_continuous_sample(
            case["F"], 32, case["T"], "uniform", np.random.default_rng(seed)
        )
        np.testing.assert_array_equal(idx, expected)


def _official_rule_weights(in_dim):
    """Golden weight rule (tests/golden/README.md §1) over the official Simple_Regressor
    state_dict order."""
    model = MILGenerator(in_dim)
    state = {}
    for i, (key, value) in enumerate(model.state_dict().items()):
        rng = np.random.RandomState(1000 + i)
        if value.ndim >= 2:
            arr = rng.normal(0, 1 / np.sqrt(np.prod(value.shape[1:])), value.shape)
        else:
            arr = rng.normal(0, 0.01, value.shape)
        state[key] = torch.from_numpy(arr.astype(np.float32))
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.mark.parametrize("in_dim", [1024, 4096])
def test_mlp_matches_official(in_dim):
    golden = _npz("stage1_simple_regressor")
    model = _official_rule_weights(in_dim)
    inputs = torch.from_numpy(golden[f"D{in_dim}_input"])
    with torch.no_grad():
        out = model(inputs.reshape(-1, in_dim))
    np.testing.assert_allclose(
        out.numpy(), golden[f"D{in_dim}_output_f64"][:, 0], atol=1e-5, rtol=0
    )
    assert sum(p.numel() for p in model.parameters()) == {1024: 541_249, 4096: 2_114_113}[in_dim]


@pytest.mark.parametrize("case", range(8))
def test_topk_loss_matches_official(case):
    g = _npz("stage1_topk_rank_loss")
    y = torch.tensor(g[f"case{case}_y_pred"][..., 0], dtype=torch.float64, requires_grad=True)
    batch = int(g[f"case{case}_B"])
    loss, parts = mil_ranking_loss(
        y[:batch],
        y[batch:],
        topk=7,
        lambda_sparse=float(g[f"case{case}_lambda_1"]),
        lambda_smooth=float(g[f"case{case}_lambda_2"]),
    )
    loss.backward()
    for name, key in [("rank", "err"), ("sparse", "spar_l1"), ("smooth", "smooth_l2")]:
        assert abs(parts[name].item() - g[f"case{case}_{key}_f64"]) <= 1e-5
    assert abs(loss.item() - g[f"case{case}_loss_f64"]) <= 1e-5
    np.testing.assert_allclose(
        y.grad.numpy(), g[f"case{case}_grad_y_pred_f64"][..., 0], atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("n", [1, 2, 3, 5, 12, 100])
def test_refinement_matches_official(n):
    g = _npz("pl_refinement")
    x = g[f"len{n}_input"]
    np.testing.assert_allclose(smooth(x, 5), g[f"len{n}_smooth1"], atol=1e-12, rtol=0)
    np.testing.assert_allclose(smooth(smooth(x, 5), 5), g[f"len{n}_smooth2"], atol=1e-12, rtol=0)
    np.testing.assert_allclose(
        refine_scores(x, abnormal=True), g[f"len{n}_refined_abnormal"], atol=1e-12, rtol=0
    )
    np.testing.assert_allclose(
        refine_scores(x, abnormal=False), g[f"len{n}_refined_normal"], atol=1e-12, rtol=0
    )


def test_constant_abnormal_vector_gives_zeros_not_nan():
    g = _npz("pl_refinement")
    assert np.isnan(g["const5_refined_abnormal"]).all()  # what the official code produces
    np.testing.assert_array_equal(refine_scores(g["const5_input"], abnormal=True), np.zeros(5))
    np.testing.assert_allclose(
        refine_scores(g["const5_input"], abnormal=False), g["const5_refined_normal"], atol=1e-12
    )
