"""datasets/ground_truth.py: per-frame GT of the three benchmarks, pinned totals, hand cases and
errors."""

import json
from pathlib import Path

import numpy as np
import pytest

from datasets.ground_truth import _read_ucf_annotation, frame_labels, intervals_to_mask, load_mask
from datasets.splits import Video, read_split

DATA = Path(__file__).resolve().parents[1] / "data"
SHT, UCF, XD = DATA / "shanghaitech", DATA / "ucf_crime", DATA / "xd_violence"
UCF_ANN = UCF / "Temporal_Anomaly_Annotation_New.txt"


def test_sht_test_totals():
    videos = read_split(SHT / "SH_Test_NEW.txt", "shanghaitech")
    gt = frame_labels(videos, "shanghaitech", mask_dir=SHT / "test_frame_mask")
    assert list(gt) == [v.name for v in videos]
    assert all(g.dtype == np.uint8 and g.ndim == 1 for g in gt.values())
    assert sum(len(g) for g in gt.values()) == 141_870
    assert sum(int(g.sum()) for g in gt.values()) == 7_962  # before truncation to whole clips
    assert not any(gt[v.name].any() for v in videos if v.label == 0)
    assert len(gt["01_001"]) == 764


def test_sht_train_abnormal_masks():
    """The 63 abnormal TRAIN videos have masks too (pseudo-label quality): 23,319 frames."""
    videos = [v for v in read_split(SHT / "SH_Train_new.txt", "shanghaitech") if v.label == 1]
    gt = frame_labels(videos, "shanghaitech", mask_dir=SHT / "test_frame_mask")
    assert (len(gt), sum(len(g) for g in gt.values())) == (63, 23_319)


def test_ucf_test_totals_and_clipped_rows():
    videos = read_split(UCF_ANN, "ucf_crime")
    gt = frame_labels(videos, "ucf_crime", annotation=UCF_ANN)
    assert sum(len(g) for g in gt.values()) == 1_111_808
    assert not any(gt[v.name].any() for v in videos if v.label == 0)
    # Abuse028_x264: s1=165 e1=240, no second segment -> frames [165, 240)
    assert np.array_equal(np.flatnonzero(gt["Abuse028_x264"]), np.arange(165, 240))
    # Vandalism028_x264: [1830, 1980) and [2400, 2670)
    expected = np.r_[1830:1980, 2400:2670]
    assert np.array_equal(np.flatnonzero(gt["Vandalism028_x264"]), expected)
    # the 5 rows whose end is past the video are clipped, not extended
    for name in (
        "Arson011_x264",
        "Arson016_x264",
        "Explosion033_x264",
        "Fighting003_x264",
        "Shooting015_x264",
    ):
        assert len(gt[name]) == next(v.n_frames for v in videos if v.name == name)


def test_xd_test_totals():
    videos = read_split(XD / "rgb_test.list", "xd_violence")
    gt = frame_labels(videos, "xd_violence", annotation=XD / "test_gt_intervals.json")
    assert (len(gt), sum(len(g) for g in gt.values())) == (800, 2_330_384)
    assert sum(bool(g.any()) for g in gt.values()) == 500
    assert all(bool(gt[v.name].any()) == bool(v.label) for v in videos)
    first = json.loads((XD / "test_gt_intervals.json").read_text())[videos[0].name]
    start, end = first["segments"][0]
    assert gt[videos[0].name][start] == 1 and gt[videos[0].name][start - 1] == 0


def test_intervals_to_mask_hand_cases():
    assert intervals_to_mask(6, [(1, 3)]).tolist() == [0, 1, 1, 0, 0, 0]  # end exclusive
    assert intervals_to_mask(6, [(4, 99)]).tolist() == [0, 0, 0, 0, 1, 1]  # clipped end
    # overlap stays 1
    assert intervals_to_mask(6, [(0, 2), (1, 4)]).tolist() == [1, 1, 1, 1, 0, 0]
    assert intervals_to_mask(4, []).tolist() == [0, 0, 0, 0]


def test_ucf_row_with_segments_stops_at_first_minus_one(tmp_path):
    ann = tmp_path / "ann.txt"
    ann.write_text(
        "A001_x264.mp4\tA\t2\t4\t-1\t-1\t8\nB001_x264.mp4\tB\t1\t2\t5\t20\t8\n"
        "C001_x264.mp4\tC\t2\t4\t-1\t6\t8\n"  # values after the first -1 are ignored
        "Normal_Videos_001_x264.mp4\tNormal\t-1\t-1\t-1\t-1\t3\n"
    )
    videos = read_split(ann, "ucf_crime")
    gt = frame_labels(videos, "ucf_crime", annotation=ann)
    assert gt["A001_x264"].tolist() == [0, 0, 1, 1, 0, 0, 0, 0]
    assert gt["B001_x264"].tolist() == [0, 1, 0, 0, 0, 1, 1, 1]
    assert gt["C001_x264"].tolist() == [0, 0, 1, 1, 0, 0, 0, 0]
    assert gt["Normal_Videos_001_x264"].tolist() == [0, 0, 0]


def test_missing_mask(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"01_0099\.npy' does not exist.*mask_dir"):
        frame_labels([Video("01_0099", 1)], "shanghaitech", mask_dir=tmp_path)
    with pytest.raises(ValueError, match="needs its frame mask: pass mask_dir="):
        frame_labels([Video("01_0099", 1)], "shanghaitech")


@pytest.mark.parametrize(
    "mask, why",
    [
        (np.zeros((4, 2), np.uint8), r"shape \(4, 2\)"),
        (np.array([0, 2, 1]), "values"),
        (np.array([{"a": 1}], dtype=object), "holds Python objects"),
    ],
)
def test_bad_mask(tmp_path, mask, why):
    np.save(tmp_path / "v.npy", mask)  # np.save pickles object arrays
    with pytest.raises(ValueError, match=why):
        load_mask(str(tmp_path / "v.npy"))


def test_normal_video_without_frame_count():
    with pytest.raises(ValueError, match="normal video '01_001' has no frame count"):
        frame_labels([Video("01_001", 0)], "demo")


def test_frame_count_disagrees_with_mask():
    with pytest.raises(ValueError, match="split says 10 frames but .*01_0014.npy has 265"):
        frame_labels([Video("01_0014", 1, 10)], "shanghaitech", mask_dir=SHT / "test_frame_mask")


def test_missing_annotation_row_and_file(tmp_path):
    with pytest.raises(KeyError, match="'Abuse999_x264' has no row in"):
        frame_labels([Video("Abuse999_x264", 1)], "ucf_crime", annotation=UCF_ANN)
    with pytest.raises(FileNotFoundError, match=r"gt\.json' does not exist"):
        frame_labels([Video("x", 1)], "xd_violence", annotation=tmp_path / "gt.json")
    with pytest.raises(ValueError, match="needs annotation="):
        frame_labels([Video("x", 1)], "ucf_crime")


def test_malformed_annotation(tmp_path):
    ann = tmp_path / "ann.txt"
    ann.write_text("A001_x264.mp4\tA\t2\t4\t-1\t-1\t8\nA002_x264.mp4\tA\t2\t4\t8\n")
    with pytest.raises(ValueError, match=r"ann\.txt:2: malformed line"):
        frame_labels([Video("A001_x264", 1)], "ucf_crime", annotation=ann)
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"v": {"segments": []}}))
    with pytest.raises(ValueError, match=r'"frames": N'):
        frame_labels([Video("v", 0)], "xd_violence", annotation=gt)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'ucf'"):
        frame_labels([], "ucf")


def test_the_official_six_column_ucf_annotation_points_to_the_shipped_one(tmp_path):
    from datasets.splits import read_split

    six = tmp_path / "Temporal_Anomaly_Annotation.txt"
    six.write_text("Abuse028_x264.mp4  Abuse  165  240  -1  -1\n")
    for read in (lambda: read_split(six, "ucf_crime"), lambda: _read_ucf_annotation(six)):
        with pytest.raises(ValueError, match=r"txt:1: this is the official 6-column .*_New\.txt"):
            read()
