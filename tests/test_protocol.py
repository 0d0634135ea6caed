"""Validation split, validation metric and the last / best / best_val report (utils/protocol.py)."""

import json

import numpy as np
import pytest
import torch

from datasets.splits import Video
from tests.stage1_fixtures import make_tiny_dataset, tiny_opts
from utils.config import ConfigError, load_cfg
from engine.fit import Best
from utils.protocol import selection_table, split_validation, validation_metric
from run_tool import run_tool


def _ucf_like():
    videos = [Video(f"Normal{i:03d}", 0, None, "Normal") for i in range(10)]
    videos += [Video(f"Abuse{i:03d}", 1, None, "Abuse") for i in range(6)]
    return (
        videos
        + [Video(f"Arson{i:03d}", 1, None, "Arson") for i in range(4)]
        + [Video("Lone000", 1, None, "Lone")]
    )


def test_split_is_stratified_deterministic_and_in_file_order():
    videos = _ucf_like()
    train, val = split_validation(videos, 0.25, seed=0)
    count = lambda vs, c: sum(v.category == c for v in vs)  # noqa: E731
    # round(0.25 n), half up: Normal 2.5 -> 3, Abuse 1.5 -> 2, Arson 1 -> 1; a 1-video class stays
    # in training
    assert [count(val, c) for c in ("Normal", "Abuse", "Arson", "Lone")] == [3, 2, 1, 0]
    assert len(train) + len(val) == len(videos) and not {v.name for v in train} & {
        v.name for v in val
    }
    # file order
    assert val == [v for v in videos if v in val] and train == [v for v in videos if v in train]
    assert split_validation(videos, 0.25, seed=0) == (train, val)
    assert split_validation(videos, 0.25, seed=1)[1] != val
    assert split_validation(videos, 0.0) == (videos, [])
    with pytest.raises(ValueError, match="VAL_FRACTION"):
        split_validation(videos, 1.0)


def test_validation_metric_frame_auc_hand_computed():
    videos = [Video("n", 0), Video("a", 1)]
    scores = {"n": np.array([0.2, 0.1]), "a": np.array([0.15, 0.25])}
    masks = {"a": np.array([0, 1, 1, 1], np.uint8)}
    # clip_len 2: positives .15 .25 .25; negatives .2 .2 .1 .1 (normal video) and .15 -> (2.5 + 5 +
    # 5) / 15
    result = validation_metric(scores, videos, masks, clip_len=2)
    assert result == {"val_metric": "frame_auc", "val": pytest.approx(12.5 / 15)}


def test_validation_metric_falls_back_to_video_auc_without_masks():
    videos = [Video("n1", 0), Video("a", 1), Video("n2", 0)]
    scores = {"n1": np.array([0.2, 0.0]), "a": np.array([0.25, 0.1]), "n2": np.array([0.3])}
    # video max scores .2 / .25 / .3: the abnormal video beats one of the two normal ones
    assert validation_metric(scores, videos, {}, clip_len=2) == {
        "val_metric": "video_auc",
        "val": 0.5,
    }


def test_best_val_tracking_and_selection_table(tmp_path):
    best = Best(0.9, 2)
    assert best.update({"auc": 0.5}, {}, 1) == (False, False)
    assert best.update({"auc": 0.5}, {"val": 0.7, "val_metric": "video_auc"}, 2) == (False, True)
    # ties keep the first
    assert best.update({"auc": 0.5}, {"val": 0.7, "val_metric": "video_auc"}, 4) == (False, False)
    best = best.to_dict()
    records = [
        {
            "epoch": e,
            "auc": a,
            "ap": a / 2,
            "pr_auc": 0,
            "score_gap": 0,
            "far": 0,
            "far_normal_videos": None,
        }
        for e, a in ((2, 0.9), (4, 0.8), (6, 0.85))
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    table = selection_table(tmp_path, best)
    assert (table["last"]["epoch"], table["last"]["auc"]) == (6, 0.85)
    assert (table["best"]["epoch"], table["best"]["auc"]) == (2, 0.9)
    assert (table["best_val"]["epoch"], table["best_val"]["ap"]) == (2, 0.45)


def test_stage1_with_validation_split_reports_last_best_and_best_val(tmp_path, capsys):
    tiny = make_tiny_dataset(tmp_path / "data", n_train=8, n_test=4)
    out = tmp_path / "run"
    opts = {"DATA.VAL_FRACTION": 0.25, "PSEUDO_LABEL.CHECKPOINT": "best_val"}
    results = run_tool("train_stage1", tiny_opts(tiny, out, epochs=4, **opts))
    log = capsys.readouterr().out
    assert "validation split: 4 of 16 training videos held out (2 abnormal" in log
    assert "16 train (1 iterations/epoch)" in log  # 6 + 6 videos left to train on, batches of 4
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # the tiny abnormal videos have masks
    assert all(r["val_metric"] == "frame_auc" for r in records)
    val_epoch = max(records, key=lambda r: r["val"])["epoch"]
    table = results["test_by_checkpoint"]
    assert set(table) == {"last", "best", "best_val"} and table["best_val"]["epoch"] == val_epoch
    assert table["best_val"]["auc"] == next(r["auc"] for r in records if r["epoch"] == val_epoch)
    assert table["best"]["auc"] == max(r["auc"] for r in records) and table["last"]["epoch"] == 4
    assert results["pseudo_labels_from"] == "best_val.pth"
    state = torch.load(out / "checkpoints" / "best_val.pth", map_location="cpu", weights_only=True)
    assert state["epoch"] == val_epoch and state["best"]["val_epoch"] == val_epoch
    assert json.loads((out / "results.json").read_text())["test_by_checkpoint"] == table


def test_best_val_needs_a_validation_split():
    with pytest.raises(ConfigError, match="VAL_FRACTION"):
        load_cfg(None, ["PSEUDO_LABEL.CHECKPOINT", "best_val", "DATA.FEATURES", "f.h5"])


def test_stage2_with_validation_split_saves_best_val(tmp_path, capsys):
    from tests.stage2_fixtures import make_tiny_videos, tiny_stage2_opts

    paths = make_tiny_videos(tmp_path / "videos")
    out = tmp_path / "run"
    opts = {
        "DATA.VAL_FRACTION": 0.25,
        "DATA.TRAIN_MASK_DIR": paths["masks"],
        "STAGE2.ACCUMULATE": 1,
    }
    results = run_tool("train_stage2", tiny_stage2_opts(paths, out, epochs=1, **opts))
    record = json.loads((out / "metrics.jsonl").read_text())
    # 3 + 3 left: one batch of 2 + 2
    assert "8 train videos (1 iterations/epoch" in capsys.readouterr().out
    assert record["val_metric"] == "frame_auc" and record["best_val_epoch"] == 1
    assert (out / "checkpoints" / "best_val.pth").is_file()
    assert results["test_by_checkpoint"]["best_val"]["auc"] == record["auc"]
