"""utils/evaluation.py: clip -> frame expansion, golden m3 rebuilt end to end, pinned benchmark
totals."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from datasets.ground_truth import frame_labels
from datasets.splits import Video, read_split
from utils.evaluation import evaluate, expand_to_frames

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = np.load(ROOT / "tests" / "golden" / "metrics.npz", allow_pickle=False)
SHT, UCF = ROOT / "data" / "shanghaitech", ROOT / "data" / "ucf_crime"


def _m3_inputs():
    """Per-video inputs of golden case m3 -> (clip_scores, labels, videos)."""
    g = GOLDEN
    videos = [
        Video(f"v{i}", int(a), int(n), "Normal" if a == 0 else "")
        for i, (a, n) in enumerate(zip(g["m3_video_abnormal"], g["m3_video_n_frames"]))
    ]
    off = g["m3_clip_offsets"]
    scores = {v.name: g["m3_clip_scores"][off[i] : off[i + 1]] for i, v in enumerate(videos)}
    labels = {v.name: np.zeros(v.n_frames, np.int64) for v in videos}
    for v, s, e in zip(videos, g["m3_video_anomaly_start"], g["m3_video_anomaly_end"]):
        labels[v.name][s:e] = 1
    return scores, labels, videos


def test_golden_m3_expansion():
    scores, labels, videos = _m3_inputs()
    assert np.array_equal(
        np.concatenate(list(labels.values())), GOLDEN["m3_frame_gt_concat_untruncated"]
    )
    s, y, offsets = expand_to_frames(scores, labels, [v.name for v in videos])
    assert np.array_equal(s, GOLDEN["m3_scores"])
    assert np.array_equal(y, GOLDEN["m3_labels"])
    assert offsets.tolist() == (16 * GOLDEN["m3_clip_offsets"]).tolist()


def test_golden_m3_evaluate():
    scores, labels, videos = _m3_inputs()
    result = evaluate(scores, labels, videos)
    for key in ("auc", "far", "pr_auc", "score_gap", "rmse", "far_normal_videos"):
        assert abs(result[key] - float(GOLDEN[f"m3_{key}"])) <= 1e-9, key
    assert (result["n_frames"], result["n_clips"], result["n_videos"]) == (752, 47, 6)
    assert result["n_anomalous_frames"] == 152
    assert result["per_class"] == {}  # SHT-style videos carry no anomaly class
    json.dumps(result)  # JSON-serialisable as returned


def test_truncation_hand_case():
    """37 frames, 2 clips: the 5 trailing frames are dropped (official rule)."""
    gt = np.r_[np.zeros(20, np.uint8), np.ones(17, np.uint8)]
    s, y, offsets = expand_to_frames(
        {"a": [0.2, 0.9], "b": [0.5]}, {"a": gt, "b": np.zeros(16)}, ["a", "b"], clip_len=16
    )
    assert s.tolist() == [0.2] * 16 + [0.9] * 16 + [0.5] * 16
    assert y.tolist() == gt[:32].tolist() + [0] * 16
    assert offsets.tolist() == [0, 32, 48]


def test_padding_hand_case():
    """GT of 9 frames, 3 clips of 4: one clip past the GT is padded with the last label when
    allowed."""
    gt = {"a": np.array([0, 0, 0, 1, 1, 1, 1, 0, 1]), "b": np.zeros(8)}
    with pytest.raises(
        ValueError, match=r"video 'a': 3 clips x 4 = 12 frames but its GT has 9 .*MAX_PAD_CLIPS"
    ):
        expand_to_frames({"a": [0.1, 0.2, 0.3], "b": [0.0, 0.0]}, gt, ["b", "a"], clip_len=4)
    with pytest.warns(UserWarning, match=r"padded the GT of 1 video\(s\) by 3 frames"):
        s, y, _ = expand_to_frames(
            {"a": [0.1, 0.2, 0.3], "b": [0.0, 0.0]}, gt, ["b", "a"], clip_len=4, max_pad_clips=1
        )
    assert y.tolist() == [0] * 8 + [0, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1]
    assert len(s) == 20


def test_padding_limit_counts_clips():
    gt = {"a": np.ones(5)}
    # 7 frames short > 1 clip of 4
    with pytest.raises(ValueError, match="12 frames but its GT has 5"):
        expand_to_frames({"a": [0.0] * 3}, gt, ["a"], clip_len=4, max_pad_clips=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an exact fit must not warn
        expand_to_frames({"a": [0.0]}, {"a": np.ones(4)}, ["a"], clip_len=4)


def test_missing_or_bad_inputs():
    gt = {"a": np.zeros(32)}
    with pytest.raises(KeyError, match="no clip scores for video 'a'.*'a.npy'"):
        expand_to_frames({"a.npy": [0.1, 0.2]}, gt, ["a"])
    with pytest.raises(KeyError, match="no frame labels for video 'b'"):
        expand_to_frames({"b": [0.1]}, gt, ["b"])
    with pytest.raises(ValueError, match=r"video 'a' must be 1-D .*\(2, 2\)"):
        expand_to_frames({"a": np.zeros((2, 2))}, gt, ["a"])
    # 1-clip video squeezed to 0-d
    s, _, _ = expand_to_frames({"a": np.float64(0.7)}, {"a": np.zeros(31)}, ["a"])
    assert s.tolist() == [0.7] * 16  # the 15 frames past the last whole clip are the unscored tail
    # the authors' C3D features do that
    with pytest.warns(UserWarning, match="one clip of GT past their scores"):
        assert len(expand_to_frames({"a": [0.7]}, gt, ["a"])[0]) == 16
    with pytest.raises(
        ValueError, match=r"video 'a': its GT .* 48 frames but its 1 clip scores cover only 16"
    ):
        # 2 clips unscored: another version of the video
        expand_to_frames({"a": [0.7]}, {"a": np.zeros(48)}, ["a"])
    with pytest.warns(UserWarning):
        # unless allowed
        s, _, _ = expand_to_frames({"a": [0.7]}, {"a": np.zeros(48)}, ["a"], max_pad_clips=1)
    assert len(s) == 16


def test_evaluate_far_definitions_and_per_class():
    """Two abnormal classes + one normal video, clip_len 2, hand-checked FARs."""
    videos = [
        Video("Abuse001_x264", 1, 4, "Abuse"),
        Video("Arson001_x264", 1, 4, "Arson"),
        Video("Normal_Videos_001_x264", 0, 4, "Normal"),
    ]
    labels = {
        "Abuse001_x264": np.array([0, 0, 1, 1]),
        "Arson001_x264": np.array([1, 1, 0, 0]),
        "Normal_Videos_001_x264": np.zeros(4),
    }
    scores = {
        "Abuse001_x264": [0.6, 0.9],
        "Arson001_x264": [0.8, 0.3],
        "Normal_Videos_001_x264": [0.7, 0.2],
    }
    r = evaluate(scores, labels, videos, clip_len=2)
    # negatives > .5: Abuse 2 frames, Normal 2 of 4
    assert r["far"] == pytest.approx(4 / 8)
    assert r["far_normal_videos"] == pytest.approx(2 / 4)
    assert (r["n_frames"], r["n_clips"], r["n_anomalous_frames"], r["n_videos"]) == (12, 6, 4, 3)
    assert set(r["per_class"]) == {"Normal", "Abuse", "Arson"}
    assert r["per_class"]["Normal"] == {"far": 0.5, "n_videos": 1}
    # Abuse = its video + the normal video: scores .6 .6 .9 .9 .7 .7 .2 .2, labels 0 0 1 1 0 0 0 0
    abuse = r["per_class"]["Abuse"]
    assert abuse["auc"] == pytest.approx(1.0) and abuse["far"] == pytest.approx(4 / 6)
    assert abuse["score_gap"] == pytest.approx(0.9 - (0.6 * 2 + 0.7 * 2 + 0.2 * 2) / 6)
    assert abuse["n_videos"] == 1 and abuse["pr_auc"] == pytest.approx(1.0)
    json.dumps(r)


def _three_videos(categories):
    """Two abnormal videos and a normal one, clip_len 1 (a video's score = its highest clip)."""
    videos = [Video(n, int(c != "Normal"), 4, c) for n, c in zip("abn", categories)]
    labels = {"a": np.array([0, 1, 1, 0]), "b": np.array([0, 0, 0, 1]), "n": np.zeros(4)}
    scores = {"a": [0.5, 0.9, 0.4, 0.1], "b": [0.6, 0.2, 0.2, 0.3], "n": [0.95, 0, 0, 0]}
    return evaluate(scores, labels, videos, clip_len=1)


def test_auc_abnormal_and_localisation_map_by_hand():
    r = _three_videos(["", "", "Normal"])
    # abnormal videos' frames: positives .9 .4 .3, negatives .5 .1 .6 .2 .2: 5 + 3 + 3 of 15 pairs
    assert r["auc_abnormal"] == pytest.approx(11 / 15, abs=1e-15)
    # with the normal video's .95 0 0 0 too: 8 + 6 + 6 of 27
    assert r["auc"] == pytest.approx(20 / 27, abs=1e-15)
    # detections (threshold max - 0.6 * range): a [0, 2) 0.9 + 0.7 * 0.9, IoU 1/3 with its GT
    # [1, 3); b [0, 1) 0.6 + 0.7 * 0.6 misses [3, 4); n [0, 1) 0.95 + 0.7 * 0.95 ranks first.
    # Ranking n FP, a TP (IoU <= 1/3), b FP over 2 GT: precision 0, 1/2, 1/3 at recall 0, 1/2,
    # 1/2 -> AP 1/2 * 1/2 up to IoU 0.3, 0 above
    assert r["map_iou"] == {"0.1": 0.25, "0.2": 0.25, "0.3": 0.25, "0.4": 0.0, "0.5": 0.0}
    assert r["map_mean"] == pytest.approx(0.15, abs=1e-15) and r["per_class"] == {}
    json.dumps(r)


def test_auc_abnormal_and_localisation_map_per_class():
    r = _three_videos(["Abuse", "Arson", "Normal"])
    abuse, arson = r["per_class"]["Abuse"], r["per_class"]["Arson"]
    # Abuse: a's frames, positives .9 .4 against .5 .1; Arson: b's .3 against .6 .2 .2
    assert (abuse["auc_abnormal"], arson["auc_abnormal"]) == (0.75, pytest.approx(2 / 3))
    # Abuse = a + n: n FP then a TP over 1 GT -> AP 1/2 up to IoU 0.3; Arson = b + n: nothing found
    assert abuse["map_mean"] == pytest.approx(0.3, abs=1e-15) and arson["map_mean"] == 0.0
    # the mean over the two classes
    assert r["map_iou"] == {"0.1": 0.25, "0.2": 0.25, "0.3": 0.25, "0.4": 0.0, "0.5": 0.0}
    assert r["auc_abnormal"] == pytest.approx(11 / 15, abs=1e-15)
    assert "map_mean" not in r["per_class"]["Normal"]


def test_evaluate_without_normal_videos():
    r = evaluate({"a": [0.1, 0.9]}, {"a": np.array([0, 1])}, [Video("a", 1, 2, "")], clip_len=1)
    assert r["far_normal_videos"] is None and r["auc"] == 1.0


def test_sht_test_pinned_totals():
    videos = read_split(SHT / "SH_Test_NEW.txt", "shanghaitech")
    labels = frame_labels(videos, "shanghaitech", mask_dir=SHT / "test_frame_mask")
    scores = {n: np.linspace(0, 1, len(g) // 16) for n, g in labels.items()}
    r = evaluate(scores, labels, videos)
    assert (r["n_frames"], r["n_clips"], r["n_anomalous_frames"]) == (140_704, 8_794, 7_932)
    assert (r["n_videos"], r["per_class"]) == (199, {})


def test_ucf_test_pinned_totals_and_classes():
    videos = read_split(UCF / "Temporal_Anomaly_Annotation_New.txt", "ucf_crime")
    labels = frame_labels(
        videos, "ucf_crime", annotation=UCF / "Temporal_Anomaly_Annotation_New.txt"
    )
    s, y, offsets = expand_to_frames(
        {n: np.zeros(len(g) // 16) for n, g in labels.items()}, labels, [v.name for v in videos]
    )
    assert (len(s), offsets[-1] // 16, int(y.sum())) == (1_109_824, 69_364, 84_160)
    # per-class on a small subset (2 videos of each of 3 classes + 4 normals) to keep the test fast
    pick = [v for v in videos if v.category in ("Abuse", "Arrest", "Arson")][::2] + [
        v for v in videos if v.label == 0
    ][:4]
    rs = np.random.RandomState(0)
    r = evaluate({v.name: rs.uniform(size=len(labels[v.name]) // 16) for v in pick}, labels, pick)
    assert set(r["per_class"]) == {"Normal", "Abuse", "Arrest", "Arson"}
    assert r["per_class"]["Normal"]["n_videos"] == 4
    assert sum(r["per_class"][c]["n_videos"] for c in ("Abuse", "Arrest", "Arson")) == len(pick) - 4
