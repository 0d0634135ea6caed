"""utils/cli.py: how every tool ends — one line and exit 2 on a user error, the traceback on a
bug."""

import errno
import os
import subprocess
import sys
import textwrap

import pytest

from utils import cli
from utils.config import REPO_ROOT
from utils.errors import InputError, NotFoundError


def _fail(exc):
    def main(argv):
        raise exc

    return main


def test_user_error_is_one_line_and_status_2(capsys):
    status = cli.run(_fail(InputError("video 'a.mp4': 3 frames,\n  need 16: drop it")), [])
    err = capsys.readouterr().err
    assert status == 2 and err == "error: video 'a.mp4': 3 frames, need 16: drop it\n"
    assert cli.run(_fail(NotFoundError("x.h5 does not exist")), []) == 2  # every UserError subclass
    assert capsys.readouterr().err == "error: x.h5 does not exist\n"


def test_debug_flag_or_env_keeps_the_traceback_and_bugs_always_do(monkeypatch):
    seen = []
    with pytest.raises(InputError):
        cli.run(
            lambda argv: seen.append(argv) or (_ for _ in ()).throw(InputError("x")),
            ["--debug", "a"],
        )
    assert seen == [["a"]]  # --debug is taken out of the tool's arguments
    monkeypatch.setenv("MIST_DEBUG", "1")
    with pytest.raises(InputError):
        cli.run(_fail(InputError("x")), [])
    monkeypatch.delenv("MIST_DEBUG")
    with pytest.raises(ZeroDivisionError):  # a bug is not a user error
        cli.run(_fail(ZeroDivisionError("bug")), [])


def test_status_of_main_ctrl_c_and_disk_errors(capsys):
    assert cli.run(lambda argv: 3, []) == 3 and cli.run(lambda argv: {"auc": 1.0}, []) == 0
    assert cli.run(lambda argv: True, []) == 0  # a bool is not a status
    assert cli.run(_fail(KeyboardInterrupt()), []) == 130
    assert capsys.readouterr().err == "interrupted\n"
    full = OSError(errno.ENOSPC, "No space left on device", "/data/out/feat.h5")
    assert cli.run(_fail(full), []) == 2
    assert (
        capsys.readouterr().err
        == "error: /data/out/feat.h5: No space left on device: free space on that disk or "
        "write elsewhere (OUTPUT_DIR / the output argument)\n"
    )
    with pytest.raises(OSError):  # other OS errors are not the user's to fix
        cli.run(_fail(OSError(errno.EIO, "I/O error", "/x")), [])


def test_an_unwritable_output_folder_is_refused_before_work(tmp_path, monkeypatch):
    from utils.run import check_writable

    # created later under a writable folder: fine
    check_writable(tmp_path / "new" / "run", "OUTPUT_DIR")
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real(p, mode)
    )
    with pytest.raises(
        InputError, match=rf"OUTPUT_DIR {tmp_path}/new/run cannot be written \({tmp_path} is not"
    ):
        check_writable(tmp_path / "new" / "run", "OUTPUT_DIR")


def test_torchrun_ranks_failing_alike_print_one_line(tmp_path):
    script = tmp_path / "tool.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from utils import cli
        from utils.errors import InputError

        def main(argv):
            raise InputError("DATA.FEATURES /x.h5 does not exist")

        sys.exit(cli.run(main))
    """)
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "0",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if "error: DATA.FEATURES" in line]
    assert lines == ["error: DATA.FEATURES /x.h5 does not exist"], run.stderr[-2000:]
    # no rank printed a traceback (torchrun's own agent still reports the failed children with one
    # of its own)
    assert f'{script}", line' not in run.stderr and "utils/cli.py" not in run.stderr
