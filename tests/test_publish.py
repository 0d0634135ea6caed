"""tools/publish.py: a finished run -> a release file (weights + config, sha256 prefix in its name,
model card) that tools/test.py loads and every loader verifies."""

import hashlib
import json
import re

import pytest
import torch

from run_tool import run_tool
from tests.stage1_fixtures import make_tiny_dataset, tiny_opts
from utils.checkpoint import release_prefix, verify_release
from utils.errors import ExistsError, InputError


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("publish")
    tiny = make_tiny_dataset(root / "data")
    results = run_tool("train_stage1", tiny_opts(tiny, root / "run", epochs=4))
    return tiny, root / "run", results


def test_release_is_weights_and_config_named_by_its_digest(run, tmp_path):
    tiny, run_dir, results = run
    out = run_tool("publish", [str(run_dir), "--checkpoint", "last", "--out", str(tmp_path)])
    path = tmp_path / "run_last-{}.pth".format(release_prefix(out["sha256"]))
    assert out["file"] == str(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == out["sha256"]
    release = torch.load(path, weights_only=True)
    original = torch.load(run_dir / "checkpoints" / "last.pth", weights_only=True)
    # the optimizer and the random streams are gone; the weights are the run's
    assert set(release) == {"kind", "model", "cfg", "epoch", "best"} and "optimizer" in original
    assert all(torch.equal(release["model"][k], original["model"][k]) for k in original["model"])
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["sha256"] == out["sha256"] and card["kind"] == "stage1" and card["epoch"] == 4
    assert card["metrics"]["test"]["auc"] == results["test"]["auc"]
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?|unknown", card["commit"])
    assert f"`{out['sha256']}`" in path.with_suffix(".md").read_text()
    # tools/test.py loads the release like the checkpoint it came from
    test = run_tool("test", tiny_opts(tiny, tmp_path / "t") + ["TEST.CHECKPOINT", str(path)])
    assert test["auc"] == results["test"]["auc"]
    with pytest.raises(ExistsError, match="pass --force"):
        run_tool("publish", [str(run_dir), "--checkpoint", "last", "--out", str(tmp_path)])
    # the refused run left nothing behind: the release, its two cards, the test's folder
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [path.name, path.with_suffix(".json").name, path.with_suffix(".md").name, "t"]
    )


def test_a_changed_release_is_refused_by_every_loader(run, tmp_path):
    tiny, run_dir, _ = run
    out = run_tool("publish", [str(run_dir), "--out", str(tmp_path)])
    path = tmp_path / out["file"].rsplit("/", 1)[1]
    data = bytearray(path.read_bytes())
    data[-30] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"its name says sha256 [0-9a-f]{8}\.\.\., but the file"):
        run_tool("test", tiny_opts(tiny, tmp_path / "t") + ["TEST.CHECKPOINT", str(path)])


def test_only_release_names_are_verified(tmp_path):
    assert release_prefix("12345678" + "9a" + "0" * 54) == "123456789a"
    assert release_prefix("1a2b3c4d" + "0" * 56) == "1a2b3c4d"
    # a date or an epoch number ends many a checkpoint's name: never taken for a digest
    for name in ("model-20260301.pth", "epoch-00000010.pth", "plain.pth"):
        (tmp_path / name).write_bytes(b"anything")
        verify_release(tmp_path / name)
    (tmp_path / "model-deadbeef.pth").write_bytes(b"anything")
    with pytest.raises(InputError, match="its name says sha256 deadbeef"):
        verify_release(tmp_path / "model-deadbeef.pth")
