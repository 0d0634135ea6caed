"""tools/extract_features.py under torchrun (gloo, CPU processes): the guidelines' single-machine
command on 2 processes and their Slurm command on 2 local "machines" write the bytes of one process
for every video (h5 and npy), each resuming what a killed run of another size left; parts merged by
one process; slices add up."""

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from datasets.frames import open_frames
from models.i3d import I3D
from tests.stage2_fixtures import make_tiny_videos
from engine import extract as ef
from utils.config import REPO_ROOT, load_cfg

# torchrun's default for several processes: the reference's too
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
CFG = "configs/ucf_crime/i3d_stage1.yaml"  # the guidelines' config
TINY = [
    "MODEL.WIDTH",
    "0.0625",
    "DATA.TEST_SIZE",
    "[32, 40, 32]",
    "TEST.BATCH_SIZE",
    "4",
    "DATA.NUM_WORKERS",
    "0",
]
WROTE = re.compile(
    r"wrote .*: (\d+) videos \((\d+) were done\), (\d+) clips \((.*) on (\d+) processes\)"
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Tiny frames h5 (10 videos, 3-5 clips each), I3D weights and single-process references (1
    thread)."""
    root = tmp_path_factory.mktemp("sharded")
    paths = make_tiny_videos(root, n_train=3, n_test=2)
    torch.manual_seed(1)
    torch.save(I3D(0.0625).state_dict(), root / "model_rgb.pth")
    data = {
        "frames": paths["frames"],
        "weights": root / "model_rgb.pth",
        "h5": root / "ref.h5",
        "npy": root / "ref",
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = load_cfg(CFG, TINY)
        ef.extract(data["frames"], data["h5"], "i3d", data["weights"], cfg, progress=False)
        ef.extract(
            data["frames"],
            data["npy"],
            "i3d",
            data["weights"],
            cfg,
            "npy",
            crops=10,
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    frames = open_frames(data["frames"])
    data["names"], data["clips"] = frames.names, {n: frames.num_segments(n) for n in frames.names}
    return data


def _h5(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()].tobytes() for k in f.keys()}, json.loads(f.attrs["extract_config"])


def _killed_h5(path, ref, names, partial):
    """An h5 as a killed run leaves it: the reference's datasets of `names`, a half-written
    `partial`."""
    with h5py.File(ref, "r") as src, h5py.File(path, "a") as dst:
        dst.attrs["extract_config"] = src.attrs["extract_config"]
        for name in names:
            src.copy(src[f"{name}.npy"], dst, name=f"{name}.npy")
        dst.create_dataset(f"{partial}.npy.partial", data=np.zeros((1, 64), np.float32))


def _guideline_commands():
    """The torchrun lines of Training_Guidelines.md's cluster section, continuation lines joined."""
    text = (REPO_ROOT / "Training_Guidelines.md").read_text()
    start = text.index("## 7. Extracting features on a cluster")
    end = text.find("\n## ", start + 1)
    joined = text[start : end if end > 0 else None].replace("\\\n", " ")
    return [
        shlex.split(line)
        for line in joined.splitlines()
        if line.startswith(("torchrun", "srun torchrun"))
    ]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(cmd, values, extra=()):
    """The documented command with its paths replaced, the tiny sizes appended -> Popen of
    torchrun."""
    start = cmd.index("torchrun")
    args = [values.get(a, a) for a in cmd[start + 1 :]] + TINY + list(extra)
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=REPO_ROOT,
    )


def _wait(*procs):
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), "\n".join(
        err[-3000:] for _, err in outputs
    )
    return [WROTE.search(out) for out, _ in outputs]


def test_single_machine_command_on_two_processes(data, tmp_path):
    """`torchrun --nproc_per_node 2` on an output killed mid-run by a 3-process job: videos 0-1 in
    the h5, 3-4 in a rank's part, 2 and 5 half-written. The 6 others are extracted, each video's
    bytes are one process's."""
    cmd = next(c for c in _guideline_commands() if c[0] == "torchrun")
    assert cmd[:4] == ["torchrun", "--standalone", "--nproc_per_node", "8"]
    cmd[3] = "2"
    out, names = tmp_path / "UCF_I3D.h5", data["names"]
    _killed_h5(out, data["h5"], names[:2], names[2])
    (tmp_path / "UCF_I3D.h5.parts").mkdir()
    _killed_h5(tmp_path / "UCF_I3D.h5.parts" / "rank-0-of-3.h5", data["h5"], names[3:5], names[5])
    (wrote,) = _wait(
        _launch(
            cmd,
            {
                "frames/UCF_frames.h5": str(data["frames"]),
                "features/UCF_I3D.h5": str(out),
                "pretrained/model_rgb.pth": str(data["weights"]),
            },
            ["DATA.NUM_WORKERS", "2"],
        )
    )
    todo = sum(data["clips"][n] for n in names[5:] + names[2:3])
    shares = [int(c) for c in wrote.group(4).split(" + ")]
    assert wrote.groups()[:3] == ("6", "4", str(todo)) and sum(shares) == todo and min(shares) > 0
    assert not (tmp_path / "UCF_I3D.h5.parts").exists()
    assert _h5(out) == _h5(data["h5"])  # every video's bytes, no '.partial' key, the same settings


def test_slurm_script_on_two_local_machines(data, tmp_path):
    """The sbatch script's srun line, one torchrun per "machine" (both here, 1 process each, MASTER
    = this host), on an npy folder killed mid-run: 3 videos written but not listed, 1 half-written
    temporary file."""
    cmd = next(c for c in _guideline_commands() if c[0] == "srun")
    assert cmd[cmd.index("--nproc_per_node") + 1] == "8" and "--node_rank" not in cmd
    cmd[cmd.index("--nproc_per_node") + 1] = "1"
    out, names = tmp_path / "corpus_i3d", data["names"]
    out.mkdir()
    shutil.copy(data["npy"] / "extract_config.json", out)
    for name in names[:3]:
        shutil.copy(data["npy"] / f"{name}_i3d.npy", out)
    (out / f"{names[3]}_i3d.npy.tmp").write_bytes(b"half a file")
    slurm = {
        "$SLURM_NNODES": "2",
        "$SLURM_JOB_ID": "test",
        "$MASTER:29500": f"127.0.0.1:{_free_port()}",
    }
    values = {
        **slurm,
        "lists/videos.txt": str(data["frames"]),
        "features/corpus_i3d": str(out),
        "pretrained/model_rgb.pth": str(data["weights"]),
    }
    wrote = [w for w in _wait(_launch(cmd, values), _launch(cmd, values)) if w]
    todo = sum(data["clips"][n] for n in names[3:])
    assert (
        len(wrote) == 1
        and wrote[0].groups()[:3] == ("7", "3", str(todo))
        and wrote[0].group(5) == "2"
    )
    assert (out / "features.list").read_text().split() == [f"{n}_i3d.npy" for n in names]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in data["npy"].iterdir())
    for name in names:  # (n_clips, 10 crops, 64) each, the same file bytes as one process
        assert (out / f"{name}_i3d.npy").read_bytes() == (
            data["npy"] / f"{name}_i3d.npy"
        ).read_bytes(), name


def test_one_process_merges_a_killed_jobs_parts_and_slices_add_up(data, tmp_path):
    """A 2-process job killed while rank 0 merged (video 6 copied, its part not yet deleted),
    restarted as one process on a slice of the videos (a frames h5 of 5 videos), then on the other
    slice: the full output."""
    names, out = data["names"], tmp_path / "feats.h5"
    _killed_h5(out, data["h5"], names[6:7], names[0])
    (tmp_path / "feats.h5.parts").mkdir()
    _killed_h5(tmp_path / "feats.h5.parts" / "rank-1-of-2.h5", data["h5"], names[5:7], names[7])
    slices = [tmp_path / "slice-00.h5", tmp_path / "slice-01.h5"]
    with h5py.File(data["frames"], "r") as src:
        for part, videos in zip(slices, (names[:5], names[5:])):
            with h5py.File(part, "w") as dst:
                for key in (k for k in src if k.rsplit("-", 1)[0] in videos):
                    src.copy(src[key], dst, name=key)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = load_cfg(CFG, TINY)
        first = ef.extract(slices[0], out, "i3d", data["weights"], cfg, progress=False)
        assert not (tmp_path / "feats.h5.parts").exists()
        second = ef.extract(slices[1], out, "i3d", data["weights"], cfg, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert (first["videos_written"], first["videos_already_done"]) == (5, 0)
    assert (second["videos_written"], second["videos_already_done"]) == (3, 2)
    assert second["clips"] == sum(data["clips"][n] for n in names[7:])
    assert _h5(out) == _h5(data["h5"])
