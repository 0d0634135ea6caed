"""The embedded demo feature set (datasets/demo.py): layout, counts, determinism and
learnability."""

from pathlib import Path

import h5py
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from datasets.demo import _clip_intensity, make_demo_features

DATA = Path(__file__).resolve().parents[1] / "data" / "shanghaitech"


def _split(name):
    return [line.strip().split(",") for line in open(DATA / name) if line.strip()]


def _fraction(feats, name):
    """Anomalous-frame fraction of each clip of an abnormal video: (n_clips,)."""
    mask = np.load(DATA / "test_frame_mask" / f"{name}.npy", allow_pickle=False)
    return _clip_intensity(mask, len(feats[name]))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "features.h5"
    summary = make_demo_features(path, data_dir=DATA, seed=0)
    with h5py.File(path, "r") as h5:
        feats = {key[: -len(".npy")]: h5[key][()] for key in h5}
    return summary, feats


def _write(tmp_path, seed, dim=64):
    path = tmp_path / f"demo_{seed}.h5"
    make_demo_features(path, data_dir=DATA, dim=dim, seed=seed)
    with h5py.File(path, "r") as h5:
        return {key: h5[key][()] for key in h5}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    first, again, other = _write(tmp_path, 0), _write(tmp_path, 0), _write(tmp_path, 1)
    assert first.keys() == again.keys() == other.keys()
    assert all(first[k].tobytes() == again[k].tobytes() for k in first)
    assert all(first[k].shape == other[k].shape for k in first)
    assert all(not np.array_equal(first[k], other[k]) for k in first)
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temporary behind


def test_layout_and_counts(demo):
    summary, feats = demo
    assert summary["n_videos"] == len(feats) == 437
    assert summary["n_clips"] == sum(len(f) for f in feats.values()) == 10762 + 8794
    assert all(f.dtype == np.float32 and f.ndim == 2 and f.shape[1] == 1024 for f in feats.values())
    # n_clips = n_frames // 16: train normal (csv), train abnormal (csv = mask), test normal (txt),
    # test abnormal (mask)
    assert len(feats["01_002"]) == 482 // 16 and len(feats["01_0014"]) == 265 // 16
    assert len(feats["01_001"]) == 764 // 16
    assert len(feats["01_0015"]) == len(np.load(DATA / "test_frame_mask" / "01_0015.npy")) // 16
    assert sum(len(feats[name]) for name, *_ in _split("SH_Test_NEW.txt")) == 8794
    assert {name for name, _ in _split("SH_Train_new.txt")} <= feats.keys()


def test_non_negative_and_scaled_for_the_official_recipe(demo):
    rows = np.concatenate(list(demo[1].values()))
    assert rows.min() == 0.0 and 0.3 < (rows == 0).mean() < 0.7  # post-ReLU-like
    norms = np.linalg.norm(rows, axis=1)
    # docs/REFERENCE.md §10
    assert 3.3 < norms.mean() < 3.7 and norms.min() > 2.5 and norms.max() < 5.0


def test_clip_intensity_ramps_at_boundaries():
    mask = np.zeros(50, np.uint8)
    mask[24:40] = 1  # the event starts mid clip 1 and ends mid clip 2; frames 48-49 are dropped
    np.testing.assert_allclose(_clip_intensity(mask, 3), [0.0, 0.5, 0.5])


def test_scenes_are_separable(demo):
    feats = demo[1]
    train_normal = [name for name, label in _split("SH_Train_new.txt") if label == "0"]
    centroids = np.stack(
        [
            np.concatenate([feats[n] for n in train_normal if int(n[:2]) == s]).mean(0)
            for s in range(1, 14)
        ]
    )
    test_normal = [name for name, label, _ in _split("SH_Test_NEW.txt") if label == "0"]
    rows = np.concatenate([feats[n] for n in test_normal])
    scenes = np.concatenate([np.full(len(feats[n]), int(n[:2]) - 1) for n in test_normal])
    nearest = ((centroids**2).sum(1) - 2 * rows @ centroids.T).argmin(1)
    assert (nearest == scenes).mean() > 0.95


def test_anomalous_clips_project_higher_within_abnormal_test_videos(demo):
    feats = demo[1]

    def mixed(split_rows):
        names = [row[0] for row in split_rows if row[1] == "1"]
        return [
            n
            for n in names
            if (_fraction(feats, n) >= 0.5).any() and (_fraction(feats, n) == 0).any()
        ]

    # direction: mean within-video (anomalous - normal) difference over train abnormal videos (scene
    # cancels)
    direction = np.mean(
        [
            feats[n][_fraction(feats, n) >= 0.5].mean(0)
            - feats[n][_fraction(feats, n) == 0].mean(0)
            for n in mixed(_split("SH_Train_new.txt"))
        ],
        axis=0,
    )
    test_videos = mixed(_split("SH_Test_NEW.txt"))
    wins = [
        (feats[n][_fraction(feats, n) >= 0.5] @ direction).mean()
        > (feats[n][_fraction(feats, n) == 0] @ direction).mean()
        for n in test_videos
    ]
    assert len(test_videos) >= 40 and np.mean(wins) > 0.9


def test_linear_probe_on_half_the_train_videos(demo):
    feats = demo[1]
    train = _split("SH_Train_new.txt")[::2]
    x = np.concatenate([feats[n] for n, _ in train])
    y = np.concatenate(
        [
            _fraction(feats, n) >= 0.5 if label == "1" else np.zeros(len(feats[n]))
            for n, label in train
        ]
    )
    probe = LogisticRegression(max_iter=500).fit(x, y)
    test = _split("SH_Test_NEW.txt")
    scores = np.repeat(probe.decision_function(np.concatenate([feats[n] for n, *_ in test])), 16)
    gt = np.concatenate(
        [
            (
                np.load(DATA / "test_frame_mask" / f"{n}.npy")[: 16 * len(feats[n])]
                if label == "1"
                else np.zeros(16 * len(feats[n]))
            )
            for n, label, _ in test
        ]
    )
    assert 0.85 < roc_auc_score(gt, scores) < 0.99  # learnable, but not trivially separable
