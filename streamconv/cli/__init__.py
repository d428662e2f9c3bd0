"""The command line: a thin typer layer over the library API.

Only this package imports typer and rich; the library (`streamconv` outside `cli/`) takes plain
arguments and a progress callback. Commands are registered in the order `--help` lists them:
the one-pass commands (`convert`, `convert_chunks`, `verify`), the viewer (`view`), neuroglancer-scripts' step-by-step
commands (`steps`), then the meshes (`meshes`). Options several commands share are defined
once, in `options`. Help is click's plain formatting (rich's panels wrapped every description
into fragments in an 80-column terminal); docs/reference.md is generated from it.
"""

from __future__ import annotations

import atexit
import importlib
import os
import signal
import sys
import threading
from types import CodeType, FrameType
from typing import Any, NoReturn

import typer

from . import running
from .app import app
from .twins import without_twins

# Importing a command module registers its commands with `app`, and --help lists them in this
# order: keep it.
from . import convert  # noqa: F401  isort: skip
from . import convert_chunks  # noqa: F401  isort: skip
from . import verify  # noqa: F401  isort: skip
from . import view  # noqa: F401  isort: skip
from . import steps  # noqa: F401  isort: skip
from . import meshes  # noqa: F401  isort: skip
from .annotations import annotations_command  # noqa: F401  isort: skip  (not `from . import`: __future__)

__all__ = ["app", "main"]


def _click_exceptions() -> Any:
    """The exceptions of the click typer runs on: its own copy since typer 0.20, click before."""
    try:
        return importlib.import_module("typer._click.exceptions")
    except ImportError:
        return importlib.import_module("click.exceptions")


#: where Ctrl-C waits (see `_ctrl_c`): a part of the code's file name, and its functions (None:
#: all). multiprocessing's finalizers; and a thread's start, where a KeyboardInterrupt leaves a
#: pool with a thread created but never started, which its shutdown then joins: RuntimeError
#: ("internal error"), or a wait for ever.
_DEFERRED = ((f"{os.sep}multiprocessing{os.sep}", None),
             (f"{os.sep}threading.py", {"start"}),
             (f"{os.sep}concurrent{os.sep}futures{os.sep}process.py", {"submit", "_start_executor_manager_thread"}),
             (f"{os.sep}concurrent{os.sep}futures{os.sep}thread.py", {"submit", "_adjust_thread_count"}))


def _deferred(code: CodeType) -> bool:
    """Whether Ctrl-C must wait until `code` has returned (see `_ctrl_c`)."""
    return any(part in code.co_filename and (names is None or code.co_name in names) for part, names in _DEFERRED)


def _ctrl_c(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C as KeyboardInterrupt, but never inside multiprocessing's own code: a semaphore's
    finalizer (run by the garbage collector anywhere) interrupted between unlinking the
    semaphore and telling the resource tracker leaves a traceback ("Exception ignored in:
    <Finalize object, dead>"), loses the Ctrl-C, and has the tracker warn about the semaphore
    at exit. Nor while a thread is being started (`Thread.start`, and the worker pool's
    first `submit`, which starts the thread that manages it): interrupted there, the thread is
    left created but never started, and the pool's shutdown fails to join it. There, the
    signal is sent again 10 ms later, when that code is done (each waits only briefly).

    From Ctrl-C on, an object that a finalizer cannot tear down is not reported: Ctrl-C
    during an import leaves objects half built (nibabel's OrderedSet without its `map`), and
    their `__del__` would print a traceback after our one line."""
    for _ in range(4):  # the finalizer's or the thread start's frames are the innermost
        if frame is None:
            break
        if _deferred(frame.f_code):
            again = threading.Timer(0.01, os.kill, (os.getpid(), signum))
            again.daemon = True
            again.start()
            return
        frame = frame.f_back
    sys.unraisablehook = _unreported
    raise KeyboardInterrupt


def _unreported(unraisable: Any) -> None:
    """sys.unraisablehook once the user has interrupted the command (see `_ctrl_c`)."""


def main() -> None:
    """The `streamconv` console script: a usage error is one line and exit code 2, as
    docs/cli.md promises (typer would draw a box of several lines), Ctrl-C a line and 130."""
    errors = _click_exceptions()
    signal.signal(signal.SIGINT, _ctrl_c)
    args = sys.argv[1:]
    try:
        try:
            code = app(args=args, standalone_mode=False)
        except errors.NoSuchOption as exc:  # perhaps the --no- twin of an on-only flag (twins.py)
            fixed = without_twins(args, exc.ctx.command) if exc.ctx else None
            if fixed is None:
                raise
            code = app(args=fixed, standalone_mode=False)
    except errors.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
        code = 2
    except errors.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "streamconv"
        message = " ".join(exc.format_message().split())
        typer.echo(f"streamconv: error: {message} (see {command} --help)", err=True)
        code = 2
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    # One line for every way Ctrl-C ends the command, unless a run has said already how to
    # resume: typer's own silent exit 130, its Abort, or KeyboardInterrupt before a run began.
    if code == 130 and not running.said_interrupted:
        typer.echo("streamconv: interrupted", err=True)
    _exit(code if isinstance(code, int) else 0)


def _exit(code: int) -> NoReturn:
    """Exit without the interpreter's teardown, which frees every object of numpy, nibabel,
    typer and the engine one by one (a tenth of a short run, docs/benchmarks.md), to free memory the
    kernel takes back at once anyway. What exit must still do is done here, in the order the
    interpreter does it: wait for threads that are not daemons, run the `atexit` handlers
    (multiprocessing's and logging's among them), flush the standard streams."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what the interpreter would report is lost anyway
            pass
    os._exit(code)
