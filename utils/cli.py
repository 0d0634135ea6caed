"""The one way every tool ends: `if __name__ == "__main__": sys.exit(run(main))`.

A user mistake (utils.errors.UserError) -> one line `error: <message>` on stderr and exit status 2,
as git or pip answer a mistake; any other exception is a bug and keeps its traceback. `--debug` on
the command line (or MIST_DEBUG=1) shows the traceback of a user error too. Ctrl-C -> exit status
130. Under torchrun every rank that fails says why, but a message is printed once per machine, not
once per rank."""

import argparse
import errno
import hashlib
import os
import sys
import tempfile

from utils.errors import UserError

DEBUG_ENV = "MIST_DEBUG"
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
# operating-system refusals that are the user's to fix (disk, quota, permissions), not bugs
DISK_ERRORS = {
    errno.ENOSPC: "free space on that disk or write elsewhere (OUTPUT_DIR / the output argument)",
    errno.EDQUOT: "free space within your quota or write elsewhere",
    errno.EROFS: "that file system is read-only: write elsewhere",
    errno.EACCES: "check the permissions of that path, or write elsewhere",
}


def run(main, argv=None):
    """Calls main(argv) -> exit status: main's int result, else 0; 2 on a user error, 130 on
    Ctrl-C."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "0") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    try:
        result = main(argv)
    except UserError as err:
        if debug:
            raise
        report(err)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as err:
        if debug or err.errno not in DISK_ERRORS:
            raise
        report(f"{err.filename or 'a file'}: {err.strerror}: {DISK_ERRORS[err.errno]}")
        return EXIT_USER_ERROR
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def one_line(err):
    """-> the exception's message on one line (continuation lines joined)."""
    return " ".join(str(err).split())


def report(err):
    """Prints `error: <message>` on stderr, once per machine when torchrun runs several ranks."""
    message = f"error: {one_line(err)}"
    if _first_to_say(message):
        print(message, file=sys.stderr, flush=True)


def _first_to_say(message):
    """True unless another rank of this torchrun job on this machine printed the same message
    already."""
    job = os.environ.get("TORCHELASTIC_RUN_ID") if "RANK" in os.environ else None
    if job is None:
        return True
    # the local ranks share their parent, torchrun's agent: (run id, agent pid) names this job on
    # this machine
    key = hashlib.sha256(f"{job}\n{os.getppid()}\n{message}".encode()).hexdigest()[:16]
    try:
        os.close(
            os.open(
                os.path.join(tempfile.gettempdir(), f"mist-error-{key}"), os.O_CREAT | os.O_EXCL
            )
        )
    except FileExistsError:
        return False
    except OSError:
        return True
    return True


def tool_parser(doc, cfg_default="", cfg=True):
    """-> the ArgumentParser every tool starts from: description and usage text from the tool's
    docstring and, for a tool driven by a config (cfg), `--cfg FILE` (default `cfg_default`). The
    tool adds its own arguments (add_overrides for trailing `KEY VALUE` config overrides), then
    parses."""
    first, _, rest = (doc or "").strip().partition("\n")
    parser = argparse.ArgumentParser(
        description=first,
        epilog=rest.strip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if cfg:
        parser.add_argument("--cfg", default=str(cfg_default), help="experiment YAML (configs/...)")
    return parser


def add_overrides(parser):
    """The trailing `KEY VALUE ...` config overrides, added last (after the tool's positionals)."""
    parser.add_argument("opts", nargs="*", help="KEY VALUE config overrides")
    return parser
