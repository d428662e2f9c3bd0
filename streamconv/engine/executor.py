"""The executor seam: where tasks run. A process pool by default; inline for debugging and tests.

Both hand back concurrent.futures Futures, so the pipeline drives either (and the Dask path's
`ClusterExecutor`, whose futures quack the same) with one loop; `bounded` runs a stream of
calls a few ahead. An executor says whether its tasks run in
the calling process (`in_process`): there a source that must be read in order needs no thread
of its own.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, Protocol

from ..errors import Interrupted
from ..starting import start_fork_server
from . import lifeline, worklog


class TaskExecutor(Protocol):
    """What the engine needs of an executor.

    To drop the tasks queued on it when a run stops, call `shutdown(wait=False,
    cancel_futures=True)`, never `Future.cancel()` from the caller's thread: before Python 3.12
    a process pool's own thread, failing the queued futures of a pool whose worker died, raised
    InvalidStateError on one the caller had just cancelled (CPython gh-107219). That thread then
    died half-way: a traceback on stderr, and workers left running that a process exit waits for.
    Shutting down lets the pool's thread cancel them itself, one thread after the other."""

    in_process: bool  # tasks run in the calling process, one at a time

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future: ...

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...


class InlineExecutor(Executor):
    """Runs each task at submit time in the calling process: deterministic, easy to debug."""

    in_process = True

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller through the future, like a pool
            future.set_exception(exc)
        return future


class WorkerPool(ProcessPoolExecutor):
    """Worker processes: tasks and their arguments cross a process boundary (picklable)."""

    in_process = False


@contextmanager
def executor(workers: int) -> Iterator[TaskExecutor]:
    """`workers` processes forked from a server that has only the task code loaded (0: inline).

    Workers start lazily, on submit, and a started worker would normally re-run the caller's
    `__main__` script; a user's script without an `if __name__ == "__main__"` guard would then
    convert again in every worker. While the pool is in use `__main__` is hidden from worker
    start-up: tasks never need it.
    """
    if workers == 0:
        yield InlineExecutor()
        return
    start_fork_server()  # usually started already, at the command line's start (starting.py)
    context = multiprocessing.get_context("forkserver")
    pool = WorkerPool(max_workers=workers, mp_context=context, initializer=_start_worker,
                      initargs=(os.getpid(),))
    try:
        with _main_hidden():
            yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _start_worker(main_pid: int) -> None:
    """A worker dies with its parent (`lifeline`) and ignores Ctrl-C: Ctrl-C reaches the whole
    process group; the main process alone decides how to stop, and lets running tasks finish.
    (SIGTERM keeps its default: the pool stops workers with it.) Its warnings go back to the
    main process with its read tasks' results (`worklog`)."""
    lifeline.die_with_parent(main_pid)
    worklog.hold()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def _main_hidden() -> Iterator[None]:
    main = sys.modules.get("__main__")
    saved: dict[str, Any] = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main and k in main.__dict__}
    if main is not None:
        main.__dict__.pop("__file__", None)
        main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        if main is not None:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)


def bounded(pool: TaskExecutor, ahead: int, should_stop: Callable[[], bool],
             calls: Iterable[tuple[Any, ...]], what: str = "meshing") -> Iterator[Any]:
    """Results of the calls (function, arguments...), at most `ahead` in flight; `Interrupted`
    (`what` was) once `should_stop` says so, the queued calls dropped."""
    pending: set[Future[Any]] = set()
    calls = iter(calls)
    exhausted = False
    try:
        while pending or not exhausted:
            while not exhausted and len(pending) < ahead:
                call = next(calls, None)
                if call is None:
                    exhausted = True
                    break
                pending.add(pool.submit(*call))
            if not pending:
                break
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            if should_stop():
                raise Interrupted(f"{what} interrupted")
            for future in done:
                yield future.result()
    finally:
        if pending:  # stopped before the end: the run stops
            pool.shutdown(wait=False, cancel_futures=True)
