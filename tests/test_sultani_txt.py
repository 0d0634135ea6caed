"""Sultani et al.'s 32-segment .txt features (AnomalyDetectionCVPR2018): read exactly from a folder
or a list, every malformed file refused naming it, their segment -> clip -> frame mapping against
a transcription of Evaluate_Anomaly_Detector.m, and stage 1 trained on them."""

import json

import numpy as np
import pytest
import torch

from datasets.feature_sources import (
    expand_segment_scores,
    segment_of_clips,
    segment_scores_to_clips,
)
from datasets.features import _layout, open_features
from datasets.segments import pool_segments
from models.loading import load_generator
from tests.stage1_fixtures import make_tiny_dataset, tiny_opts
from run_tool import run_tool


def _write_txt(path, rows):
    """rows (32, D) -> `path` as Save_C3DFeatures_32Segments.m writes it: fprintf('%f ') per value,
    a newline per row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("".join(f"{v:f} " for v in row) + "\n" for row in rows))
    return path


def _rows(seed, dim=4096):
    """(32, dim) float32 multiples of 1/64: '%f' writes them exactly, so they read back exactly."""
    return np.random.default_rng(seed).integers(-64, 64, (32, dim)).astype(np.float32) / 64


def _release(tmp_path, dim=4096):
    """A folder laid out as the release: Train/{Abnormal,Normal} and Test, '<video>_C.txt' each."""
    files = {
        "Abuse028_x264": "Train/Abnormal/Abuse028_x264_C.txt",
        "Normal_Videos308_x264": "Train/Normal/Normal_Videos308_x264_C.txt",
        "Arson011_x264": "Test/Arson011_x264_C.txt",
    }
    rows = {name: _rows(i, dim) for i, name in enumerate(files)}
    for name, rel in files.items():
        _write_txt(tmp_path / "release" / rel, rows[name])
    return tmp_path / "release", files, rows


def test_a_folder_of_sultani_files_reads_exactly_one_row_per_segment(tmp_path):
    root, files, rows = _release(tmp_path)
    # a split file in the folder is not a feature file of a requested video: never read
    (root / "Anomaly_Train.txt").write_text("Abuse/Abuse028_x264.mp4\n")
    names = list(files)
    with open_features(root, names, dim=4096, storage="lazy") as store:
        assert store.segments == 32 and store.dim == 4096
        assert [store.num_clips(n) for n in names] == [32, 32, 32]
        for name in names:
            np.testing.assert_array_equal(store.get(name), rows[name])
        np.testing.assert_array_equal(
            store.gather(["Arson011_x264"], [np.array([31, 0])])[0], rows["Arson011_x264"][[31, 0]]
        )
        assert store.get("Abuse028_x264")[0, :3].tolist() == [0.6875, 0.265625, 0.015625]
    text = (root / files["Abuse028_x264"]).read_text()
    assert text.startswith("0.687500 0.265625 0.015625 ") and text.count("\n") == 32
    memory = open_features(root, names[:1], l2_norm=True)
    norms = np.linalg.norm(rows[names[0]], axis=1, keepdims=True)
    np.testing.assert_allclose(memory.get(names[0]), rows[names[0]] / norms, rtol=1e-6)


def test_a_list_of_sultani_files_reads_the_same(tmp_path):
    root, files, rows = _release(tmp_path, dim=8)
    listing = tmp_path / "test.list"
    listing.write_text(f"release/{files['Arson011_x264']}\n\n{root / files['Abuse028_x264']}\n")
    store = open_features(listing, ["Abuse028_x264", "Arson011_x264"])
    assert store.segments == 32 and store.dim == 8
    np.testing.assert_array_equal(store.get("Arson011_x264"), rows["Arson011_x264"])
    # the clip layouts keep one row per clip
    np.save(tmp_path / "v.npy", np.ones((5, 8), np.float32))
    (tmp_path / "clips.list").write_text("v.npy\n")
    assert open_features(tmp_path / "clips.list", ["v"]).segments is None
    # the layout follows the content: '01_0014' is a name (float() would read it as 10014)
    (tmp_path / "names.list").write_text("01_0014\n")
    assert [_layout(p) for p in (root, listing, tmp_path / "names.list")] == [
        "sultani_txt",
        "sultani_txt",
        "list",
    ]


def _refused(path, names, **kw):
    with pytest.raises(ValueError) as err:
        open_features(path, names, **kw)
    return str(err.value)


def test_malformed_files_are_refused_naming_the_file_and_line(tmp_path):
    root, files, rows = _release(tmp_path, dim=16)
    bad = root / files["Arson011_x264"]
    _write_txt(bad, rows["Arson011_x264"][:31])
    assert _refused(root, ["Arson011_x264"]) == (
        f"{bad}: 31 rows of features, but a Sultani feature file has 32, one per segment (as "
        "Save_C3DFeatures_32Segments.m writes them): the file is truncated or of another format; "
        "download or export it again"
    )
    _write_txt(bad, rows["Arson011_x264"])
    lines = bad.read_text().splitlines()
    tokens = lines[6].split()
    tokens[5] = "0.5x"
    lines[6] = " ".join(tokens)
    bad.write_text("\n".join(lines) + "\n")
    assert _refused(root, ["Arson011_x264"]) == (
        f"{bad}:7: value 6, '0.5x', is not a number; a Sultani feature file holds 32 lines of "
        "space-separated numbers"
    )
    lines[6] = " ".join(tokens[:5] + tokens[6:])  # 15 of 16 values
    bad.write_text("\n".join(lines) + "\n")
    assert _refused(root, ["Arson011_x264"]) == (
        f"{bad}:7: 15 values, but line 1 has 16: every row holds the D values of one segment "
        "(4096 for C3D fc6); the file is truncated or corrupt"
    )


def test_a_file_of_another_width_is_refused_against_the_feature_dim(tmp_path):
    root, files, rows = _release(tmp_path, dim=4095)
    where = f"video 'Abuse028_x264' ({root / files['Abuse028_x264']})"
    assert _refused(root, ["Abuse028_x264"], dim=4096) == (
        f"{where}: feature dimension 4095 but expected 4096 (1 of 1 videos differ); set "
        "DATA.FEATURE_DIM to the file's dimension or point to the matching feature file"
    )
    assert _refused(root, ["Abuse028_x264"], crop=0) == (
        f"{where}: features have no crop axis (shape (32, 4095)); use crop=-1"
    )


def test_missing_duplicate_and_single_files_are_refused(tmp_path):
    root, files, rows = _release(tmp_path, dim=8)
    with pytest.raises(KeyError) as err:
        open_features(root, ["Abuse028_x264", "Arrest001_x264"])
    assert str(err.value) == (
        f"video 'Arrest001_x264' has no features in {root} (keys look like 'Arson011_x264')"
    )
    copy = _write_txt(root / "Test" / "again" / "Abuse028_x264_C.txt", rows["Abuse028_x264"])
    assert _refused(root, ["Abuse028_x264"]) == (
        f"{root}: video 'Abuse028_x264' has 2 feature files "
        f"({[str(copy), str(root / files['Abuse028_x264'])]}); keep one, or point to the folder "
        "of one split"
    )
    one = root / files["Arson011_x264"]
    assert _refused(one, ["Arson011_x264"]) == (
        f"{one} holds numbers, not paths: it looks like one video's Sultani feature file; pass "
        "the folder holding them (or a list of their paths)"
    )


def _evaluate_anomaly_detector(predictions, n):
    """Transcription of the frame scores of Sultani's Evaluate_Anomaly_Detector.m (1-based MATLAB
    indices, round half away from zero) -> (16 n,): segment after segment, later ones overwrite."""
    scores = np.zeros(16 * n)
    shots = [int(np.floor(x + 0.5)) for x in np.linspace(1, n, 33)]
    for i in range(32):
        ss, ee = shots[i], shots[i + 1] - 1
        last = ss if ee < ss else ee  # an empty range: the 16 frames of clip ss
        scores[(ss - 1) * 16 : (last - 1) * 16 + 16] = predictions[i]
    return scores


def test_segments_map_to_frames_as_sultani_evaluates_them():
    # 40 clips: boundaries round(linspace(0, 39, 33)) = 0 1 2 4 5 6 7 9 ... 37 38 39
    clips = segment_of_clips(40)
    assert clips[:10].tolist() == [0, 1, 2, 2, 3, 4, 5, 6, 6, 7]
    # segment 31 = clip 38; clip 39, in no range, takes segment 31 too
    assert clips[-4:].tolist() == [29, 30, 31, 31]
    frames = np.repeat(segment_scores_to_clips(np.arange(32.0), 40), 16)
    # segment 2 covers clips 2-3 = frames [32, 64), not floor(2 * 40 / 32) * 16 = [32, 48)
    assert np.flatnonzero(frames == 2).tolist() == list(range(32, 64))
    assert np.flatnonzero(frames == 16).tolist() == list(range(320, 336))
    assert np.flatnonzero(frames == 31).tolist() == list(range(608, 640))
    rng = np.random.default_rng(0)
    for n in list(range(1, 70)) + [100, 257, 1000]:
        predictions = rng.random(32)
        ours = np.repeat(segment_scores_to_clips(predictions, n), 16)
        theirs = _evaluate_anomaly_detector(predictions, n)
        # equal everywhere but the last clip, which their code leaves at 0 unless a range holds it
        np.testing.assert_array_equal(ours[: 16 * (n - 1)], theirs[: 16 * (n - 1)])
        assert set(ours[16 * (n - 1) :]) == {predictions[31]}
        assert set(theirs[16 * (n - 1) :]) <= {0.0, predictions[31]}


def test_segment_scores_expand_to_the_clips_of_each_videos_frames():
    scores = {"a": np.arange(32.0), "b": np.arange(32.0) + 100}
    clips = expand_segment_scores(scores, {"a": 40 * 16 + 15, "b": 7})
    assert clips["a"].tolist() == np.arange(32.0)[segment_of_clips(40)].tolist()
    assert clips["b"].tolist() == [131.0]  # shorter than one clip: one clip, the last segment
    with pytest.raises(KeyError, match=r"no frame count for video 'b'"):
        expand_segment_scores(scores, {"a": 640})
    with pytest.raises(ValueError, match=r"got shape \(2, 16\)"):
        segment_scores_to_clips(np.zeros((2, 16)), 40)


def _tiny_txt_run(tmp_path, method, **extra):
    """The tiny dataset with its train videos as Sultani files (32 L2-normalised segment means,
    '%f' text) and its test videos as clip features in the h5 -> (dataset, run folder, results)."""
    tiny = make_tiny_dataset(tmp_path / "data", n_train=8, n_test=4)
    txt = tmp_path / "txt"
    for name, clips in tiny["arrays"].items():
        if name.startswith("tr_"):
            _write_txt(txt / f"{name}_C.txt", pool_segments(clips, 32, l2_norm=True))
    opts = {
        "DATA.FEATURES": txt,
        "DATA.TEST_FEATURES": tiny["features"],
        "STAGE1.METHOD": method,
        # the train masks are per frame: segment scores are not spread over frames in stage 1 yet
        "DATA.TRAIN_MASK_DIR": "",
        **extra,
    }
    out = tmp_path / "run"
    return tiny, out, run_tool("train_stage1", tiny_opts(tiny, out, epochs=4, **opts))


def _generator_scores(out, rows):
    model, _ = load_generator(out / "checkpoints" / "last.pth")
    with torch.no_grad():
        return model(torch.from_numpy(rows)).numpy().reshape(-1)


def test_stage1_sultani_trains_on_the_txt_files_and_tests_on_clip_features(tmp_path):
    tiny, out, results = _tiny_txt_run(tmp_path, "sultani", **{"STAGE1.PART_NUM": 32})
    assert json.loads((out / "results.json").read_text())["test"]["auc"] == results["test"]["auc"]
    train = np.load(out / "train_scores.npz")
    test = np.load(out / "test_scores.npz")
    # every train video: one score per segment (row) of its file, as the generator gives them
    assert {len(train[n]) for n in train.files} == {32} and len(train.files) == 16
    text = (tmp_path / "txt" / "tr_0003_C.txt").read_text()
    rows = np.array([line.split() for line in text.splitlines()], np.float32)
    np.testing.assert_allclose(train["tr_0003"], _generator_scores(out, rows), atol=1e-6)
    # test videos: one score per 16-frame clip of the h5
    arrays = tiny["arrays"]
    assert {n: len(test[n]) for n in test.files} == {
        n: len(a) for n, a in arrays.items() if n.startswith("te_")
    }
    expected = _generator_scores(out, arrays["te_0001"])
    np.testing.assert_allclose(test["te_0001"], expected, atol=1e-6)


def test_stage1_mist_trains_on_the_txt_rows_as_clips(tmp_path):
    tiny, out, results = _tiny_txt_run(tmp_path, "mist")
    pseudo, train = np.load(out / "pseudo_labels.npz"), np.load(out / "train_scores.npz")
    # one pseudo-label per segment: stage 2 needs one per clip (see Training_Guidelines.md)
    assert {len(pseudo[n]) for n in pseudo.files} == {32} and len(pseudo.files) == 16
    text = (tmp_path / "txt" / "tr_0000_C.txt").read_text()
    rows = np.array([line.split() for line in text.splitlines()], np.float32)
    np.testing.assert_allclose(train["tr_0000"], _generator_scores(out, rows), atol=1e-6)
    assert results["test"]["n_frames"] == 16 * sum(
        len(a) for n, a in tiny["arrays"].items() if n.startswith("te_")
    )


def test_segment_scores_of_test_videos_are_spread_over_their_clips(tmp_path):
    """Train and test videos as Sultani files: each test segment's score covers its clips of the
    video's ground truth (Evaluate_Anomaly_Detector.m's mapping), in the metrics and the saved
    scores."""
    tiny = make_tiny_dataset(tmp_path / "data", n_train=8, n_test=4)
    txt = tmp_path / "txt"
    for name, clips in tiny["arrays"].items():
        _write_txt(txt / f"{name}_C.txt", pool_segments(clips, 32, l2_norm=True))
    opts = {
        "DATA.FEATURES": txt,
        "STAGE1.METHOD": "sultani",
        "STAGE1.PART_NUM": 32,
        "DATA.TRAIN_MASK_DIR": "",
    }
    out = tmp_path / "run"
    results = run_tool("train_stage1", tiny_opts(tiny, out, epochs=4, **opts))
    test = np.load(out / "test_scores.npz")
    rows = np.array(
        [line.split() for line in (txt / "te_0001_C.txt").read_text().splitlines()], np.float32
    )
    n_clips = len(tiny["arrays"]["te_0001"])
    expected = segment_scores_to_clips(_generator_scores(out, rows), n_clips)
    np.testing.assert_allclose(test["te_0001"], expected, atol=1e-6)
    assert results["test"]["n_clips"] == sum(
        len(a) for n, a in tiny["arrays"].items() if n.startswith("te_")
    )
