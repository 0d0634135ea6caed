"""Stage-2 bad input: a clear message naming the video/file/key and the fix; nothing written."""

import h5py
import numpy as np
import pytest
import torch

from datasets.frames import frame_key
from models.build import build_model
from tests.stage2_fixtures import make_tiny_videos, tiny_stage2_opts
from utils.config import load_cfg
from utils.pseudo_labels import load_score_dict, save_pseudo_labels
from run_tool import run_tool


@pytest.fixture()
def videos(tmp_path):
    return make_tiny_videos(tmp_path / "data", n_train=2, n_test=1)


def _fails(videos, tmp_path, error, match, **opts):
    out = tmp_path / "out"
    with pytest.raises(error, match=match):
        run_tool("train_stage2", tiny_stage2_opts(videos, out, epochs=1, **opts))
    assert not out.exists()


def _write_avi(path, frames):
    import cv2

    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (frames.shape[2], frames.shape[1])
    )
    for frame in frames:
        writer.write(frame)
    writer.release()


def test_video_shorter_than_16_frames(videos, tmp_path):
    """Read from raw video files (make_h5 would already skip and report such a video)."""
    from datasets.frames import open_frames

    frames = open_frames(videos["frames"])
    (tmp_path / "vids").mkdir()
    for name in frames.names:
        clip = frames.read_segments(name, 0, frames.num_segments(name))
        _write_avi(tmp_path / "vids" / f"{name}.avi", clip[:10] if name == "tr_0000" else clip)
    _fails(
        videos,
        tmp_path,
        ValueError,
        "fewer than 16 frames.*tr_0000.*drop them",
        **{"DATA.FRAMES": tmp_path / "vids", "DATA.FRAMES_KIND": "video"},
    )


def test_video_without_pseudo_labels(videos, tmp_path):
    pls = load_score_dict(videos["pseudo_labels"])
    del pls["tr_0001"]
    save_pseudo_labels(tmp_path / "pls", pls)
    _fails(videos, tmp_path, KeyError, "tr_0001", **{"DATA.PSEUDO_LABELS": tmp_path / "pls.npz"})


def test_pseudo_labels_of_the_wrong_length_warn_and_align(videos, tmp_path):
    pls = load_score_dict(videos["pseudo_labels"])
    pls["tr_0001"] = np.concatenate([pls["tr_0001"], np.ones(5)])  # 5 clips too many
    pls["tr_0003"] = pls["tr_0003"][:1]  # far too short
    save_pseudo_labels(tmp_path / "pls", pls)
    with pytest.warns(UserWarning, match="tr_0001"):
        run_tool(
            "train_stage2",
            tiny_stage2_opts(
                videos, tmp_path / "out", epochs=1, **{"DATA.PSEUDO_LABELS": tmp_path / "pls.npz"}
            ),
        )
    assert (tmp_path / "out" / "results.json").exists()


def test_frames_h5_keys_missing(videos, tmp_path):
    with h5py.File(videos["frames"], "a") as h5:
        del h5[frame_key("tr_0002", 1)]  # a gap inside a video
    _fails(videos, tmp_path, ValueError, "tr_0002-000001")


def test_video_missing_from_frames_h5(videos, tmp_path):
    with h5py.File(videos["frames"], "a") as h5:
        for key in [k for k in h5 if k.startswith("te_0001-")]:
            del h5[key]  # a whole test video
    _fails(videos, tmp_path, KeyError, "te_0001")


def test_checkpoint_of_the_wrong_backbone(videos, tmp_path):
    cfg = load_cfg(None, tiny_stage2_opts(videos, tmp_path)[2:])  # c3d
    torch.save({"model": build_model(cfg).state_dict()}, tmp_path / "c3d.pth")
    _fails(
        videos,
        tmp_path,
        ValueError,
        "(?i)c3d",
        **{"MODEL.BACKBONE": "i3d", "MODEL.PRETRAINED": tmp_path / "c3d.pth"},
    )
    with pytest.raises(ValueError, match="MODEL.BACKBONE i3d"):
        run_tool(
            "test",
            tiny_stage2_opts(videos, tmp_path / "t", **{"MODEL.BACKBONE": "i3d"})
            + ["TEST.CHECKPOINT", str(tmp_path / "c3d.pth")],
        )
    assert not (tmp_path / "t").exists()


def test_cuda_requested_without_cuda(videos, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _fails(videos, tmp_path, RuntimeError, "no usable CUDA device", DEVICE="cuda")


def test_missing_pseudo_label_file_and_frames(videos, tmp_path):
    _fails(videos, tmp_path, FileNotFoundError, "DATA.PSEUDO_LABELS", **{"DATA.PSEUDO_LABELS": ""})
    _fails(
        videos, tmp_path, FileNotFoundError, "DATA.FRAMES", **{"DATA.FRAMES": tmp_path / "none.h5"}
    )
