"""The peak memory of the process tree during a run, for the summary line.

`--memory` bounds the whole tree (the main process, the fork server, the workers), so the figure
a user compares it with is the tree's, not one process's: `getrusage` gives only the largest
single child. A thread samples the tree every `INTERVAL` seconds and keeps the largest sum of
PSS (proportional set size: the shared slab buffers counted once, as the budget counts them), or
of RSS where PSS cannot be read.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

INTERVAL = 0.1


class PeakMemory:
    def __init__(self) -> None:
        self.bytes = 0
        self._stop = threading.Event()
        self._me = psutil.Process()

    def sample(self) -> None:
        total = 0
        for process in [self._me, *self._me.children(recursive=True)]:
            try:
                total += _pss(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue  # a worker that just ended
        self.bytes = max(self.bytes, total)

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(INTERVAL):
                return


def _pss(process: psutil.Process) -> int:
    try:
        return int(process.memory_full_info().pss)
    except (AttributeError, psutil.AccessDenied):
        return int(process.memory_info().rss)


@contextmanager
def peak_memory() -> Iterator[PeakMemory]:
    """Sample the tree while the block runs; `.bytes` is the peak so far (and at the end)."""
    peak = PeakMemory()
    thread = threading.Thread(target=peak._run, name="peak-memory", daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        peak._stop.set()
        thread.join()
        peak.sample()
