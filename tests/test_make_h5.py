"""tools/make_h5.py killed for real (kill -9 of the main process, 2 spawn workers) and run again:
the same h5 as an uninterrupted run, the finished videos not decoded again, no worker left behind; a
video caught half-way through its commit is converted again."""

import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import h5py
import numpy as np

from engine.frames_h5 import make_h5
from utils.config import REPO_ROOT

N_VIDEOS, KILL_AT = 6, "v5"
# imported by the driver and by the spawned workers: logs every call, and the call for KILL_AT
# (first run
# only) kills the main process with SIGKILL, then sleeps as a worker stuck in a long video would
HOOK = f"""
import os, signal, sys, time
from pathlib import Path
from engine import frames_h5

real_encode = frames_h5.encode_video


def _ppid(pid):
    try:
        return int(open(f"/proc/{{pid}}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError):
        return None


def encode_video(path, **kwargs):
    with open(os.environ["HOOK_LOG"], "a") as log:
        log.write(f"{{os.getpid()}} {{Path(path).stem}}\\n")
    if Path(path).stem == "{KILL_AT}" and os.environ.get("HOOK_KILL"):
        time.sleep(2)  # the main process commits the videos before this one meanwhile
        with open(os.environ["HOOK_LOG"] + ".workers", "w") as log:  # every worker of the pool
            pids = [p for p in os.listdir("/proc") if p.isdigit() and _ppid(p) == os.getppid()]
            log.write(" ".join(pids))
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(60)
    return real_encode(path, **kwargs)
"""
DRIVER = """
import runpy
import sys
from engine import frames_h5
from utils import cli
from utils.config import REPO_ROOT
import hook

if __name__ == "__main__":  # spawned workers import this module too
    frames_h5.encode_video = hook.encode_video
    sys.exit(cli.run(runpy.run_path(str(REPO_ROOT / "tools" / "make_h5.py"))["main"]))
"""


def _videos(folder):
    """N_VIDEOS MJPG videos of 35-50 distinct flat frames (2-3 segments each) -> list file."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_VIDEOS):
        colours = rng.integers(0, 256, (35 + 3 * i, 3)).astype(np.uint8)
        writer = cv2.VideoWriter(
            str(folder / f"v{i}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (40, 32)
        )
        for colour in colours:
            writer.write(np.broadcast_to(colour, (32, 40, 3)).copy())
        writer.release()
    (folder / "list.txt").write_text("".join(f"v{i}.avi\n" for i in range(N_VIDEOS)))
    return folder / "list.txt"


def _run(tmp_path, list_file, out, log, kill):
    """-> (exit status, stdout, stderr) of the driver; only the main process is waited for (its
    output goes to files: a pipe would also wait for any orphaned worker)."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO_ROOT}",
        "HOOK_LOG": str(log),
        "HOOK_KILL": "1" if kill else "",
    }
    cmd = [sys.executable, str(tmp_path / "driver.py"), str(list_file), str(out), "--workers", "2"]
    with open(f"{log}.out", "w") as stdout, open(f"{log}.err", "w") as stderr:
        code = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, env=env, cwd=tmp_path).wait(
            timeout=120
        )
    return code, Path(f"{log}.out").read_text(), Path(f"{log}.err").read_text()


def _calls(log):
    """-> [(pid, video)] of the hook's log."""
    return [
        (int(pid), name) for pid, name in (line.split() for line in log.read_text().splitlines())
    ]


def _alive(pid):
    """False once `pid` is gone (or a zombie nobody reaped: dead too)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _contents(path):
    with h5py.File(path, "r") as f:
        return {k: [bytes(b) for b in f[k][()]] for k in f.keys()}, dict(f.attrs)


def test_kill_9_then_the_same_command_converts_only_the_unfinished_videos(tmp_path):
    (tmp_path / "hook.py").write_text(HOOK)
    (tmp_path / "driver.py").write_text(DRIVER)
    list_file, out = _videos(tmp_path / "videos"), tmp_path / "frames.h5"
    code, _, err = _run(tmp_path, list_file, out, tmp_path / "first.log", kill=True)
    assert code == -9, err[-2000:]
    # the 2 workers and multiprocessing's resource tracker
    workers = [int(pid) for pid in (tmp_path / "first.log.workers").read_text().split()]
    assert len(workers) == 3 and {pid for pid, _ in _calls(tmp_path / "first.log")} <= set(workers)
    deadline = time.time() + 10
    while any(map(_alive, workers)) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, workers)), "a worker outlived the killed main process"
    assert not out.exists()
    keys, _ = _contents(tmp_path / "frames.h5.incomplete")
    finished = {k.rsplit("-", 1)[0] for k in keys}
    assert finished and KILL_AT not in finished  # (v0..v3 here: committed while the hook slept)

    code, stdout, err = _run(tmp_path, list_file, out, tmp_path / "second.log", kill=False)
    assert code == 0, err[-2000:]
    redone = sorted(name for _, name in _calls(tmp_path / "second.log"))
    assert redone == sorted({f"v{i}" for i in range(N_VIDEOS)} - finished)
    assert f"{len(finished)} videos were done before" in stdout
    assert not (tmp_path / "frames.h5.incomplete").exists()

    straight = make_h5(list_file, tmp_path / "straight.h5", progress=False)
    assert straight["segments"] == sum((35 + 3 * i) // 16 for i in range(N_VIDEOS))
    assert _contents(out) == _contents(tmp_path / "straight.h5")


def test_a_video_killed_half_way_through_its_commit_is_converted_again(tmp_path):
    """Segment 0 of v1 already moved to its key, segment 1 still in 'v1.partial': both dropped, v1
    redone."""
    list_file = _videos(tmp_path / "videos")
    straight = make_h5(list_file, tmp_path / "straight.h5", progress=False)
    keys, attrs = _contents(tmp_path / "straight.h5")
    with (
        h5py.File(tmp_path / "straight.h5", "r") as src,
        h5py.File(tmp_path / "out.h5.incomplete", "w") as dst,
    ):
        dst.attrs.update(attrs)
        for key in ("v0-000000", "v0-000001", "v1-000000"):
            src.copy(src[key], dst, name=key)
        src.copy(src["v1-000001"], dst.create_group("v1.partial"), name="1")
    report = make_h5(list_file, tmp_path / "out.h5", progress=False)
    assert (report["videos"], report["videos_already_done"]) == (N_VIDEOS - 1, 1)
    assert report["segments"] == straight["segments"] - 2
    assert _contents(tmp_path / "out.h5") == (keys, attrs)
