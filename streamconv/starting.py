"""Ctrl-C while the command line starts: importing numpy, nibabel, typer and the engine takes
about half a second, and Python's default would print a traceback. The package installs this
first thing when it is imported to run as a command (the `streamconv` script, or `python -m
streamconv`); `cli.main` restores Python's default once the command line is loaded, and turns
Ctrl-C into one line from there. (Importing this module imports nothing else of the package.)

What no code of ours can cover is the interpreter's own start, before the package is imported:
about 0.05-0.2 s here (`site` and the `.pth` files of the environment; `python -X importtime`).
"""

from __future__ import annotations

import os
import signal
import sys


def _interrupted(*_: object) -> None:
    sys.stderr.write("streamconv: interrupted\n")
    os._exit(130)  # nothing is written yet; the workers die with us (engine/lifeline.py)


def running_as_command() -> bool:
    """Whether this interpreter was started to run the command line: the console script
    (its path is `argv[0]`), or `python -m streamconv` (while the package is imported for it,
    `argv[0]` is `-m`; the interpreter's own arguments say which module)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 == "-m":
        args = sys.orig_argv
        for arg, after in zip(args, [*args[1:], ""]):
            if arg.startswith("-m"):  # `-m streamconv` or `-mstreamconv`
                return (arg[2:] or after) == "streamconv"
        return False
    return os.path.basename(argv0) == "streamconv"


def catch_ctrl_c() -> None:
    signal.signal(signal.SIGINT, _interrupted)
