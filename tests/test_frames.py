"""Stage-2 frame storage: tools/make_h5.py, datasets/frames.py, utils/video.py (docs/REFERENCE.md
§3.6, §4.8).

Videos: a real H.264 -> mp4v excerpt (first 100 frames of UCF Normal_Videos020_x264, 320x240: 6
segments + 4 trailing frames) and a generated MJPG .avi whose 40 frames are flat, distinct colours
(2 segments + 8), so a shifted or reordered frame is caught where the real video's neighbouring
frames are too alike."""

import multiprocessing as mp
import pickle
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from datasets.frames import encode_segment, frame_key, open_frames, parse_frame_key
from engine import frames_h5
from engine.frames_h5 import make_h5
from utils import cli
from utils.video import iter_video_segments, probe_video, read_video_frames
from run_tool import run_tool, tool_main

REAL = Path(__file__).parent / "data" / "videos" / "Normal_Videos020_x264_head100.mp4"
REAL_NAME, REAL_FRAMES = "Normal_Videos020_x264_head100", 100
SYNTH_FRAMES = 40
# BGR per frame
COLOURS = np.random.default_rng(0).integers(0, 256, (SYNTH_FRAMES, 3)).astype(np.uint8)


def _write_avi(path, frames):
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (frames.shape[2], frames.shape[1])
    )
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def _jpeg_roundtrip(frames, quality=95):
    """What the h5 must hold, computed independently of datasets/frames.py."""
    encoded = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, quality])[1] for f in frames]
    return np.stack([cv2.imdecode(e, cv2.IMREAD_COLOR) for e in encoded])


def _mean_abs_diff(a, b):
    """uint8 arrays -> mean |a - b| (cv2.absdiff: no int64 copy of 22M values)."""
    return cv2.absdiff(a.reshape(len(a), -1), b.reshape(len(b), -1)).mean()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """{kind: path}: real, synth (good); corrupt, short, empty_file, no_frames (must be skipped)."""
    d = tmp_path_factory.mktemp("videos")
    synth = np.broadcast_to(COLOURS[:, None, None, :], (SYNTH_FRAMES, 48, 64, 3)).copy()
    (d / "corrupt.mp4").write_bytes(np.random.default_rng(1).bytes(5000))
    (d / "empty_file.mp4").write_bytes(b"")
    return {
        "real": REAL,
        "synth": _write_avi(d / "synth.avi", synth),
        "short": _write_avi(d / "short.avi", synth[:10]),
        "no_frames": _write_avi(d / "no_frames.avi", synth[:0]),
        "corrupt": d / "corrupt.mp4",
        "empty_file": d / "empty_file.mp4",
    }


@pytest.fixture(scope="module")
def built(videos, tmp_path_factory):
    """(h5 path, report) of make_h5 over every test video, good and bad."""
    out = tmp_path_factory.mktemp("h5") / "frames.h5"
    return out, make_h5(list(videos.values()), out, progress=False)


def test_make_h5_keys_report_and_skips(built, videos):
    out, report = built
    with h5py.File(out, "r") as f:
        keys = sorted(f.keys())
        first = f[keys[0]]
        assert first.dtype.kind == "S" and first.shape == (16,) and first.chunks is not None
    assert keys == [frame_key(REAL_NAME, i) for i in range(6)] + [
        f"synth-{i:06d}" for i in range(2)
    ]
    assert (report["videos"], report["segments"], report["frames"]) == (2, 8, 128)
    assert report["dropped_tail_frames"] == 4 + 8 and report["count_mismatch"] == []
    reasons = {Path(s["video"]).stem: s["reason"] for s in report["skipped"]}
    assert sorted(reasons) == ["corrupt", "empty_file", "no_frames", "short"]
    assert "only 10 frames" in reasons["short"] and "no frame" in reasons["no_frames"]
    assert "cannot be opened" in reasons["corrupt"] and "corrupt.mp4" in reasons["corrupt"]
    assert list(out.parent.iterdir()) == [out]  # no '.tmp' left behind


def test_h5_holds_the_official_jpeg_bytes_of_each_frame(built):
    """Bytes equal to cv2.imencode('.jpg', frame, quality 95) of the decoded frame, in frame
    order."""
    out, _ = built
    frames = read_video_frames(REAL)
    with h5py.File(out, "r") as f:
        for idx in (0, 5):
            stored = f[frame_key(REAL_NAME, idx)][()]
            expected = [
                cv2.imencode(".jpg", fr, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
                for fr in frames[16 * idx : 16 * idx + 16]
            ]
            assert list(stored) == expected


def test_h5_frames_match_video_frames(built, videos):
    out, _ = built
    h5 = open_frames(out)
    real = h5.read_segments(REAL_NAME, 0, 6)
    assert real.dtype == np.uint8 and real.shape == (96, 240, 320, 3)
    assert _mean_abs_diff(real, read_video_frames(REAL, 0, 96)) < 3  # JPEG error only
    synth = h5.read_segments("synth", 0, 2).reshape(32, -1, 3).mean(1)  # mean BGR colour per frame
    nearest = np.abs(synth[:, None, :] - COLOURS[None, :, :].astype(float)).sum(-1).argmin(1)
    # frame k of the h5 is frame k of the video, BGR
    np.testing.assert_array_equal(nearest, np.arange(32))


def test_frame_sources_agree_on_h5_and_videos(built, videos):
    out, _ = built
    h5 = open_frames(out, names=[REAL_NAME, "synth"])
    vid = open_frames([videos["real"], videos["synth"]], kind="video")
    assert type(h5).__name__ == "H5FrameSource" and type(vid).__name__ == "VideoFrameSource"
    assert h5.names == vid.names == [REAL_NAME, "synth"]
    for name, n in ((REAL_NAME, 6), ("synth", 2)):
        assert h5.num_segments(name) == vid.num_segments(name) == n
    np.testing.assert_array_equal(
        h5.read_segments(REAL_NAME, 2, 3), _jpeg_roundtrip(vid.read_segments(REAL_NAME, 2, 3))
    )
    h5_iter, vid_iter = list(h5.iter_segments(REAL_NAME, 4)), list(vid.iter_segments(REAL_NAME, 4))
    assert (
        [(i, x.shape[0]) for i, x in h5_iter]
        == [(i, x.shape[0]) for i, x in vid_iter]
        == [(0, 64), (4, 32)]
    )
    for (_, a), (_, b) in zip(h5_iter, vid_iter):
        np.testing.assert_array_equal(a, _jpeg_roundtrip(b))
    np.testing.assert_array_equal(
        np.concatenate([x for _, x in vid_iter]), vid.read_segments(REAL_NAME, 0, 6)
    )


@pytest.mark.parametrize("first,count", [(0, 16), (37, 16), (48, 16), (5, 3), (79, 17), (95, 1)])
def test_read_frames_is_the_slice_of_the_segments_it_spans(built, videos, first, count):
    out, _ = built
    for src in (open_frames(out, names=[REAL_NAME]), open_frames([videos["real"]], kind="video")):
        whole = src.read_segments(REAL_NAME, 0, 6)  # frames 0..95
        np.testing.assert_array_equal(
            src.read_frames(REAL_NAME, first, count), whole[first : first + count]
        )


def test_read_frames_decodes_only_the_frames_asked_for(built, monkeypatch):
    import datasets.frames as frames_module

    decoded = []
    real_decode = frames_module.decode_segment
    monkeypatch.setattr(
        frames_module,
        "decode_segment",
        lambda jpegs, where: decoded.append(len(jpegs)) or real_decode(jpegs, where),
    )
    src = open_frames(built[0], names=[REAL_NAME])
    assert src.read_frames(REAL_NAME, 16 * 2 + 9, 16).shape[0] == 16
    assert decoded == [7, 9]  # frames 41..47 of key 2 and 48..56 of key 3: 16 decodes, not 32
    for first, count in ((-1, 16), (90, 16), (0, 0)):
        with pytest.raises(IndexError, match="out of range"):
            src.read_frames(REAL_NAME, first, count)


def test_workers_2_writes_the_same_h5_as_workers_1(videos, tmp_path):
    good = [videos["real"], videos["synth"], videos["short"]]
    r1 = make_h5(good, tmp_path / "w1.h5", workers=1, progress=False)
    r2 = make_h5(good, tmp_path / "w2.h5", workers=2, progress=False)
    fields = ("videos", "segments", "frames", "skipped")
    assert {k: r1[k] for k in fields} == {k: r2[k] for k in fields}
    with h5py.File(tmp_path / "w1.h5", "r") as f1, h5py.File(tmp_path / "w2.h5", "r") as f2:
        assert sorted(f1.keys()) == sorted(f2.keys()) and len(f1.keys()) == 8
        for key in f1:
            assert list(f1[key][()]) == list(f2[key][()])


def test_refuses_to_overwrite_without_force(videos, tmp_path):
    out = tmp_path / "frames.h5"
    out.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="force"):
        make_h5([videos["synth"]], out, progress=False)
    assert out.read_bytes() == b"precious"
    assert make_h5([videos["synth"]], out, force=True, progress=False)["segments"] == 2


def test_duplicate_basenames_error_before_any_work(videos, tmp_path):
    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        (tmp_path / "in" / sub / "clip.avi").write_bytes(Path(videos["synth"]).read_bytes())
    with pytest.raises(ValueError, match="'clip'"):
        make_h5(tmp_path / "in", tmp_path / "out.h5", progress=False)
    assert not (tmp_path / "out.h5").exists() and not (tmp_path / "out.h5.tmp").exists()


def test_list_file_paths_resolve_against_list_folder_or_root(videos, tmp_path):
    (tmp_path / "vids").mkdir()
    (tmp_path / "vids" / "synth.avi").write_bytes(Path(videos["synth"]).read_bytes())
    (tmp_path / "vids" / "list.txt").write_text("# comment\nsynth.avi\n\n")
    assert make_h5(tmp_path / "vids" / "list.txt", tmp_path / "a.h5", progress=False)["videos"] == 1
    (tmp_path / "list2.txt").write_text("synth.avi\n")
    with pytest.raises(FileNotFoundError, match="root"):
        make_h5(tmp_path / "list2.txt", tmp_path / "b.h5", progress=False)
    assert (
        make_h5(tmp_path / "list2.txt", tmp_path / "b.h5", root=tmp_path / "vids", progress=False)[
            "videos"
        ]
        == 1
    )


def test_interrupted_run_keeps_finished_videos_and_resumes(videos, tmp_path, monkeypatch):
    """Ctrl-C after the first video: no '<out>', its segments in '<out>.incomplete'; the same call
    resumes (the finished video is not decoded again), other options are refused (kill -9:
    tests/test_make_h5.py)."""
    real_encode, calls = frames_h5.encode_video, []

    def encode_then_interrupt(path, **kwargs):
        calls.append(Path(path).stem)
        if Path(path).stem == "short" and calls.count("short") == 1:
            raise KeyboardInterrupt  # Ctrl-C after the first video was committed
        return real_encode(path, **kwargs)

    monkeypatch.setattr(frames_h5, "encode_video", encode_then_interrupt)
    out, paths = tmp_path / "out.h5", [videos["synth"], videos["short"], videos["real"]]
    with pytest.raises(KeyboardInterrupt):
        make_h5(paths, out, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5.incomplete"]
    with h5py.File(tmp_path / "out.h5.incomplete", "r") as f:
        assert sorted(f.keys()) == ["synth-000000", "synth-000001"]
    with pytest.raises(FileExistsError, match=r"started with --quality 95, not 90.*--force"):
        make_h5(paths, out, quality=90, progress=False)
    report = make_h5(paths, out, progress=False)
    assert calls == ["synth", "short", "short", REAL_NAME]
    assert (report["videos"], report["videos_already_done"], report["segments"]) == (1, 1, 6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]
    with h5py.File(out, "r") as f:
        assert sorted(f.keys()) == sorted(
            [frame_key(REAL_NAME, i) for i in range(6)] + ["synth-000000", "synth-000001"]
        )


def test_all_skipped_writes_nothing(videos, tmp_path):
    with pytest.raises(ValueError, match="none of the 2 videos"):
        make_h5([videos["short"], videos["corrupt"]], tmp_path / "out.h5", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_cli_exit_codes_and_resize(videos, tmp_path, capsys):
    args = [str(videos["synth"]), str(videos["short"])]
    (tmp_path / "l.txt").write_text("\n".join(args))
    assert (
        run_tool(
            "make_h5", [str(tmp_path / "l.txt"), str(tmp_path / "o.h5"), "--resize", "24", "32"]
        )
        == 1
    )
    assert "short.avi: only 10 frames" in capsys.readouterr().out
    assert open_frames(tmp_path / "o.h5").read_segments("synth", 1, 1).shape == (16, 24, 32, 3)
    assert (
        run_tool(
            "make_h5", [str(tmp_path / "l.txt"), str(tmp_path / "o.h5"), "--force", "--allow-skips"]
        )
        == 0
    )
    # no --force
    assert cli.run(tool_main("make_h5"), [str(tmp_path / "l.txt"), str(tmp_path / "o.h5")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars
    assert last.startswith("error: output ") and last.endswith(
        "already exists; pass --force (force=True) to overwrite it"
    )


def test_gap_in_keys_is_an_error(tmp_path):
    segment = encode_segment(np.zeros((16, 8, 8, 3), np.uint8))
    with h5py.File(tmp_path / "gap.h5", "w") as f:
        for key in ("v-000000", "v-000002", "w-000000"):
            f.create_dataset(key, data=segment)
    with pytest.raises(ValueError, match="'v-000001' is missing"):
        open_frames(tmp_path / "gap.h5")


def test_missing_and_unknown_videos(built):
    out, _ = built
    with pytest.raises(
        KeyError, match=r"2 requested videos.*'nope'.*keys look like '\w+-000000'.*extension"
    ):
        open_frames(out, names=["synth", "nope", "nope2.mp4"])
    src = open_frames(out, names=["synth"])
    with pytest.raises(KeyError, match="'Abuse'"):
        src.num_segments("Abuse")
    with pytest.raises(IndexError, match="has 2 segments"):
        src.read_segments("synth", 1, 2)


def test_key_format():
    assert frame_key("Bad.Boys-1995", 12) == "Bad.Boys-1995-000012"
    assert parse_frame_key("Bad.Boys-1995-000012") == ("Bad.Boys-1995", 12)
    with pytest.raises(ValueError, match="'01_0014.npy'"):
        parse_frame_key("01_0014.npy")


def _read_first(src):
    return src.read_segments("synth", 1, 1)


def test_h5_handle_opens_lazily_per_process(built):
    out, _ = built
    src = open_frames(out)
    assert src._file is None  # indexing does not keep the file open
    parent = src.read_segments("synth", 1, 1)
    assert src._file is not None
    clone = pickle.loads(pickle.dumps(src))
    assert clone._file is None
    np.testing.assert_array_equal(clone.read_segments("synth", 1, 1), parent)
    # the DataLoader-worker case: the parent's handle is open
    with mp.get_context("fork").Pool(2) as pool:
        for frames in pool.map(_read_first, [src, src]):
            np.testing.assert_array_equal(frames, parent)


def test_video_helpers(videos):
    assert probe_video(REAL) == (REAL_FRAMES, 240, 320, 30.0)
    assert probe_video(REAL, verify=True)[0] == REAL_FRAMES
    frames = read_video_frames(REAL)
    assert frames.shape == (REAL_FRAMES, 240, 320, 3)
    # seek is frame-accurate
    np.testing.assert_array_equal(read_video_frames(REAL, 37, 5), frames[37:42])
    segs = list(iter_video_segments(REAL, 16, batch=4))
    assert [i for i, _ in segs] == [0, 4]
    np.testing.assert_array_equal(np.concatenate([x for _, x in segs]), frames[:96])
    with pytest.raises(ValueError, match=r"head100\.mp4': frame 100 could not be decoded"):
        read_video_frames(REAL, 90, 16)
    with pytest.raises(ValueError, match="frame 100 could not"):
        list(iter_video_segments(REAL, 16, batch=4, num_segments=7))
    with pytest.raises(ValueError, match="corrupt.mp4"):
        probe_video(videos["corrupt"])
    with pytest.raises(ValueError, match="no_frames.avi"):
        probe_video(videos["no_frames"])
