"""The peak memory of the process tree during a run, for the summary line.

`--memory` bounds the whole tree (the main process, the fork server, the workers), so the figure
a user compares it with is the tree's, not one process's: `getrusage` gives only the largest
single child. A thread samples the tree every `INTERVAL` seconds and keeps the largest sum of
PSS (proportional set size: the shared slab buffers counted once, as the budget counts them), or
of RSS where PSS cannot be read.

A sample must cost little next to the run it measures: psutil's `children` reads the status of
every process on the machine (docs/benchmarks.md: a tenth of a run's CPU), so the tree is
found through `/proc/PID/task/TID/children` (a few small reads),
and the PSS is read from `smaps_rollup` alone. Reading PSS walks the page tables of each
process (a worker that maps 512 MiB of input: 3.5 ms; 5 ms a sample of a two-worker run,
docs/benchmarks.md), so the thread also waits at least `SPACING` times what its last sample
cost: it takes at most ~1/SPACING of a core. Between, it reads PSS only where the tree's
memory peaks: when the RSS sum (from `statm`, microseconds a process) is at its highest so
far, and every `EVERY`-th sample in any case (a process that ends leaves its share of the
shared pages to the others' PSS, not to their RSS). Like any sampling, it may miss a peak
shorter than the time between samples; the run's last sample reads PSS.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

INTERVAL = 0.1
SPACING = 40
EVERY = 5
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class PeakMemory:
    def __init__(self) -> None:
        self.bytes = 0
        self._stop = threading.Event()
        self._me = psutil.Process()
        self._rss = 0  # the highest RSS sum seen
        self._samples = 0

    def sample(self, pss: bool = True) -> None:
        """Read the tree's PSS sum (`pss`), or only when its RSS sum says it may have grown."""
        tree = _tree(self._me)
        self._samples += 1
        if not pss and self._samples % EVERY:
            rss = sum(_rss(process) for process in tree)
            if rss < self._rss:
                return
            self._rss = rss
        total = 0
        for process in tree:
            try:
                total += _pss(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, ProcessLookupError):
                continue  # a worker that just ended
        self.bytes = max(self.bytes, total)

    def _run(self) -> None:
        while True:
            started = time.thread_time()
            self.sample(pss=False)
            if self._stop.wait(max(INTERVAL, SPACING * (time.thread_time() - started))):
                return


def _tree(root: psutil.Process) -> list[psutil.Process]:
    """`root` and its descendants: from the kernel's lists of each thread's children where it
    keeps them (Linux with CONFIG_PROC_CHILDREN), else from psutil."""
    found, todo = [root], [root.pid]
    try:
        while todo:
            pid = todo.pop()
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    children = [int(c) for c in f.read().split()]
                todo += children
                found += [psutil.Process(c) for c in children]
    except FileNotFoundError:
        if pid == root.pid:  # no such lists here
            return [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, ProcessLookupError):
        pass  # a process that just ended: the next sample sees the rest
    return found


def _rss(process: psutil.Process) -> int:
    """Resident bytes from `statm` (0 for a process that just ended)."""
    try:
        with open(f"/proc/{process.pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _pss(process: psutil.Process) -> int:
    try:
        with open(f"/proc/{process.pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        if not psutil.pid_exists(process.pid):
            raise psutil.NoSuchProcess(process.pid) from None
    except PermissionError:
        pass
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
