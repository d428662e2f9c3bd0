"""The command line: a thin typer layer over the library API.

Only this package imports typer and rich; the library (`streamconv` outside `cli/`) takes plain
arguments and a progress callback. Commands are registered in the order `--help` lists them:
the one-pass commands (`convert`), the viewer (`view`), neuroglancer-scripts' step-by-step
commands (`steps`), then the meshes (`meshes`). Options several commands share are defined
once, in `options`. Help is click's plain formatting (rich's panels wrapped every description
into fragments in an 80-column terminal); docs/reference.md is generated from it.
"""

from __future__ import annotations

import importlib
import signal
import sys
from typing import Any

import typer

from . import running
from .app import app

# Importing a command module registers its commands with `app`, and --help lists them in this
# order: keep it.
from . import convert  # noqa: F401  isort: skip
from . import view  # noqa: F401  isort: skip
from . import steps  # noqa: F401  isort: skip
from . import meshes  # noqa: F401  isort: skip

__all__ = ["app", "main"]


def _click_exceptions() -> Any:
    """The exceptions of the click typer runs on: its own copy since typer 0.20, click before."""
    try:
        return importlib.import_module("typer._click.exceptions")
    except ImportError:
        return importlib.import_module("click.exceptions")


def main() -> None:
    """The `streamconv` console script: a usage error is one line and exit code 2, as
    docs/cli.md promises (typer would draw a box of several lines), Ctrl-C a line and 130."""
    errors = _click_exceptions()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = app(standalone_mode=False)
    except errors.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
        code = 2
    except errors.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "streamconv"
        message = " ".join(exc.format_message().split())
        typer.echo(f"streamconv: error: {message} (see {command} --help)", err=True)
        code = 2
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("streamconv: interrupted", err=True)
        code = 130
    if code == 130 and not running.said_interrupted:  # typer's own exit on Ctrl-C says nothing
        typer.echo("streamconv: interrupted", err=True)
    sys.exit(code if isinstance(code, int) else 0)
