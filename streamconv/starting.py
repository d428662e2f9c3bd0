"""Ctrl-C while the command line starts: importing numpy, nibabel and the engine takes about
half a second, and Python's default would print a traceback. The package installs this first
when run as the `streamconv` console script; `main` restores Python's default before the
command runs. (Importing this module imports nothing else of the package.)"""

from __future__ import annotations

import os
import signal
import sys


def _interrupted(*_: object) -> None:
    sys.stderr.write("streamconv: interrupted\n")
    os._exit(130)


def catch_ctrl_c() -> None:
    signal.signal(signal.SIGINT, _interrupted)
