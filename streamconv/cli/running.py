"""What every command does around its library call, the same way in each: errors become one
line on stderr and an exit code (docs/cli.md), --verbose logs the plan, progress bars appear on
a terminal, and a conversion ends with one summary line."""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Optional

import typer

from ..commands.convert import Report
from ..errors import StreamconvError, one_line
from ..layout.statsfile import describe
from ..units import format_size
from .options import RunOptions
from .progress import ProgressFactory, scale_bars, wanted

#: whether this process has said why it stops with exit code 130: typer turns a Ctrl-C that
#: comes outside `reported_errors` (while it parses the command line) into a silent exit 130,
#: which `main` then explains
said_interrupted = False


def _say_interrupted(line: str) -> None:
    global said_interrupted
    said_interrupted = True
    typer.echo(line, err=True)


_FILE_ERRORS = (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR)


@contextmanager
def reported_errors(debug: bool) -> Iterator[None]:
    """Turn errors into one line on stderr and an exit code; a traceback only with --debug.

    typer's own exceptions (a bad parameter, an exit) go through: typer reports them, a usage
    error with exit code 2. (The library never raises them: it does not import typer.)
    """
    try:
        yield
    except (typer.BadParameter, typer.Exit, typer.Abort):
        raise
    except StreamconvError as exc:
        if debug:
            raise
        if exc.exit_code == 130:  # Interrupted: stopped at a safe point, resumable
            _say_interrupted(f"streamconv: error: {exc}")
        else:
            typer.echo(f"streamconv: error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        if debug:
            raise
        _say_interrupted("streamconv: interrupted")
        raise typer.Exit(130) from None
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, OSError) and exc.errno in _FILE_ERRORS and exc.filename is not None:
            # a file a reader found missing or unreadable past its own checks: still the
            # user's file, named on one line, not an internal error
            typer.echo(f"streamconv: error: {exc.filename}: {exc.strerror}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"streamconv: internal error: {one_line(exc)} (rerun with --debug for details)",
                   err=True)
        raise typer.Exit(1) from None


def start_logging(run: RunOptions) -> None:
    """The library's log on stderr, bare messages: its warnings, and with --verbose the plan."""
    logging.basicConfig(format="%(message)s", level=logging.INFO if run.verbose else logging.WARNING,
                        stream=sys.stderr)


@contextmanager
def engine_run(run: RunOptions) -> Iterator[Optional[ProgressFactory]]:
    """Around a call that runs the engine: the log level of --verbose, reported errors, and the
    progress bars (the `progress` argument of the call; None when bars are not wanted)."""
    start_logging(run)
    with reported_errors(run.debug), scale_bars(wanted(run.quiet)) as progress:
        yield progress


def summary(report: Report, run: RunOptions) -> None:
    """The line a conversion ends with (not with --quiet): what it wrote, how fast, and the
    peak memory of the process tree, to compare with --memory."""
    if run.quiet:
        return
    if report.complete:
        typer.echo(f"{report.output}: already complete ({len(report.scales)} scales); nothing to do",
                   err=True)
        return
    done = report.skipped_blocks + report.replayed_blocks  # blocks (slab tiles) in a tiled plan
    unit = ("slab tile" if report.plan.tiled else "slab") + (" was" if done == 1 else "s were")
    resumed = f" (resumed: {done} {unit} done, {report.replayed_blocks} read back)" if report.resumed else ""
    rate = report.bytes_written / max(report.seconds, 1e-9) / (1 << 20)
    labels = "" if report.annotated is None else report.annotated.describe()
    files = (f"{report.chunks_written} chunks in {report.shard_files} shard files" if report.shard_files
             else f"{report.chunks_written} files")
    typer.echo(f"{report.output}: {len(report.scales)} scales, {files}, "
               f"{format_size(report.bytes_written)}{labels} in {report.seconds:.1f} s ({rate:.1f} MiB/s), "
               f"peak memory {format_size(report.peak_memory)}{resumed}{describe(report.stats)}", err=True)
