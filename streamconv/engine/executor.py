"""The executor seam: where tasks run. A process pool by default; inline for debugging and tests.

Both hand back concurrent.futures Futures, so the pipeline drives either (and a Dask client,
whose futures quack the same, later) with one loop.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, Callable


class InlineExecutor(Executor):
    """Runs each task at submit time in the calling process: deterministic, easy to debug."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller through the future, like a pool
            future.set_exception(exc)
        return future


def make_executor(workers: int) -> Executor:
    """`workers` processes, forked from a small server that has only the task code loaded."""
    if workers == 0:
        return InlineExecutor()
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["streamconv.engine.tasks"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)
