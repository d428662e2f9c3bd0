"""When a cluster's slabs are on disk: the client journals a slab only once the host that wrote
it has synced the output's filesystem (`Store.sync`), as a task used to do before returning.

A task no longer waits for that itself (issue 26: on one worker, `syncfs` after each of the 1 GiB
volume's 31 tasks was a fifth of the worker's time, the disk writing while the worker waited):
its slab is held as written but not on disk, and the client syncs, on the hosts that wrote them,
every slab finished since the last sync, in the background while the workers go on, at most
every `SYNC_SECONDS` and once more when the last task is done. A slab is journalled after that,
so the journal still names only slabs that are on disk; a killed client redoes the few finished
since the last sync (the same bytes). A host whose workers all left before it synced may have
lost what they wrote there: the run stops, resumable, and the run again redoes those slabs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Future as LocalFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import StreamconvError, WorkerDied
from ..stores.base import Store

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger("streamconv")

#: the shortest time between two syncs' starts (each costs a round trip to every writing worker)
SYNC_SECONDS = 1.0


def current_worker() -> Any:
    """The Dask worker running this task; None outside one."""
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def where() -> str:
    """The address of the Dask worker running this task ("" outside one)."""
    worker = current_worker()
    return str(worker.address) if worker is not None else ""


def host(address: str) -> str:
    """tcp://10.0.0.7:40123 -> tcp://10.0.0.7: the workers of one host share its filesystems."""
    return address.rsplit(":", 1)[0]


async def _sync_store(store: Store) -> None:
    """On a worker, off its event loop (a sync takes seconds; the loop answers the scheduler)."""
    await asyncio.get_running_loop().run_in_executor(None, store.sync)


@dataclass
class HostSyncs:
    """The slabs finished but not yet known to be on disk, and the sync under way."""

    client: Client
    store: Store
    waiting: list[tuple[int, int, str]] = field(default_factory=list)  # (level, index, worker)
    _running: LocalFuture | None = None
    _started: float = 0.0
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "host-sync"))

    def add(self, level: int, index: int, worker: str) -> None:
        self.waiting.append((level, index, worker))

    @property
    def busy(self) -> bool:
        return bool(self.waiting) or self._running is not None

    def synced(self, last: bool) -> list[tuple[int, int]]:
        """The slabs now on disk (to journal); start the next sync when one is due. `last`: no
        task is left to finish, so wait for the syncs and sync what is left now."""
        done: list[tuple[int, int]] = []
        if self._running is not None and (last or self._running.done()):
            done, self._running = self._running.result(), None  # raises WorkerDied
        if self.waiting and (last or (self._running is None and time.monotonic() - self._started >= SYNC_SECONDS)):
            batch, self.waiting, self._started = self.waiting, [], time.monotonic()
            if last:
                done += self._sync(batch)
            else:
                self._running = self._pool.submit(self._sync, batch)
        return done

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _sync(self, batch: list[tuple[int, int, str]]) -> list[tuple[int, int]]:
        writers = sorted({w for _, _, w in batch})
        hosts = self._run(writers)
        if {host(w) for w in writers} - hosts:  # a writer left: another worker of its host will do
            hosts |= self._run(None)
        lost = sorted({host(w) for w in writers} - hosts)
        if lost:
            raise WorkerDied(f"the workers of {', '.join(lost)} left before the slabs they wrote were on disk "
                             "(their host may have lost them)")
        return [(level, index) for level, index, _ in batch]

    def _run(self, workers: list[str] | None) -> set[str]:
        """The hosts of `workers` (None: every worker) that synced."""
        try:
            answers: dict[str, Any] = self.client.run(_sync_store, self.store, workers=workers, on_error="return")
        except Exception as exc:  # a worker named is gone: the scheduler refuses the whole call
            log.debug("sync on %s: %s", workers, exc)
            return set()
        for answer in answers.values():
            if isinstance(answer, StreamconvError):  # the sync itself failed (OutputError): the run's error
                raise answer
        return {host(a) for a, answer in answers.items() if not isinstance(answer, BaseException)}
