"""How much memory a task may take on each worker of a Dask cluster, and how tasks are placed.

Two kinds of cluster. Workers started with `--resources MEMORY=<bytes>` declare what a task
may take: tasks declare their need as that resource, and Dask runs no more at once than fit.
A stock cluster declares nothing, but each worker has Dask's memory limit: Dask pauses a worker
above a fraction of it (`distributed.worker.memory.pause`, 0.8 by default) and starts no task
there until its memory falls. So a stock worker's room for one task is that threshold, less
what the worker already uses, shared by its threads (each may run a task at once). A worker
with no room (Dask has paused it, or its limit is below what the idle worker uses) gets no task:
a task restricted to paused workers would wait forever.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..units import format_size

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger("streamconv")

RESOURCE = "MEMORY"


def _memory_state(dask_worker: Any) -> tuple[float, int]:
    """On a worker: Dask's pause fraction (1 when it never pauses) and the process's memory now."""
    import psutil

    fraction = dask_worker.memory_manager.memory_pause_fraction
    return float(fraction) if fraction else 1.0, psutil.Process().memory_info().rss


def _host_available(dask_worker: Any) -> int:
    import psutil

    return int(psutil.virtual_memory().available)


@dataclass(frozen=True)
class Room:
    """One worker: the bytes one task may take there, and why (for the message of a refusal)."""

    address: str
    bytes: int
    why: str


def _declared(address: str, worker: dict[str, Any]) -> Room:
    """A worker that declares `MEMORY`: that is its room, unless Dask has paused it (an idle
    worker over its pause threshold, whose memory does not come back: a task would wait)."""
    memory = int(worker.get("resources", {}).get(RESOURCE, 0))
    if worker.get("status") == "paused":
        return Room(address, 0, f"declares {RESOURCE}={memory}, but Dask has paused it (memory limit "
                                f"{format_size(worker.get('memory_limit') or 0)}, uses "
                                f"{format_size(worker.get('metrics', {}).get('memory', 0))})")
    return Room(address, memory, f"declares {RESOURCE}={memory}")


@dataclass(frozen=True)
class Rooms:
    """Every worker's room, and whether it was declared (`MEMORY`) or read from Dask's limits."""

    declared: bool
    workers: tuple[Room, ...]

    @classmethod
    def of(cls, client: Client) -> Rooms:
        info = client.scheduler_info()
        workers = info["workers"]
        if any(RESOURCE in w.get("resources", {}) for w in workers.values()):
            return cls(True, tuple(_declared(a, w) for a, w in workers.items()))
        states = client.run(_memory_state, on_error="return") if workers else {}
        unlimited = [a for a, w in workers.items() if not w.get("memory_limit")]
        hosts = client.run(_host_available, workers=unlimited, on_error="return") if unlimited else {}
        rooms = []
        for address, w in workers.items():
            state = states.get(address)
            if not isinstance(state, tuple):  # the worker left, or failed to answer: no task there
                rooms.append(Room(address, 0, f"did not answer ({state})"))
                continue
            fraction, used = state
            limit = w.get("memory_limit") or hosts.get(address)
            if not isinstance(limit, int | float):
                rooms.append(Room(address, 0, "has no memory limit and did not say its host's memory"))
                continue
            threads = max(1, int(w.get("nthreads", 1)))
            room = max(0, int(limit * fraction) - used) // threads
            rooms.append(Room(address, room, f"has a memory limit of {format_size(limit)}, pauses at "
                                             f"{fraction:.0%} of it, already uses {format_size(used)}"
                                             + (f", {threads} threads" if threads > 1 else "")
                                             + ("" if w.get("status") != "paused" else " (paused)")))
        return cls(False, tuple(rooms))

    def best(self) -> Room | None:
        return max(self.workers, key=lambda r: r.bytes, default=None)

    def fitting(self, memory: int) -> list[str]:
        return [r.address for r in self.workers if r.bytes >= memory]

    def placement(self, memory: int) -> dict[str, Any]:
        """`client.submit`'s arguments for a task of `memory` bytes: the resource it declares,
        or on a stock cluster the workers with room for it (none, when all have)."""
        if self.declared:
            return {"resources": {RESOURCE: memory}}
        fitting = self.fitting(memory)
        if len(fitting) == len(self.workers):
            return {}  # workers that join later take tasks too
        return {"workers": fitting, "allow_other_workers": False}

    def describe(self) -> str:
        return "; ".join(f"{r.address} {r.why}: room for {format_size(r.bytes)}" for r in self.workers)


def worker_budget(scheduler: str, budget: int) -> tuple[int, str]:
    """The budget to plan one worker's slabs from: `budget` (--memory), at most the room of the
    best worker of the cluster at `scheduler`; and whose room it is, for a refusal. A cluster we
    start (`local`) declares `budget` itself."""
    if scheduler == "local":
        return budget, f"--memory {format_size(budget)}"
    with open_client(scheduler) as client:
        for waited in itertools.count():
            if client.scheduler_info()["workers"]:
                break
            if waited % 10 == 0:  # a batch system may still be starting them
                log.warning("waiting for a first worker to join %s", scheduler)
            time.sleep(1)  # not wait_for_workers: it waits for a *running* one, never for a paused one
        rooms = Rooms.of(client)
    best = rooms.best()
    # a tenth kept back: the idle worker's memory grows a little by the time the tasks come
    if best is None:
        return budget, f"--memory {format_size(budget)}"
    room = best.bytes if rooms.declared else best.bytes * 9 // 10
    if room >= budget:
        return budget, f"--memory {format_size(budget)}"
    return room, (f"the room for a task on the best worker of {scheduler} ({best.address} {best.why}: "
                  f"{format_size(room)} with a tenth kept back)")


def open_client(scheduler: str) -> Client:
    """A client of the scheduler at `scheduler` (tcp://host:port), or a one-line refusal."""
    try:
        from distributed import Client
    except ImportError as exc:  # dask is an optional extra
        raise UsageError(f"--scheduler needs Dask ({exc}): pip install 'streamconv[dask]'") from None
    try:
        return Client(scheduler, timeout=30)
    except (OSError, ValueError) as exc:  # unreachable (TimeoutError is an OSError), or not an address
        raise UsageError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
