"""The fast stage-1 paths give the results of the straightforward ones (exactly, or to float
rounding).

- utils.evaluation.evaluate (weighted clip rows) vs the frame arrays of expand_to_frames + frame
  metrics;
- utils.metrics with sample_weight vs the same rows repeated;
- BagSampler.iter_rows (one gather; distinct rows + inverse) vs BagSampler.__iter__;
- MILGenerator(rows, inverse) vs MILGenerator(rows[inverse]) in train mode (same dropout masks);
- utils.scoring.score_videos with long videos cut into slices vs one batch.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from datasets.bags import BagSampler
from datasets.features import open_features, write_h5_features
from datasets.ground_truth import frame_labels
from datasets.splits import Video, read_split
from models.losses import mil_ranking_loss
from models.mil_generator import MILGenerator
from utils.evaluation import evaluate, expand_to_frames
from utils.metrics import average_precision, false_alarm_rate, frame_auc, pr_auc, rmse, score_gap
from utils.scoring import score_videos

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = np.load(ROOT / "tests" / "golden" / "metrics.npz", allow_pickle=False)
EXACT = (
    "auc",
    "ap",
    "pr_auc",
    "far",
    "far_normal_videos",
    "n_frames",
    "n_clips",
    "n_anomalous_frames",
)


def _frame_evaluate(clip_scores, labels, videos, clip_len=16, threshold=0.5, max_pad_clips=0):
    """The frame-array evaluation that `evaluate` replaced (kept here as the reference)."""
    s, y, offsets = expand_to_frames(
        clip_scores, labels, [v.name for v in videos], clip_len, max_pad_clips
    )
    frame_video = np.repeat(np.arange(len(videos)), np.diff(offsets))
    normal = np.array([v.label == 0 for v in videos])[frame_video]
    far_normal = (
        false_alarm_rate(s[normal], np.zeros(normal.sum()), threshold) if normal.any() else None
    )
    out = {
        "auc": frame_auc(s, y),
        "ap": average_precision(s, y),
        "pr_auc": pr_auc(s, y),
        "score_gap": score_gap(s, y),
        "far": false_alarm_rate(s, y, threshold),
        "far_normal_videos": far_normal,
        "rmse": rmse(s, y),
        "n_frames": len(s),
        "n_clips": len(s) // clip_len,
        "n_anomalous_frames": int(np.count_nonzero(y)),
        "per_class": {},
    }
    categories = np.array([v.category for v in videos])
    abnormal = np.array([v.label == 1 for v in videos])
    for c in sorted(set(categories[abnormal]) - {"", "Normal"}):
        pick = normal | ((categories == c) & abnormal)[frame_video]
        sc, yc = s[pick], y[pick]
        out["per_class"][c] = {
            "auc": frame_auc(sc, yc),
            "pr_auc": pr_auc(sc, yc),
            "score_gap": score_gap(sc, yc),
            "far": false_alarm_rate(sc, yc, threshold),
        }
    return out


def _assert_same(fast, ref):
    for key in EXACT:
        assert fast[key] == ref[key], key
    for key in ("score_gap", "rmse"):
        assert abs(fast[key] - ref[key]) <= 1e-12, key
    for c, metrics in ref["per_class"].items():
        for key in ("auc", "pr_auc", "far"):
            assert fast["per_class"][c][key] == metrics[key], (c, key)
        assert abs(fast["per_class"][c]["score_gap"] - metrics["score_gap"]) <= 1e-12


def _random_split(rng, n_videos, clip_len, ties):
    """Videos with anomalies starting mid-clip, GT longer than the clips, scores with many ties."""
    videos, scores, labels = [], {}, {}
    for i in range(n_videos):
        label = int(i % 3 != 0)
        n_clips = int(rng.integers(1, 30))
        gt = np.zeros(n_clips * clip_len + int(rng.integers(0, clip_len)), np.uint8)
        if label:
            start = int(rng.integers(0, max(1, len(gt) - 1)))
            gt[start : start + int(rng.integers(1, len(gt) - start + 1))] = 1
        name = f"v{i:03d}"
        videos.append(
            Video(name, label, len(gt), ["Normal", "Abuse", "Arson"][label * (1 + i % 2)])
        )
        s = rng.uniform(size=n_clips)
        scores[name] = np.round(s, 1) if ties else s.astype(np.float32)
        labels[name] = gt
    return videos, scores, labels


@pytest.mark.parametrize(
    "seed,ties,clip_len", [(0, True, 16), (1, False, 16), (2, True, 3), (3, False, 1)]
)
def test_evaluate_equals_frame_arrays(seed, ties, clip_len):
    videos, scores, labels = _random_split(np.random.default_rng(seed), 60, clip_len, ties)
    _assert_same(
        evaluate(scores, labels, videos, clip_len),
        _frame_evaluate(scores, labels, videos, clip_len),
    )


def test_evaluate_equals_frame_arrays_on_golden_m3():
    g = GOLDEN
    videos = [
        Video(f"v{i}", int(a), int(n))
        for i, (a, n) in enumerate(zip(g["m3_video_abnormal"], g["m3_video_n_frames"]))
    ]
    off = g["m3_clip_offsets"]
    scores = {v.name: g["m3_clip_scores"][off[i] : off[i + 1]] for i, v in enumerate(videos)}
    labels = {v.name: np.zeros(v.n_frames, np.int64) for v in videos}
    for v, s, e in zip(videos, g["m3_video_anomaly_start"], g["m3_video_anomaly_end"]):
        labels[v.name][s:e] = 1
    fast = evaluate(scores, labels, videos)
    _assert_same(fast, _frame_evaluate(scores, labels, videos))
    for key in ("auc", "far", "pr_auc", "far_normal_videos"):
        assert fast[key] == pytest.approx(float(g[f"m3_{key}"]), abs=1e-12)


def test_evaluate_equals_frame_arrays_with_padding():
    videos = [Video("a", 1, 9), Video("b", 0, 8)]
    labels = {"a": np.array([0, 0, 0, 1, 1, 1, 1, 0, 1]), "b": np.zeros(8)}
    scores = {"a": [0.1, 0.7, 0.3], "b": [0.2, 0.7]}
    with pytest.warns(UserWarning, match="padded"):
        fast = evaluate(scores, labels, videos, clip_len=4, max_pad_clips=1)
    with pytest.warns(UserWarning, match="padded"):
        ref = _frame_evaluate(scores, labels, videos, clip_len=4, max_pad_clips=1)
    _assert_same(fast, ref)


def test_evaluate_equals_frame_arrays_on_ucf_test_ground_truth():
    ann = ROOT / "data" / "ucf_crime" / "Temporal_Anomaly_Annotation_New.txt"
    videos = read_split(ann, "ucf_crime")[::4]
    labels = frame_labels(videos, "ucf_crime", annotation=ann)
    rng = np.random.default_rng(0)
    scores = {
        v.name: rng.uniform(size=len(labels[v.name]) // 16).astype(np.float32) for v in videos
    }
    _assert_same(evaluate(scores, labels, videos), _frame_evaluate(scores, labels, videos))


def test_evaluate_rejects_non_binary_labels_in_scored_frames_only():
    videos = [Video("a", 1, 6)]
    with pytest.raises(ValueError, match="labels must be 0/1"):
        evaluate({"a": [0.1, 0.9]}, {"a": np.array([0, 2, 1, 0, 0, 0])}, videos, clip_len=2)
    # 7s truncated
    r = evaluate({"a": [0.1, 0.9]}, {"a": np.array([0, 0, 1, 1, 7, 7])}, videos, clip_len=2)
    assert r["auc"] == 1.0


def test_weighted_metrics_equal_repeated_rows():
    rng = np.random.default_rng(5)
    s = np.round(rng.uniform(size=300), 1)
    y = (rng.uniform(size=300) < 0.4).astype(float)
    w = rng.integers(0, 5, size=300)
    rep_s, rep_y = np.repeat(s, w), np.repeat(y, w)
    for fn in (frame_auc, average_precision, pr_auc, false_alarm_rate):
        assert fn(s, y, sample_weight=w) == fn(rep_s, rep_y), fn.__name__
    for fn in (score_gap, rmse):
        assert fn(s, y, sample_weight=w) == pytest.approx(fn(rep_s, rep_y), abs=1e-12)
    with pytest.raises(ValueError, match="only one class"):
        frame_auc(s, y, sample_weight=w * (y == 0))
    with pytest.raises(ValueError, match="sample_weight must"):
        frame_auc(s, y, sample_weight=-w)


def _store(tmp_path, lengths, dim=6, storage="memory"):
    rng = np.random.default_rng(0)
    feats = {f"n{i}": rng.normal(size=(n, dim)).astype(np.float32) for i, n in enumerate(lengths)}
    write_h5_features(tmp_path / "f.h5", feats)
    return open_features(tmp_path / "f.h5", list(feats), storage=storage), list(feats)


@pytest.mark.parametrize("storage", ["memory", "lazy"])
def test_iter_rows_walks_the_batches_of_iter(tmp_path, storage):
    store, names = _store(tmp_path, [3, 9, 40, 5, 12, 70, 8, 2], storage=storage)
    args = (store, names[:4], names[4:], 2, 4, 3, "uniform")
    plain = list(BagSampler(*args, np.random.default_rng(1)))
    joined = list(BagSampler(*args, np.random.default_rng(1)).iter_rows())
    dedup = list(BagSampler(*args, np.random.default_rng(1)).iter_rows(dedup=True))
    assert len(plain) == len(joined) == len(dedup) == 2
    for (normal, abnormal), (rows, none), (uniq, inverse) in zip(plain, joined, dedup):
        bags = np.concatenate([normal, abnormal])
        assert none is None and np.array_equal(rows, bags)
        assert np.array_equal(uniq[inverse], bags)
        assert len(uniq) == sum(len(np.unique(b.view(np.void), axis=0)) for b in bags)


def _dedup_vs_plain(fast, loss_fn, seed=0, per_bag=False):
    """-> (scores, grads) of MILGenerator(rows, inverse) and of MILGenerator(rows[inverse]), same
    masks. per_bag: bag i repeats its own 6 distinct rows (a short video, as BagSampler.iter_rows
    gives them)."""
    rng = np.random.default_rng(seed)
    uniq = torch.from_numpy(rng.normal(0, 0.1, (50, 64)).astype(np.float32))
    inverse = np.sort(rng.integers(0, 50, (8, 28)), axis=1)
    if per_bag:
        inverse = np.arange(8)[:, None] * 6 + np.sort(rng.integers(0, 6, (8, 28)), axis=1)
    inverse = torch.from_numpy(inverse)
    out = []
    for dedup in (True, False):
        torch.manual_seed(0)
        model = MILGenerator(64, dropout=0.6, fast_dropout=fast)
        torch.manual_seed(1)  # the same dropout masks for both paths
        scores = model(uniq, inverse) if dedup else model(uniq[inverse])
        loss_fn(scores).backward()
        out.append((scores.detach(), [p.grad.clone() for p in model.parameters()]))
    return out


def _mil_loss(scores):
    return mil_ranking_loss(scores[:4], scores[4:], 7, 0.01, 0.0)[0]


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize(
    "loss_fn,per_bag",
    [
        (_mil_loss, False),
        (_mil_loss, True),
        (lambda s: (s * torch.arange(s.numel()).view(s.shape)).sum(), False),
        (lambda s: s[2, 5] - s[7, 0], False),
    ],
    ids=["mil", "mil_per_video_rows", "dense", "two_rows"],
)
def test_dedup_forward_backward_equals_repeated_rows(fast, loss_fn, per_bag):
    (scores, grads), (ref_scores, ref_grads) = _dedup_vs_plain(fast, loss_fn, per_bag=per_bag)
    assert torch.equal(scores, ref_scores)  # same masks, same operations: bit for bit
    # summation order differs: float rounding of the largest entry
    for g, g_ref in zip(grads, ref_grads):
        torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-6 * float(g_ref.abs().max()))
        assert g.abs().sum() > 0


def test_dedup_backward_of_a_zero_loss_is_zero():
    (scores, grads), _ = _dedup_vs_plain(False, lambda s: s.sum() * 0)  # no row has a gradient
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads)


def test_mil_loss_reaches_the_top_k_normal_clips_and_every_abnormal_clip():
    """What makes the skipping pay: 4 x 7 of the 4 x 28 normal rows carry a gradient.
    ('mil_per_video_rows' and 'two_rows' above run the backward's skipping branch; 'mil' and 'dense'
    reach all 50 distinct rows.)"""
    scores = torch.ones(8, 28, requires_grad=True)
    _mil_loss(scores).backward()
    assert int((scores.grad[:4] != 0).sum()) == 4 * 7 and bool((scores.grad[4:] != 0).all())


def test_dedup_masks_are_the_torch_dropout_masks():
    """One hand-checkable case: with p=0.6 the kept hidden units are scaled by 2.5, the others are
    0."""
    model = MILGenerator(3, dropout=0.6).train()
    with torch.no_grad():
        for layer in (model.regressor[0], model.regressor[3], model.regressor[5]):
            layer.weight.fill_(1.0)
            layer.bias.zero_()
    x = torch.tensor([[0.1, 0.2, 0.3]])
    torch.manual_seed(3)
    m1 = torch.empty(2, 512).bernoulli_(0.4)
    m2 = torch.empty(2, 32).bernoulli_(0.4)
    torch.manual_seed(3)
    scores = model(x, torch.tensor([0, 0]))
    expected = torch.sigmoid((((m1 * 2.5 * 0.6).sum(1, keepdim=True)) * m2 * 2.5).sum(1))
    torch.testing.assert_close(scores, expected, rtol=1e-6, atol=0)


def test_score_videos_slices_long_videos(tmp_path):
    store, names = _store(tmp_path, [3, 25, 4, 11, 1])
    model = MILGenerator(6)
    whole = score_videos(model, store, names, torch.device("cpu"), batch_rows=100)
    sliced = score_videos(model, store, names[::-1], torch.device("cpu"), batch_rows=4)
    assert list(sliced) == names[::-1]
    for name in names:
        np.testing.assert_allclose(sliced[name], whole[name], rtol=1e-6, atol=1e-7)
        assert sliced[name].shape == (store.num_clips(name),) and sliced[name].dtype == np.float32


def test_fast_dropout_is_the_config_default_and_keeps_keys_and_the_distribution():
    from configs.defaults import get_cfg_defaults
    from models.build import build_generator

    assert build_generator(get_cfg_defaults()).fast_dropout is True  # STAGE1.FAST_DROPOUT True
    plain, fast = MILGenerator(16), MILGenerator(16, fast_dropout=True)
    assert list(plain.state_dict()) == list(fast.state_dict())
    # the module's own default is torch's dropout
    assert type(plain.regressor[2]) is torch.nn.Dropout
    drop = fast.regressor[2].train()
    x = torch.ones(200, 500)
    torch.manual_seed(0)
    a = drop(x)
    torch.manual_seed(0)
    assert torch.equal(a, drop(x))  # reproducible from the torch seed
    assert (
        set(a.unique().tolist()) == {0.0, 2.5} and abs((a > 0).float().mean().item() - 0.4) < 0.01
    )
    assert torch.equal(drop.eval()(x), x)
