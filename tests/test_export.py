"""tools/export.py (engine/export.py): ONNX / TorchScript exports of MIST (I3D, C3D) and the stage-1
generator match PyTorch, and tools/infer.py gives the same scores with an exported model as with the
checkpoint."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.mil_generator import MILGenerator
from models.mist import MIST
from engine import export
from utils.config import load_cfg
from utils.errors import UserError
from run_tool import run_tool

REAL = Path(__file__).parent / "data" / "videos" / "Normal_Videos020_x264_head100.mp4"
SIZES = {"i3d": "[32, 32]", "c3d": "[32, 40, 32]"}


def _opts(backbone):
    return [
        "MODEL.BACKBONE",
        backbone,
        "MODEL.WIDTH",
        "0.0625",
        "MODEL.EXPAND_K",
        "2",
        "DATA.TEST_SIZE",
        SIZES[backbone],
    ]


def _checkpoint(tmp_path, backbone):
    torch.manual_seed(0)
    model = MIST(backbone, expand_k=2, width=0.0625)
    cfg = load_cfg(None, _opts(backbone))
    # an authors'-style file without a config: the MODEL keys of the command line build the model
    torch.save({"model": model.state_dict()}, tmp_path / f"{backbone}.pth")
    return tmp_path / f"{backbone}.pth", model.eval(), cfg


@pytest.mark.parametrize("backbone", ["c3d", "i3d"])
def test_mist_exports_match_pytorch(tmp_path, backbone):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    path, model, cfg = _checkpoint(tmp_path, backbone)
    assert run_tool("export", [str(path), str(tmp_path / "mist"), *_opts(backbone)]) == 0
    meta = json.loads((tmp_path / "mist.json").read_text())
    assert (
        meta["kind"] == "stage2"
        and meta["backbone"] == backbone
        and meta["outputs"] == ["score", "logits"]
    )
    assert meta["input"]["shape"] == ["N", 3, 16, 32, 32] and meta["files"] == {
        "onnx": "mist.onnx",
        "torchscript": "mist.pt",
    }
    assert all(
        p["checked"] and p["max_abs_diff"] <= p["allowed"] == 1e-4 for p in meta["parity"].values()
    )
    # export() ran both files on a batch of 3 (traced with 2): enough for the slow I3D
    if backbone == "i3d":
        return
    x = torch.randn(1, 3, 16, 32, 32)  # yet another batch size, run here from the files alone
    with torch.no_grad(), torch.jit.optimized_execution(False):
        logits = model(x)["logits"]
        ts_score, ts_logits = torch.jit.load(str(tmp_path / "mist.pt"))(x)
    onnx_score, onnx_logits = ort.InferenceSession(str(tmp_path / "mist.onnx")).run(
        None, {"clips": x.numpy()}
    )
    for score, out in ((onnx_score, onnx_logits), (ts_score.numpy(), ts_logits.numpy())):
        np.testing.assert_allclose(score, torch.softmax(logits, 1)[:, 1].numpy(), atol=1e-5)
        np.testing.assert_allclose(out, logits.numpy(), atol=1e-4)


def test_stage1_generator_export_matches_pytorch(tmp_path):
    torch.manual_seed(0)
    cfg = load_cfg(None, ["DATA.FEATURE_DIM", "24"])
    generator = MILGenerator(24).eval()
    torch.save(
        {"kind": "stage1", "model": generator.state_dict(), "cfg": cfg.dump()},
        tmp_path / "last.pth",
    )
    meta = export.export(tmp_path / "last.pth", tmp_path / "gen", cfg, formats=["torchscript"])
    assert (
        meta["kind"] == "stage1"
        and meta["input"]["shape"] == ["N", 24]
        and meta["parity"]["torchscript"]["checked"]
    )
    x = torch.randn(7, 24)
    with torch.no_grad():
        np.testing.assert_allclose(
            torch.jit.load(str(tmp_path / "gen.pt"))(x).numpy(), generator(x).numpy(), atol=1e-6
        )


def test_parity_failure_writes_nothing(tmp_path, monkeypatch):
    path, _, cfg = _checkpoint(tmp_path, "c3d")
    monkeypatch.setattr(
        export, "run_torchscript", lambda p, x: [np.full((3,), 2.0), np.zeros((3, 2))]
    )
    assert (
        run_tool(
            "export", [str(path), str(tmp_path / "bad"), "--formats", "torchscript", *_opts("c3d")]
        )
        == 1
    )
    assert not list(tmp_path.glob("bad*"))
    with pytest.raises(UserError, match="comma-separated subset"):
        run_tool(
            "export", [str(path), str(tmp_path / "bad"), "--formats", "onnx,tflite", *_opts("c3d")]
        )


def test_infer_runs_the_exported_models_like_the_checkpoint(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    path, _, cfg = _checkpoint(tmp_path, "c3d")
    export.export(path, tmp_path / "mist", cfg)
    results = {}
    for name, model in (
        ("pth", path),
        ("onnx", tmp_path / "mist.onnx"),
        ("ts", tmp_path / "mist.pt"),
    ):
        extra = _opts("c3d") if name == "pth" else []  # exports carry their transform in mist.json
        results[name] = run_tool(
            "infer",
            [str(REAL), "--model", str(model), "--out", str(tmp_path / name), "--quiet", *extra],
        )
    assert [r["backend"] for r in results.values()] == [
        "TorchScorer",
        "OnnxScorer",
        "TorchScriptScorer",
    ]
    reference = np.array(results["pth"]["windows"]["score"])
    assert len(reference) == 6
    for name in ("onnx", "ts"):
        assert results[name]["windows"]["frame"] == results["pth"]["windows"]["frame"]
        np.testing.assert_allclose(results[name]["windows"]["score"], reference, atol=2e-6)
