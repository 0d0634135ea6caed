"""A tool's command line, run in-process as `python tools/<name>.py ARGS` runs it.

tools/ is not a package: the procedures are tested through engine/, and only the tests of a tool's
own command line (its arguments, its exit status, its one-line errors) run the tool, through these
two."""

import runpy
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "tools"
_tools = {}


def tool_namespace(name):
    """-> the names tools/<name>.py defines (its main, its parse_args), loaded from its file
    once."""
    if name not in _tools:
        _tools[name] = runpy.run_path(str(TOOLS / f"{name}.py"), run_name=f"mist_tool_{name}")
    return _tools[name]


def tool_main(name):
    """-> main(argv) of tools/<name>.py."""
    return tool_namespace(name)["main"]


def run_tool(name, argv):
    """-> what tools/<name>.py's main returns for the command line `argv` (its exceptions
    propagate)."""
    return tool_main(name)(list(argv))
