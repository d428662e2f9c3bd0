"""Progress on a terminal: one rich bar per scale with chunks done, throughput and ETA.

This lives in the command line package because it draws with rich: the library only calls the
`ProgressFn` it is given (`streamconv.engine.pipeline`) and never imports rich or typer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Optional

from ..engine.pipeline import ProgressFn
from ..format.geometry import Scale

# What the library's `progress` argument takes: given the scales, the callback for their chunks.
ProgressFactory = Callable[[list[Scale]], ProgressFn]


def wanted(quiet: bool) -> bool:
    """Bars only for a person at a terminal: not with --quiet, not in CI, not into a pipe."""
    return not quiet and sys.stderr.isatty() and not os.environ.get("CI")


@contextmanager
def scale_bars(enabled: bool) -> Iterator[Optional[ProgressFactory]]:
    """A factory for the `progress` argument of `convert`, or None when bars are not wanted."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("chunks"), TextColumn("{task.fields[rate]}"), TimeRemainingColumn())

    def start(scales: list[Scale]) -> ProgressFn:
        tasks = [bars.add_task(f"scale {k} {s.key}", total=s.num_chunks, rate="", nbytes=0)
                 for k, s in enumerate(scales)]

        def advance(level: int, chunks: int, nbytes: int) -> None:
            task = bars.tasks[tasks[level]]
            total = task.fields["nbytes"] + nbytes
            rate = f"{total / task.elapsed / 1e6:.0f} MB/s" if task.elapsed else ""
            bars.update(tasks[level], advance=chunks, nbytes=total, rate=rate)

        return advance

    with bars:
        yield start
