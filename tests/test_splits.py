"""datasets/splits.py: every official split format, the label rules, the pinned counts and the
errors."""

from collections import Counter
from pathlib import Path

import pytest

from datasets.splits import Video, read_split

DATA = Path(__file__).resolve().parents[1] / "data"
SHT, UCF, XD = DATA / "shanghaitech", DATA / "ucf_crime", DATA / "xd_violence"


def _write(tmp_path, text, name="split.txt"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_sht_train_and_test_counts():
    train = read_split(SHT / "SH_Train_new.txt", "shanghaitech")
    test = read_split(SHT / "SH_Test_NEW.txt", "shanghaitech")
    assert (len(train), sum(v.label for v in train)) == (238, 63)
    assert (len(test), sum(v.label for v in test)) == (199, 44)
    assert train[0] == Video("01_0014", 1, None, "")
    assert test[0] == Video("01_001", 0, 764, "Normal")
    # frames -1: length comes from the mask
    assert all(v.n_frames is None for v in test if v.label == 1)
    assert sum(v.n_frames for v in test if v.label == 0) == 124_398
    assert not {v.name for v in train} & {v.name for v in test}


def test_sht_name_rule_matches_official_labels():
    """4-digit second part (original SHT test set) = abnormal, 3 digits = normal, on all 437
    videos."""
    videos = read_split(SHT / "SH_Train_new.txt", "shanghaitech") + read_split(
        SHT / "SH_Test_NEW.txt", "shanghaitech"
    )
    assert all(v.label == int(len(v.name.split("_")[1]) == 4) for v in videos)


@pytest.mark.parametrize(
    "official, rtfm",
    [
        ("SH_Train_new.txt", "shanghai-i3d-train-10crop.list"),
        ("SH_Test_NEW.txt", "shanghai-i3d-test-10crop.list"),
    ],
)
def test_sht_rtfm_lists_match_official(official, rtfm):
    ref = {v.name: (v.label, v.category) for v in read_split(SHT / official, "shanghaitech")}
    got = read_split(SHT / "rtfm" / rtfm, "shanghaitech")
    assert {v.name: (v.label, v.category) for v in got} == ref
    assert len(got) == len(ref)


def test_ucf_train_split():
    videos = read_split(UCF / "Anomaly_Train.txt", "ucf_crime")
    assert len(videos) == 1610
    assert Counter(v.label for v in videos) == {0: 800, 1: 810}
    assert videos[0] == Video("Abuse001_x264", 1, None, "Abuse")
    assert {v.category for v in videos if v.label == 0} == {"Normal"}
    assert Counter(v.category for v in videos)["RoadAccidents"] == 127
    rtfm = read_split(UCF / "rtfm" / "ucf-i3d.list", "ucf_crime")
    assert {(v.name, v.label, v.category) for v in rtfm} == {
        (v.name, v.label, v.category) for v in videos
    }


def test_ucf_test_split():
    videos = read_split(UCF / "Temporal_Anomaly_Annotation_New.txt", "ucf_crime")
    assert (len(videos), sum(v.label for v in videos)) == (290, 140)
    assert videos[0] == Video("Abuse028_x264", 1, 1412, "Abuse")
    assert sum(v.n_frames for v in videos) == 1_111_808
    classes = Counter(v.category for v in videos)
    assert classes["Normal"] == 150 and classes["RoadAccidents"] == 23 and classes["Abuse"] == 2
    assert len(classes) == 14
    rtfm = read_split(UCF / "rtfm" / "ucf-i3d-test.list", "ucf_crime")
    # the name rule (docs/REFERENCE.md §4.4) gives the annotation's class column for every test
    # video
    assert {(v.name, v.label, v.category) for v in rtfm} == {
        (v.name, v.label, v.category) for v in videos
    }


def test_xd_lists_group_crops():
    train = read_split(XD / "rgb.list", "xd_violence")
    test = read_split(XD / "rgb_test.list", "xd_violence")
    assert (len(train), len(test)) == (3954, 800)
    assert Counter(v.label for v in train) == {0: 2049, 1: 1905}
    assert Counter(v.label for v in test) == {0: 300, 1: 500}
    assert test[0] == Video("Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6", 1, None, "G")
    assert train[-1] == Video("wangted.2008__#01-26-25_01-27-00_label_A", 0, None, "Normal")


def test_feature_list_paths_and_suffixes(tmp_path):
    path = _write(
        tmp_path, "/feats/01_0014_i3d.npy\n/feats/01_001_i3d.npy\n01_0015.npy\n", "x.list"
    )
    assert [(v.name, v.label) for v in read_split(path, "demo")] == [
        ("01_0014", 1),
        ("01_001", 0),
        ("01_0015", 1),
    ]


def test_blank_lines_and_whitespace_are_ignored(tmp_path):
    path = _write(tmp_path, "01_0014,1\r\n\n  01_002,0  \n\n")
    assert [v.name for v in read_split(path, "shanghaitech")] == ["01_0014", "01_002"]


def test_missing_file_names_path_and_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.txt.*DATA\.TEST_SPLIT"):
        read_split(tmp_path / "nope.txt", "shanghaitech", cfg_key="DATA.TEST_SPLIT")
    with pytest.raises(FileNotFoundError, match=r"DATA\.TRAIN_SPLIT"):
        read_split(tmp_path / "nope.txt", "shanghaitech")


@pytest.mark.parametrize(
    "text, line",
    [
        ("01_0014,1\n01_002,2\n", 2),  # label not 0/1
        # column count changes
        ("01_0014,1,-1\n01_002,0\n", 2),
        ("a_i3d.npy\nb.txt\n", 2),
    ],
)
def test_malformed_line_names_file_line_and_format(tmp_path, text, line):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=rf"split\.txt:{line}: malformed line .*must be"):
        read_split(path, "shanghaitech")


def test_unknown_format_and_dataset(tmp_path):
    with pytest.raises(ValueError, match=r"split\.txt:1: cannot tell the split format"):
        read_split(_write(tmp_path, "video,frames\n"), "shanghaitech")
    with pytest.raises(ValueError, match="unknown dataset 'sht'"):
        read_split(_write(tmp_path, "01_0014,1\n"), "sht")


def test_empty_split(tmp_path):
    with pytest.raises(ValueError, match="is empty"):
        read_split(_write(tmp_path, "\n  \n"), "shanghaitech")


def test_duplicates(tmp_path):
    with pytest.raises(
        ValueError, match=r"split\.txt:3: video '01_0014' is listed twice \(first at line 1\)"
    ):
        read_split(_write(tmp_path, "01_0014,1\n01_002,0\n01_0014,1\n"), "shanghaitech")
    with pytest.raises(ValueError, match="listed twice"):  # same crop twice
        read_split(_write(tmp_path, "v_label_A__0.npy\nv_label_A__0.npy\n"), "xd_violence")


def test_labels_that_cannot_be_inferred(tmp_path):
    with pytest.raises(ValueError, match="cannot infer the label of 'cam1'"):
        read_split(_write(tmp_path, "cam1_i3d.npy\n"), "demo")
    with pytest.raises(ValueError, match="no '_label_<code>'"):
        read_split(_write(tmp_path, "movie__0.npy\n"), "xd_violence")


def test_a_utf8_bom_is_not_part_of_the_first_video_name(tmp_path):
    from datasets.splits import read_split

    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeff01_0014.npy\n01_0015.npy\n".encode("utf-8"))
    assert [v.name for v in read_split(path, "shanghaitech")][:1] == ["01_0014"]
    binary = tmp_path / "feats.h5"
    binary.write_bytes(b"\x89HDF\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        read_split(binary, "shanghaitech", "DATA.TEST_SPLIT")
