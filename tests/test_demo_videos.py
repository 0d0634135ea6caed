"""The stage-2 demo data: generated surveillance videos (datasets/demo_videos.py) and the cheap clip
features that stand in for the pretrained encoder (datasets/demo_features.py)."""

import filecmp
import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from datasets.demo_features import FEATURE_DIM, clip_features, extract_all, extract_clip_features
from datasets.demo_videos import make_demo_videos, make_scene, plan_set, render
from datasets.features import open_features
from datasets.frames import open_frames
from datasets.ground_truth import frame_labels
from datasets.splits import read_split
from engine.frames_h5 import make_h5
from utils.video import probe_video, read_video_frames

COUNTS = (8, 8, 4, 4)  # train normal, train abnormal, test normal, test abnormal
GREY = np.array([0.114, 0.587, 0.299])  # BGR -> grey
SHOWN = 25  # grey levels by which a pixel must change to count as showing an object


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(folder, summary, {name: Video}) of a generated set."""
    out = tmp_path_factory.mktemp("demo_videos")
    summary = make_demo_videos(out, *COUNTS)
    videos = read_split(out / "train.txt", "demo") + read_split(out / "test.txt", "demo")
    return out, summary, {v.name: v for v in videos}


@pytest.fixture(scope="module")
def features(demo, tmp_path_factory):
    """(frames h5, features h5) built by the real tools from the generated videos."""
    out, _, videos = demo
    h5 = tmp_path_factory.mktemp("demo_h5")
    report = make_h5(out / "videos.txt", h5 / "frames.h5", progress=False)
    assert (
        report["videos"] == len(videos) and not report["skipped"] and not report["count_mismatch"]
    )
    extract_all(open_frames(h5 / "frames.h5"), list(videos), h5 / "features.h5", progress=False)
    return h5 / "frames.h5", h5 / "features.h5"


def _n_frames(out, name):
    return probe_video(out / "videos" / f"{name}.mp4", verify=True)[0]


def test_files_follow_the_shanghaitech_formats(demo):
    out, summary, videos = demo
    train = read_split(out / "train.txt", "demo")
    test = read_split(out / "test.txt", "demo")
    assert [
        sum(v.label == lab for v in split) for split in (train, test) for lab in (0, 1)
    ] == list(COUNTS)
    assert summary["n_videos"] == len(videos) == len(list((out / "videos").glob("*.mp4"))) == 24
    # the name rule of datasets/splits.py (3-digit normal, 4-digit abnormal) agrees with the split
    # labels
    by_name = read_split(out / "videos.txt", "demo")
    assert {(v.name, v.label) for v in by_name} == {(v.name, v.label) for v in videos.values()}
    assert sorted(p.stem for p in (out / "masks").glob("*.npy")) == sorted(
        n for n, v in videos.items() if v.label
    )
    for v in test:  # normal test videos carry their decoded length, abnormal ones -1 (mask length)
        assert v.n_frames == (None if v.label else _n_frames(out, v.name))
    labels = frame_labels(test, "demo", mask_dir=out / "masks")
    for name, v in videos.items():
        n, h, w, fps = probe_video(out / "videos" / f"{name}.mp4", verify=True)
        assert (h, w, fps) == (72, 96, 25.0) and 72 <= n < 200
        if v.label:
            mask = np.load(out / "masks" / f"{name}.npy")
            assert mask.dtype == np.uint8 and len(mask) == n and 0.15 <= mask.mean() <= 0.55
            if name in labels:
                np.testing.assert_array_equal(labels[name], mask)
    assert 0.25 <= summary["anomalous_frames"] <= 0.45 and summary["mb"] < 2.0


def test_same_seed_same_videos(tmp_path):
    a = make_demo_videos(tmp_path / "a", 1, 2, 0, 0)
    b = make_demo_videos(tmp_path / "b", 1, 2, 0, 0)
    c = make_demo_videos(tmp_path / "c", 1, 2, 0, 0, seed=1)
    names = ["01_001", "01_0001", "01_0002"]
    for name in names:
        va, vb, vc = (read_video_frames(f"{r['out_dir']}/videos/{name}.mp4") for r in (a, b, c))
        np.testing.assert_array_equal(va, vb)
        assert va.shape != vc.shape or not np.array_equal(va, vc)
        assert filecmp.cmp(
            f"{a['out_dir']}/videos/{name}.mp4", f"{b['out_dir']}/videos/{name}.mp4", shallow=False
        )
    for name in names[1:]:
        np.testing.assert_array_equal(
            np.load(f"{a['out_dir']}/masks/{name}.npy"), np.load(f"{b['out_dir']}/masks/{name}.npy")
        )
    with pytest.raises(FileExistsError, match="force=True"):
        make_demo_videos(tmp_path / "a", 1, 2, 0, 0)
    with pytest.raises(ValueError, match="even"):
        make_demo_videos(tmp_path / "d", 1, 1, 0, 0, size=(64, 85))


def test_masks_mark_exactly_the_frames_that_show_an_anomaly(demo):
    """The decoded video is compared with the same scene rendered without its anomaly objects:
    outside the mask they are the same up to codec noise; inside, the anomaly shows (except on entry
    frames where less than a pixel or two of it is inside the picture)."""
    out = demo[0]
    background, top = make_scene()
    shown_in_mask = []
    for plan in (p for p in plan_set(*COUNTS) if p.label):
        mask = np.load(out / "masks" / f"{plan.name}.npy").astype(bool)
        decoded = read_video_frames(out / "videos" / f"{plan.name}.mp4") @ GREY
        without, _ = render(plan, background, top, anomalies=False)
        changed = (np.abs(decoded - without @ GREY) > SHOWN).sum(axis=(1, 2))  # pixels per frame
        assert changed[~mask].max() <= 3, plan.name  # codec noise only
        shown = changed[mask] >= 4
        assert shown.mean() >= 0.85 and np.median(changed[mask]) >= 8, plan.name
        shown_in_mask.append(shown)
        anomalies = [
            e
            for e in json.loads((out / "events.json").read_text())[plan.name]
            if e["type"] in ("runner", "vehicle", "fight")
        ]
        assert np.flatnonzero(mask)[[0, -1]].tolist() == [
            anomalies[0]["start"],
            anomalies[-1]["end"],
        ]
    assert np.concatenate(shown_in_mask).mean() >= 0.95


def test_make_h5_keeps_every_whole_segment(demo, features):
    out, _, videos = demo
    frames = open_frames(features[0])
    assert sorted(frames.names) == sorted(videos)
    for name in videos:
        assert frames.num_segments(name) == _n_frames(out, name) // 16
    assert frames.read_segments("01_0001", 0, 1).shape == (16, 72, 96, 3)


def test_features_shape_scale_and_invariance(demo, features):
    _, _, videos = demo
    frames = open_frames(features[0])
    with open_features(str(features[1]), list(videos), dim=FEATURE_DIM) as store:
        feats = {name: store.get(name) for name in videos}
    assert all(len(feats[name]) == frames.num_segments(name) for name in videos)
    rows = np.concatenate(list(feats.values()))
    norms = np.linalg.norm(rows, axis=1)
    assert rows.dtype == np.float32 and rows.min() >= 0.0
    assert 0.4 <= norms.mean() <= 1.2 and norms.max() < 4.0
    clip = frames.read_segments("01_0001", 1, 1)
    np.testing.assert_allclose(extract_clip_features(clip), feats["01_0001"][1], atol=1e-5)
    # cells are sorted, so where an event happens does not matter: a mirrored clip has the same
    # features
    np.testing.assert_allclose(
        extract_clip_features(clip[:, :, ::-1]), extract_clip_features(clip), atol=1e-5
    )
    still = np.repeat(make_scene()[0][None], 16, axis=0)
    assert not extract_clip_features(still).any()  # an empty plaza gives 0
    with pytest.raises(ValueError, match="clips must be"):
        clip_features(clip)


def test_features_carry_the_anomaly_signal(demo, features):
    """A linear probe on clip features, trained with clip labels from the masks, ranks test
    clips."""
    out, _, videos = demo
    with open_features(str(features[1]), list(videos), dim=FEATURE_DIM) as store:

        def clips(split):
            x, y = [], []
            for v in read_split(out / split, "demo"):
                feats = store.get(v.name)
                mask = (
                    np.load(out / "masks" / f"{v.name}.npy")
                    if v.label
                    else np.zeros(16 * len(feats))
                )
                x.append(feats)
                y.append(mask[: 16 * len(feats)].reshape(-1, 16).mean(axis=1) >= 0.5)
            return np.concatenate(x), np.concatenate(y)

        (x_train, y_train), (x_test, y_test) = clips("train.txt"), clips("test.txt")
    probe = LogisticRegression(C=10.0, max_iter=5000).fit(x_train, y_train)
    assert roc_auc_score(y_test, probe.predict_proba(x_test)[:, 1]) > 0.8
