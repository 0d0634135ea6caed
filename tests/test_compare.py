"""tools/compare.py (engine/compare.py): two synthetic methods on the demo config's test split
(the 199 ShanghaiTech test videos and their frame masks), one as a .npz and one as a folder of
<video>.npy; exact values, the files written, refusals."""

import json
from pathlib import Path

import numpy as np
import pytest

from datasets import build
from run_tool import run_tool, tool_main
from utils import cli
from utils.config import load_cfg

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo" / "stage1.yaml"
# scored frames of the demo test split (16-frame clips): normal videos, abnormal videos, anomalous
NORMAL_FRAMES, ABNORMAL_FRAMES, ANOMALOUS_FRAMES = 123_440, 17_264, 7_932


@pytest.fixture(scope="module")
def methods(tmp_path_factory):
    """-> (folder, {name: path}): 'label' scores every clip with its video's label (.npz), 'flat'
    scores every clip 0.5 (a folder of <video>.npy)."""
    cfg = load_cfg(DEMO, [])
    _, videos = build.load_splits(cfg, need_train=False)
    # imported through its module: pytest would collect a test_* name as a test
    labels = build.test_ground_truth(cfg, videos)
    n_clips = {v.name: len(labels[v.name]) // 16 for v in videos}
    base = tmp_path_factory.mktemp("compare")
    label = {v.name: np.full(n_clips[v.name], float(v.label)) for v in videos}
    np.savez(base / "label.npz", **label)
    (base / "flat").mkdir()
    for name, n in n_clips.items():
        np.save(base / "flat" / f"{name}.npy", np.full(n, 0.5, dtype=np.float32))
    partial = dict(label)
    del partial["01_0025"]
    np.savez(base / "partial.npz", **partial)
    return base, {"label": base / "label.npz", "flat": base / "flat"}


def _argv(methods, out, *extra):
    specs = [f"{name}={path}" for name, path in methods.items()]
    return ["--cfg", str(DEMO), "--scores", *specs, "--out", str(out), *extra]


def test_two_methods_side_by_side(methods, tmp_path):
    _, files = methods
    result = run_tool("compare", _argv(files, tmp_path / "out"))
    label, flat = result["methods"]["label"], result["methods"]["flat"]
    # 'label': every positive frame scores 1; of the negatives, the normal videos' score 0 and the
    # abnormal videos' score 1 (a tie with the positives, half a pair each)
    negatives = NORMAL_FRAMES + ABNORMAL_FRAMES - ANOMALOUS_FRAMES
    want = (NORMAL_FRAMES + 0.5 * (ABNORMAL_FRAMES - ANOMALOUS_FRAMES)) / negatives
    assert label["auc"] == pytest.approx(want, abs=1e-12)
    assert label["n_frames"] == NORMAL_FRAMES + ABNORMAL_FRAMES
    assert label["n_anomalous_frames"] == ANOMALOUS_FRAMES
    # within the abnormal videos every frame ties: 0.5; no normal frame above the 0.5 threshold
    assert (label["auc_abnormal"], label["far_normal_videos"]) == (0.5, 0.0)
    assert (flat["auc"], flat["auc_abnormal"]) == (0.5, 0.5)
    # constant scores within every video: no detection, AP 0 at every IoU
    for m in (label, flat):
        assert m["map_iou"] == {t: 0.0 for t in ("0.1", "0.2", "0.3", "0.4", "0.5")}
        assert m["map_mean"] == 0.0
    out = tmp_path / "out"
    record = json.loads((out / "compare.json").read_text())
    assert record["methods"]["label"]["source"] == str(files["label"])
    assert record["methods"]["flat"]["auc"] == 0.5 and record["dataset"] == "demo"
    table = (out / "compare.md").read_text().splitlines()
    assert table[0] == "| metric (%) | label | flat |"
    assert f"| AUC | {100 * want:.2f} | 50.00 |" in table
    assert "| mAP @ IoU 0.3 | 0.00 | 0.00 |" in table
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["compare.json", "compare.md", "compare.png"]


def test_existing_outputs_need_force(methods, tmp_path, capsys):
    _, files = methods
    out = tmp_path / "out"
    run_tool("compare", _argv(files, out))
    assert cli.run(tool_main("compare"), _argv(files, out)) == 2
    assert f"error: {out / 'compare.md'} holds an earlier comparison: pass --force" in (
        capsys.readouterr().err
    )
    assert run_tool("compare", _argv({"flat": files["flat"]}, out, "--force"))["out"] == str(out)
    assert list(json.loads((out / "compare.json").read_text())["methods"]) == ["flat"]


def test_a_method_missing_a_video_names_the_file_and_the_video(methods, tmp_path, capsys):
    base, files = methods
    out = tmp_path / "out"
    argv = _argv({**files, "partial": base / "partial.npz"}, out)
    assert cli.run(tool_main("compare"), argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: --scores partial={base / 'partial.npz'} has no scores for video '01_0025' (1 of"
        " 199 test videos missing;"
    )
    # nothing written
    assert not out.exists()


def test_bad_method_arguments(methods, tmp_path, capsys):
    _, files = methods
    argv = _argv({}, tmp_path / "out")
    argv[argv.index("--scores") + 1 : argv.index("--scores") + 1] = [
        f"a={files['label']}",
        f"a={files['flat']}",
    ]
    assert cli.run(tool_main("compare"), argv) == 2
    assert "error: --scores names the method 'a' twice" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.run(tool_main("compare"), _argv({"e": empty}, tmp_path / "out")) == 2
    assert f"error: score folder {empty} holds no <video>.npy files" in capsys.readouterr().err
