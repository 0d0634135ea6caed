"""Sultani et al. baseline: 32-segment pooling (hand-computed and against their MATLAB rule), loss,
training."""

import json

import numpy as np
import pytest
import torch

from datasets.features import open_features, write_h5_features
from datasets.segments import SegmentBagSampler, pool_segments, segment_bounds
from models.sultani import sultani_loss
from tests.stage1_fixtures import make_tiny_dataset, tiny_opts
from run_tool import run_tool


def _matlab_segments(feats, n_seg=32):
    """Transcription of Sultani's Save_C3DFeatures_32Segments.m (1-based, MATLAB round), without
    its L2 norm."""
    n = len(feats)
    shots = [int(np.floor(x + 0.5)) for x in np.linspace(1, n, n_seg + 1)]
    out = []
    for i in range(n_seg):
        ss, ee = shots[i], shots[i + 1] - 1
        out.append(feats[ss - 1] if ee < ss else feats[ss - 1 : ee].mean(axis=0))
    return np.stack(out)


def test_segment_bounds_hand_computed():
    # linspace(0, 9, 5) = 0, 2.25, 4.5, 6.75, 9 -> rounded half up 0, 2, 5, 7, 9: clip 9 is left out
    assert [b.tolist() for b in segment_bounds(10, 4)] == [[0, 2, 5, 7], [2, 5, 7, 9]]
    # 2 clips in 4 segments: 0, .25, .5, .75, 1 -> 0, 0, 1, 1, 1; empty ranges take their start clip
    assert [b.tolist() for b in segment_bounds(2, 4)] == [[0, 0, 1, 1], [1, 1, 2, 2]]
    assert [b.tolist() for b in segment_bounds(1, 3)] == [[0, 0, 0], [1, 1, 1]]
    with pytest.raises(ValueError, match="at least one clip"):
        segment_bounds(0)


def test_pool_segments_hand_computed_and_matches_sultani_matlab():
    x = np.arange(10, dtype=np.float32)[:, None] * np.array([[1.0, -2.0]], np.float32)
    # means of 0-1, 2-4, 5-6, 7-8
    np.testing.assert_allclose(pool_segments(x, 4)[:, 0], [0.5, 3.0, 5.5, 7.5])
    rng = np.random.default_rng(0)
    for n in (1, 5, 31, 32, 33, 40, 100, 257):
        feats = rng.normal(size=(n, 6)).astype(np.float32)
        np.testing.assert_allclose(
            pool_segments(feats), _matlab_segments(feats), rtol=1e-5, atol=1e-6
        )
    unit = pool_segments(rng.normal(size=(40, 6)), l2_norm=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)


def test_loss_hand_computed_and_equal_to_sultani_keras_over_b():
    normal = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.1, 0.0]])
    abnormal = torch.tensor([[0.9, 0.4, 0.2], [0.6, 0.6, 0.1]])
    loss, parts = sultani_loss(normal, abnormal, lambda_sparse=8e-5, lambda_smooth=8e-5)
    # hinge over pairs (n_max .3/.5 vs a_max .9/.6): .4 + .7 + .6 + .9 = 2.6 over 4 pairs
    assert parts["rank"].item() == pytest.approx(0.65)
    assert parts["sparse"].item() == pytest.approx((1.5 + 1.3) / 2)  # per-bag sums, averaged
    assert parts["smooth"].item() == pytest.approx((0.25 + 0.04 + 0.0 + 0.25) / 2)
    assert loss.item() == pytest.approx(0.65 + 8e-5 * 1.4 + 8e-5 * 0.27)
    # Sultani's Keras objective: mean over normal i of sum over abnormal j of the hinge, + 8e-5 *
    # sums over bags
    keras = (
        sum(max(0.0, 1 - a + n) for n in (0.3, 0.5) for a in (0.9, 0.6)) / 2
        + 8e-5 * (1.5 + 1.3)
        + 8e-5 * (0.29 + 0.25)
    )
    assert keras == pytest.approx(2 * loss.item())


def test_segment_sampler_pairs_pooled_videos(tmp_path):
    rng = np.random.default_rng(0)
    feats = {
        f"v{i}": rng.normal(size=(int(rng.integers(3, 50)), 4)).astype(np.float32) for i in range(6)
    }
    write_h5_features(tmp_path / "f.h5", feats)
    store = open_features(tmp_path / "f.h5", list(feats), dim=4)
    sampler = SegmentBagSampler(
        store, ["v0", "v1", "v2"], ["v3", "v4", "v5"], 2, 8, np.random.default_rng(1)
    )
    batches = list(sampler)
    assert len(sampler) == len(batches) == 1
    normal, abnormal = batches[0]
    assert normal.shape == abnormal.shape == (2, 8, 4) and normal.dtype == np.float32
    pooled = {name: pool_segments(f, 8) for name, f in feats.items()}
    assert all(any(np.allclose(row, pooled[n]) for n in ("v0", "v1", "v2")) for row in normal)
    assert all(any(np.allclose(row, pooled[n]) for n in ("v3", "v4", "v5")) for row in abnormal)
    with pytest.raises(ValueError, match="fewer than STAGE1.BATCH_SIZE"):
        SegmentBagSampler(store, ["v0"], ["v3", "v4"], 2, 8, rng)


def test_segment_sampler_iter_rows_is_iter_concatenated(tmp_path):
    rng = np.random.default_rng(0)
    feats = {
        f"v{i}": rng.normal(size=(int(rng.integers(3, 50)), 4)).astype(np.float32) for i in range(8)
    }
    write_h5_features(tmp_path / "f.h5", feats)
    store = open_features(tmp_path / "f.h5", list(feats), dim=4)
    names = (["v0", "v1", "v2", "v3"], ["v4", "v5", "v6", "v7"])
    plain = SegmentBagSampler(store, *names, 2, 8, np.random.default_rng(3))
    rows = SegmentBagSampler(store, *names, 2, 8, np.random.default_rng(3))
    for dedup in (False, True):
        expected = [np.concatenate(batch) for batch in plain]
        got = list(rows.iter_rows(dedup=dedup))
        assert len(got) == len(expected) == 2
        for (array, inverse), want in zip(got, expected):
            assert inverse is None and array.dtype == np.float32 and array.shape == (4, 8, 4)
            np.testing.assert_array_equal(array, want)


def test_stage1_registries_pick_by_method(tmp_path):
    from types import SimpleNamespace

    from configs.defaults import get_cfg_defaults
    from datasets.bags import BagSampler
    from datasets.build import build_stage1_sampler
    from models.build import build_stage1_loss
    from models.losses import mil_ranking_loss
    from utils.config import ConfigError

    feats = {f"v{i}": np.ones((20, 4), np.float32) * i for i in range(4)}
    write_h5_features(tmp_path / "f.h5", feats)
    store = open_features(tmp_path / "f.h5", list(feats), dim=4)
    videos = [SimpleNamespace(name=f"v{i}", label=int(i >= 2)) for i in range(4)]
    cfg = get_cfg_defaults()
    cfg.STAGE1.BATCH_SIZE, cfg.STAGE1.PART_NUM, cfg.STAGE1.PART_LEN, cfg.STAGE1.TOPK = 2, 4, 2, 3
    normal, abnormal = torch.rand(2, 8, generator=torch.Generator().manual_seed(0)).chunk(2)
    normal, abnormal = normal.repeat(2, 1), abnormal.repeat(2, 1)
    rng = np.random.default_rng(0)
    assert isinstance(build_stage1_sampler(cfg, store, videos, rng), BagSampler)
    loss, _ = build_stage1_loss(cfg)(normal, abnormal)
    assert loss.item() == mil_ranking_loss(normal, abnormal, 3, 0.01, 0.0, "topk", 2)[0].item()
    cfg.STAGE1.METHOD = "sultani"
    assert isinstance(build_stage1_sampler(cfg, store, videos, rng), SegmentBagSampler)
    loss, parts = build_stage1_loss(cfg)(normal, abnormal)
    assert loss.item() == sultani_loss(normal, abnormal, 0.01, 0.0)[0].item() and set(parts) == {
        "rank",
        "sparse",
        "smooth",
    }
    cfg.STAGE1.METHOD = "rtfm"
    wrong = r"STAGE1.METHOD = 'rtfm' is not one of \('mist', 'sultani'\)"
    builds = (lambda: build_stage1_loss(cfg), lambda: build_stage1_sampler(cfg, store, videos, rng))
    for build in builds:
        with pytest.raises(ConfigError, match=wrong):
            build()


def test_sultani_method_trains_with_the_stage1_tool(tmp_path):
    tiny = make_tiny_dataset(tmp_path / "data", n_train=8, n_test=4)
    opts = {
        "STAGE1.METHOD": "sultani",
        "STAGE1.PART_NUM": 8,
        "STAGE1.LAMBDA_SPARSE": 8e-5,
        "STAGE1.LAMBDA_SMOOTH": 8e-5,
    }
    results = run_tool("train_stage1", tiny_opts(tiny, tmp_path / "run", epochs=4, **opts))
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"train/rank", "train/sparse", "train/smooth"} <= set(record)
    # the clip-level MLP, trained on segment means, scores test clips directly
    assert results["test"]["auc"] > 0.9


def test_released_32_segment_features_are_taken_as_they_are():
    """A store whose rows are Sultani's 32 segments (the .txt release): no pooling again."""
    from types import SimpleNamespace

    import numpy as np

    from datasets.segments import SegmentBagSampler, pool_segments

    rows = {n: np.arange(32 * 2, dtype=np.float32).reshape(32, 2) + k for k, n in enumerate("abcd")}
    store = SimpleNamespace(get=rows.__getitem__, segments=32)
    sampler = SegmentBagSampler(store, ["a", "b"], ["c", "d"], 1, 32, np.random.default_rng(0))
    assert all(np.array_equal(sampler.segments[n], rows[n]) for n in rows)
    # 32 rows pooled again by Sultani's bounds would repeat a row and drop the last
    assert not np.array_equal(pool_segments(rows["a"], 32), rows["a"])
    store.segments = None
    pooled = SegmentBagSampler(store, ["a", "b"], ["c", "d"], 1, 32, np.random.default_rng(0))
    assert np.array_equal(pooled.segments["a"], pool_segments(rows["a"], 32))
