"""XD-Violence: the config and its shipped lists/GT, 5-crop feature lists, AP as the headline
metric."""

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from datasets.build import open_store
from datasets.ground_truth import frame_labels
from datasets.splits import read_split
from models.build import build_generator
from utils.config import REPO_ROOT, load_cfg
from run_tool import run_tool

CFG = REPO_ROOT / "configs" / "xd_violence" / "i3d_stage1.yaml"
DIM, CROPS = 8, 5


def test_config_and_shipped_annotations():
    cfg = load_cfg(CFG)
    assert (cfg.DATA.DATASET, cfg.DATA.FEATURE_DIM, cfg.DATA.CROP) == ("xd_violence", 1024, -1)
    assert build_generator(cfg).regressor[0].in_features == 1024
    train = read_split(cfg.DATA.TRAIN_SPLIT, "xd_violence")
    test = read_split(cfg.DATA.TEST_SPLIT, "xd_violence")
    assert (len(train), sum(v.label for v in train), len(test), sum(v.label for v in test)) == (
        3954,
        1905,
        800,
        500,
    )
    # feature lists carry no frame count: the GT JSON gives it
    assert all(v.n_frames is None for v in test)
    labels = frame_labels(test, "xd_violence", annotation=cfg.DATA.TEST_ANNOTATION)
    assert sum(len(g) for g in labels.values()) == 2_330_384
    assert all(not labels[v.name].any() for v in test if v.label == 0)
    assert all(labels[v.name].any() for v in test if v.label == 1)


def _name(i, code):
    return f"Film.{i}__#00-00-{i:02d}_00-01-00_label_{code}"


@pytest.fixture(scope="module")
def xd(tmp_path_factory):
    """Tiny XD-style data: per-crop files '<video>__k.npy' (n_clips, 8), lists of basenames, GT
    JSON."""
    root = tmp_path_factory.mktemp("xd")
    (root / "feats").mkdir()
    rng = np.random.default_rng(0)
    splits, gt = {"train": [], "test": []}, {}
    codes = ["A", "B1-0-0", "A", "B2-G-0"] * 3
    for split, start, count in (("train", 0, 12), ("test", 100, 8)):
        for i in range(start, start + count):
            name, n = _name(i, codes[i % 12]), int(rng.integers(6, 20))
            seg = [] if name.endswith("_A") else [[16 * 2, 16 * (n // 2)]]
            active = np.zeros(n)
            active[2 : n // 2] = 0 if not seg else 1
            for k in range(CROPS):
                feats = rng.normal(0, 0.3, (n, DIM)) + 0.1 * k
                feats[:, 0] += 3 * active
                np.save(root / "feats" / f"{name}__{k}.npy", feats.astype(np.float32))
                splits[split].append(f"{name}__{k}.npy")
            if split == "test":
                gt[name] = {"frames": 16 * n, "segments": seg}
    for split, lines in splits.items():
        (root / f"{split}.list").write_text("\n".join(lines) + "\n")
    (root / "gt.json").write_text(json.dumps(gt))
    # two lists, as shipped
    opts = [
        "DATA.FEATURES",
        root / "train.list",
        "DATA.TEST_FEATURES",
        root / "test.list",
        "DATA.FEATURE_ROOT",
        root / "feats",
        "DATA.TRAIN_SPLIT",
        root / "train.list",
        "DATA.TEST_SPLIT",
        root / "test.list",
        "DATA.TEST_ANNOTATION",
        root / "gt.json",
        "DATA.FEATURE_DIM",
        DIM,
        "STAGE1.EPOCHS",
        2,
        "STAGE1.EVAL_PERIOD",
        2,
        "STAGE1.BATCH_SIZE",
        3,
        "STAGE1.PART_NUM",
        4,
        "STAGE1.PART_LEN",
        2,
        "STAGE1.LR",
        0.02,
        "STAGE1.DROPOUT",
        0.0,
    ]
    opts = [str(x) for x in opts]
    results = run_tool("train_stage1", ["--cfg", str(CFG), *opts, "OUTPUT_DIR", str(root / "run")])
    return root, opts, results


def test_crops_are_averaged(xd):
    root, opts, _ = xd
    cfg = load_cfg(CFG, opts)
    videos = read_split(cfg.DATA.TEST_SPLIT, "xd_violence")
    store = open_store(cfg, [], videos[:2])  # test videos: from DATA.TEST_FEATURES
    crops = [np.load(root / "feats" / f"{videos[0].name}__{k}.npy") for k in range(CROPS)]
    np.testing.assert_allclose(store.get(videos[0].name), np.mean(crops, axis=0), rtol=1e-6)


def test_stage1_reports_sklearn_ap_and_per_class(xd):
    root, _, results = xd
    gt = json.loads((root / "gt.json").read_text())
    names = [v.name for v in read_split(str(root / "test.list"), "xd_violence")]
    with np.load(root / "run" / "test_scores.npz") as scores:
        s = np.concatenate([np.repeat(scores[n], 16) for n in names])
    y = np.concatenate([frame_labels_of(gt[n]) for n in names])
    assert results["test"]["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert set(results["test"]["per_class"]) == {"Normal", "B1", "B2"}


def frame_labels_of(row):
    y = np.zeros(row["frames"], np.uint8)
    for start, end in row["segments"]:
        y[start:end] = 1
    return y


def test_test_tool_and_visualize_put_ap_first(xd, capsys):
    root, opts, results = xd
    scores = root / "run" / "test_scores.npz"
    metrics = run_tool(
        "test",
        ["--cfg", str(CFG), *opts, "TEST.SCORES", str(scores), "OUTPUT_DIR", str(root / "t")],
    )
    line = next(x for x in capsys.readouterr().out.splitlines() if "test_scores:" in x)
    assert line.split("test_scores: ")[1].startswith(
        f"AP {100 * metrics['ap']:.2f}%  AUC {100 * metrics['auc']:.2f}%"
    )
    result = run_tool("visualize", [str(root / "run")])
    assert (
        result["images"][:3] == ["score_curves.png", "pr.png", "roc.png"]
        and "per_class_auc.png" in result["images"]
    )
    page = (root / "run" / "figures" / "report.html").read_text()
    assert page.index("<td>AP</td>") < page.index("<td>AUC</td>")
