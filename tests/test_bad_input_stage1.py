"""Stage-1 bad input: every case stops with a message naming the thing and the fix, and writes
nothing."""

import h5py
import numpy as np
import pytest
import torch

from tests.stage1_fixtures import make_tiny_dataset, tiny_opts
from utils.config import ConfigError
from run_tool import run_tool


@pytest.fixture()
def tiny(tmp_path):
    return make_tiny_dataset(tmp_path / "data")


def _fails(tiny, tmp_path, error, match, **opts):
    out = tmp_path / "out"
    with pytest.raises(error, match=match):
        run_tool("train_stage1", tiny_opts(tiny, out, **opts))
    assert not out.exists(), "a failed run must not leave an output folder"


def test_missing_feature_file(tiny, tmp_path):
    _fails(
        tiny,
        tmp_path,
        FileNotFoundError,
        "DATA.FEATURES",
        **{"DATA.FEATURES": tmp_path / "nope.h5"},
    )


def test_split_video_missing_from_h5(tiny, tmp_path):
    with h5py.File(tiny["features"], "a") as f:
        del f["tr_0003.npy"]
    _fails(tiny, tmp_path, KeyError, "tr_0003")


def test_feature_dim_differs_from_config(tiny, tmp_path):
    _fails(tiny, tmp_path, ValueError, "DATA.FEATURE_DIM", **{"DATA.FEATURE_DIM": 16})


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_features(tiny, tmp_path, bad):
    with h5py.File(tiny["features"], "a") as f:
        data = f["te_0002.npy"][()]
        data[1, 3] = bad
        f["te_0002.npy"][...] = data
    _fails(tiny, tmp_path, ValueError, "te_0002")


def test_empty_split(tiny, tmp_path):
    tiny["train"].write_text("\n")
    _fails(tiny, tmp_path, ValueError, "empty")


def test_mask_shorter_than_scores(tiny, tmp_path):
    mask = np.load(tiny["masks"] / "te_0001.npy")
    np.save(tiny["masks"] / "te_0001.npy", mask[:-40])  # now shorter than 16 x its clips
    _fails(tiny, tmp_path, ValueError, "te_0001.*TEST.MAX_PAD_CLIPS")


def test_unknown_key_and_wrong_type(tiny, tmp_path):
    _fails(tiny, tmp_path, ConfigError, "STAGE1.EPOCH\\b", **{"STAGE1.EPOCH": 3})
    _fails(tiny, tmp_path, ConfigError, "Type mismatch.*STAGE1.LR", **{"STAGE1.LR": "fast"})


def test_too_few_videos_for_the_batch(tiny, tmp_path):
    _fails(tiny, tmp_path, ValueError, "STAGE1.BATCH_SIZE", **{"STAGE1.BATCH_SIZE": 13})


def test_cuda_requested_without_cuda(tiny, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _fails(tiny, tmp_path, RuntimeError, "DEVICE", DEVICE="cuda")


def test_checkpoint_from_another_model(tiny, tmp_path):
    foreign = tmp_path / "foreign.pth"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, foreign)
    with pytest.raises(ValueError, match="neither a stage-1 checkpoint nor a MIST model"):
        run_tool("test", tiny_opts(tiny, tmp_path / "out") + ["TEST.CHECKPOINT", str(foreign)])
    other_dim = tmp_path / "run"
    run_tool("train_stage1", tiny_opts(tiny, other_dim, epochs=2))
    state = torch.load(other_dim / "checkpoints" / "last.pth", weights_only=True)
    state["model"]["regressor.0.weight"] = torch.zeros(512, 16)
    torch.save(state, foreign)
    with pytest.raises(ValueError, match="does not fit the stage-1 generator"):
        run_tool("test", tiny_opts(tiny, tmp_path / "out") + ["TEST.CHECKPOINT", str(foreign)])
    assert not (tmp_path / "out").exists()
