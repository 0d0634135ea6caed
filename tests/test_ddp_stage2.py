"""Stage 2 under torchrun (gloo, CPU processes): BatchNorm buffers agree, checkpoints reproduce the
logged scores, resume is exact with loader workers, uneven shares train as one process, and the
guidelines' multi-GPU commands run as written."""

import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.stage2_fixtures import make_tiny_videos, tiny_stage2_opts
from utils.config import REPO_ROOT
from utils.errors import UserError
from run_tool import run_tool

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# BatchNorm trains from the first epoch (no frozen phase) with dropout on: what resume must
# reproduce
I3D = {"MODEL.BACKBONE": "i3d", "STAGE2.FREEZE_EPOCHS": 0, "DATA.NUM_WORKERS": 2, "DEVICE": "cpu"}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_tiny_videos(tmp_path_factory.mktemp("videos"))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args, opts, nproc=2, extra=()):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        *extra,
        str(REPO_ROOT / "tools" / "train_stage2.py"),
        *args,
        *opts,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _state(out, name="last"):
    return torch.load(out / "checkpoints" / f"{name}.pth", map_location="cpu", weights_only=True)


def _assert_same_state(a, b):
    """Bit for bit: model, optimizer moments, step counter."""
    assert a["global_step"] == b["global_step"]
    assert [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])] == []
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(pa[k], pb[k]) for k in ("exp_avg", "exp_avg_sq"))


@pytest.fixture(scope="module")
def i3d_two_ranks(videos, tmp_path_factory):
    """2-rank I3D runs: straight for 2 epochs, and 1 epoch then resumed to 2 -> (straight dir,
    resumed dir)."""
    root = tmp_path_factory.mktemp("ddp_i3d")
    straight, resumed = root / "straight", root / "resumed"
    _torchrun([], tiny_stage2_opts(videos, straight, epochs=2, **I3D))
    _torchrun([], tiny_stage2_opts(videos, resumed, epochs=1, **I3D))
    _torchrun(["--resume"], tiny_stage2_opts(videos, resumed, epochs=2, **I3D))
    return straight, resumed


def test_i3d_ranks_agree_on_parameters_and_batchnorm_buffers(i3d_two_ranks):
    straight, _ = i3d_two_ranks
    results = json.loads((straight / "results.json").read_text())
    digests = results["weights_digest_per_rank"]
    assert results["world_size"] == 2 and len(digests) == 2
    assert digests[0] == digests[1] and set(digests[0]) == {"parameters", "buffers"}
    assert "different" not in (straight / "log.txt").read_text()  # the agreement check stays silent
    # the running statistics did train (not the initial ones) and are shared by both ranks'
    # checkpoints
    state = _state(straight)["model"]
    means = [k for k in state if k.endswith("running_mean")]
    assert means and any(state[k].abs().max() > 0 for k in means)


def test_checkpoint_reproduces_the_scores_of_every_test_video(i3d_two_ranks, videos, tmp_path):
    """Each rank scored its half of the test videos; one process on last.pth must give the same
    scores."""
    straight, _ = i3d_two_ranks
    logged = dict(np.load(straight / "test_scores.npz"))
    out = tmp_path / "test"
    run_tool(
        "test",
        tiny_stage2_opts(videos, out, **I3D)[:2]
        + [
            x
            for kv in zip(
                tiny_stage2_opts(videos, out, **I3D)[2::2],
                tiny_stage2_opts(videos, out, **I3D)[3::2],
            )
            for x in kv
        ]
        + ["TEST.CHECKPOINT", str(straight / "checkpoints" / "last.pth")],
    )
    again = dict(np.load(next(out.glob("test_*_scores.npz"))))
    assert sorted(again) == sorted(logged) and len(logged) == 4
    for name in logged:
        np.testing.assert_allclose(again[name], logged[name], rtol=0, atol=1e-6, err_msg=name)


def test_two_rank_resume_with_loader_workers_is_exact(i3d_two_ranks):
    straight, resumed = i3d_two_ranks
    _assert_same_state(_state(straight), _state(resumed))


def test_single_process_resume_with_loader_workers_is_exact(videos, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_tool("train_stage2", tiny_stage2_opts(videos, straight, epochs=2, **I3D))
    run_tool("train_stage2", tiny_stage2_opts(videos, resumed, epochs=1, **I3D))
    run_tool("train_stage2", ["--resume"] + tiny_stage2_opts(videos, resumed, epochs=2, **I3D))
    _assert_same_state(_state(straight), _state(resumed))


def test_uneven_shares_train_the_weights_of_one_process(videos, tmp_path):
    """3 videos per class over 2 ranks (shares 2 + 1): share-weighted losses give the whole-batch
    gradient. No dropout and no BatchNorm (C3D), so one process on the whole batch must end with the
    same weights."""
    opts = {
        "MODEL.DROPOUT": 0.0,
        "STAGE2.FREEZE_EPOCHS": 0,
        "STAGE2.BATCH_SIZE": 3,
        "DEVICE": "cpu",
    }
    proc = _torchrun([], tiny_stage2_opts(videos, tmp_path / "ddp", epochs=2, **opts))
    assert "shares of [2, 1] videos" in proc.stdout
    run_tool("train_stage2", tiny_stage2_opts(videos, tmp_path / "single", epochs=2, **opts))
    a, b = _state(tmp_path / "ddp")["model"], _state(tmp_path / "single")["model"]
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_sync_bn_on_the_cpu_is_refused_before_any_work(videos, tmp_path):
    out = tmp_path / "syncbn"
    with pytest.raises(UserError, match="STAGE2.SYNC_BN True needs CUDA devices"):
        run_tool(
            "train_stage2",
            tiny_stage2_opts(videos, out, **{"STAGE2.SYNC_BN": True, "DEVICE": "cpu"}),
        )
    assert not out.exists()


def _guideline_commands():
    """The torchrun commands of Training_Guidelines.md's stage-2 section, continuation lines
    joined."""
    text = (REPO_ROOT / "Training_Guidelines.md").read_text()
    start = text.index("## 6. Train stage 2")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end > 0 else None]
    joined = section.replace("\\\n", " ")
    return [line.split() for line in joined.splitlines() if line.startswith("torchrun")]


def test_the_guidelines_name_two_torchrun_commands():
    commands = _guideline_commands()
    assert len(commands) == 2 and all("tools/train_stage2.py" in c for c in commands)


@pytest.fixture(scope="module")
def recipe_videos(tmp_path_factory):
    """10 normal + 10 abnormal training videos: the I3D recipe's STAGE2.BATCH_SIZE 10 runs
    unchanged."""
    return make_tiny_videos(tmp_path_factory.mktemp("recipe_videos"), n_train=10, n_test=1)


def _data_opts(videos, out):
    """The tiny data's paths and sizes appended to a documented command (the recipe's batch size
    stays)."""
    opts = tiny_stage2_opts(
        videos,
        out,
        backbone="i3d",
        epochs=1,
        **{"MODEL.PRETRAINED": "", "DEVICE": "cpu", "STAGE2.FREEZE_EPOCHS": 0},
    )[2:]
    drop = {"STAGE2.BATCH_SIZE", "STAGE2.ACCUMULATE", "STAGE2.LR", "STAGE2.CLIP_NUM"}
    return [x for k, v in zip(opts[::2], opts[1::2]) if k not in drop for x in (k, v)]


def test_single_node_guideline_command_runs_on_four_processes(recipe_videos, tmp_path):
    """`torchrun --nproc_per_node 4` with BATCH_SIZE 10: shares 3, 3, 2, 2 (it used to fail at
    start)."""
    cmd = _guideline_commands()[0]
    assert cmd[:3] == ["torchrun", "--nproc_per_node", "4"]
    out = tmp_path / "four"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--master_port", str(_free_port())]
    proc = subprocess.run(
        launcher + cmd[1:] + _data_opts(recipe_videos, out),
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "shares of [3, 3, 2, 2] videos" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert (
        results["world_size"] == 4
        and len({json.dumps(d) for d in results["weights_digest_per_rank"]}) == 1
    )
    assert len(re.findall(r"stage 2 \(i3d\)", proc.stdout)) == 1  # logged by rank 0 only


def test_multi_node_guideline_command_runs_as_two_local_nodes(recipe_videos, tmp_path):
    """The 2-machine command, both "machines" on this one (HOST = 127.0.0.1, 1 process per node)."""
    cmd = _guideline_commands()[1]
    port, out = str(_free_port()), tmp_path / "nodes"
    procs = []
    for node in ("0", "1"):
        args = [{"NODE": node, "HOST": "127.0.0.1", "29500": port}.get(a, a) for a in cmd[1:]]
        args[args.index("--nproc_per_node") + 1] = "1"
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "torch.distributed.run"]
                + args
                + _data_opts(recipe_videos, out),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=ENV,
                cwd=REPO_ROOT,
            )
        )
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][1][-3000:] + outputs[1][1][-3000:]
    results = json.loads((out / "results.json").read_text())
    assert (
        results["world_size"] == 2
        and results["weights_digest_per_rank"][0] == results["weights_digest_per_rank"][1]
    )
