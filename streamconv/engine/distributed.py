"""Running a job on a Dask cluster: one task per block of each scale (a slab, or one tile of a
slab when the plan cuts slabs across the section: `SlabGrid`), and nothing shared. Below,
"slab" means block: a tile's task is a slab's task on a smaller box.

Workers may be on other hosts, so no task touches the client's memory or another task's: a
task fills a slab in its own memory (full resolution: from the source, whose path every worker
sees; a coarser scale: from the *pieces* its finer slabs left in the output store), writes the
slab's chunks through the `Store` and the job's chunk format, downsamples it, and leaves its
piece of the next scale in the store (`.streamconv/.../pieces/`, raw bytes: lossless, so a
coarser scale is the same bytes as the local engine's, jpeg included) and hands back three
numbers. The coarser slab's task is given the finer tasks' futures, so Dask itself runs it once
they are done: the client schedules nothing, it only journals each slab once its future completes
and the host that wrote it has synced it (`hostsync.py`).

A task writes the same bytes however often it runs (chunks and pieces appear whole under their
name), so Dask's retries after a lost worker and a rerun after a killed client are harmless.
Each task declares the memory it needs as the worker resource `MEMORY`, so a worker started
with `--resources MEMORY=<bytes>` never runs more slabs at once than fit; on a stock cluster
the tasks go to the workers with room for them under Dask's own memory limit (`rooms.py`).

A tiled plan of a source that decodes whole sections (PNG, JPEG, WebP) makes one task of the
tiles of each slab of scale 0 (`slabtask.run_decoded`), so that each section is decoded once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future as LocalFuture
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, NamedTuple, TypeVar

from distributed import Client, Future, LocalCluster, wait
from distributed.scheduler import KilledWorker

from ..errors import DataError, Interrupted, UsageError, WorkerDied
from ..kernels.stats import sampling
from ..layout.dataset import Dataset
from ..layout.sink import Finish, run_finish
from ..layout.statsfile import VolumeStats
from ..sources import Source
from ..sources.base import MemoryOrder
from ..stores.base import Store
from ..units import format_size
from .budget import task_memory
from .buffers import SpareRoom
from .hostsync import HostSyncs
from .job import Job
from .journal import state_key
from .output import output_sink
from .pipeline import Hooks, Totals
from .rooms import RESOURCE, Rooms, open_client
from .slabgrid import SlabGrid
from .slabtask import DecodedSlab, Piece, SlabDone, SlabTask, run_decoded, run_slab
from .tasks import downsampled

log = logging.getLogger("streamconv")
T = TypeVar("T")


@contextmanager
def connect(scheduler: str, workers: int, budget: int) -> Iterator[Client]:
    """A client of the cluster at `scheduler` (tcp://host:port), or of a LocalCluster of
    `workers` processes (one thread each, `budget` of MEMORY each) for `local`."""
    if scheduler != "local":
        with open_client(scheduler) as client:
            yield client
        return
    # Our own cluster's start-up and shutdown chatter (INFO, Dask's default) is not the user's news.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    with LocalCluster(n_workers=max(workers, 1), threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=logging.WARNING,
                      # no dashboard, but the scheduler's HTTP server (health, metrics) still runs:
                      # not on 0.0.0.0:8787, which another cluster on this machine may hold
                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                      resources={RESOURCE: budget}) as cluster:
        with Client(cluster) as client:
            yield client


class ClusterExecutor:
    """The executor seam (`engine/executor.py`) over a Dask client, for the work that follows
    the pyramid: names and meshes, whose tasks read scale 0 back from the output store and
    write their pieces there, like the slab tasks. Each task declares `memory` of `MEMORY`
    (one worker's budget, from which the mesh blocks were sized), and its result comes back
    through a concurrent.futures Future, so the callers' loops drive a cluster as they drive
    the local pool."""

    in_process = False

    def __init__(self, client: Client, budget: int):
        self.client, self.budget, self.memory = client, budget, budget
        self.rooms = Rooms(True, ())  # until fit_tasks reads the cluster
        self._running: set[Future] = set()  # a Dask future dropped is a task forgotten
        self._lock = threading.Lock()

    def fit_tasks(self) -> tuple[int, int]:
        """Size the tasks to come to the cluster as it stands now, and say (workers, their
        memory in all): each task takes (`self.memory`) the most room a worker has
        (`engine/rooms.py`), at most `--memory`, so that every task fits some worker (a task no
        worker can hold would wait forever)."""
        self.rooms = Rooms.of(self.client)
        best = self.rooms.best()
        self.memory = min(self.budget, best.bytes if best else 0) or self.budget
        workers = max(1, len(self.rooms.fitting(self.memory)))
        return workers, workers * self.memory

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> LocalFuture:
        local: LocalFuture = LocalFuture()
        remote = self.client.submit(fn, *args, **kwargs, pure=False, **self.rooms.placement(self.memory))
        with self._lock:
            self._running.add(remote)

        def settle(done: Future) -> None:  # on Dask's thread
            with self._lock:
                self._running.discard(done)
            if not local.set_running_or_notify_cancel():  # cancelled: atomic, unlike a test of cancelled()
                return
            try:
                local.set_result(done.result())
            except BaseException as exc:  # the task's error, handed on as a local pool does
                local.set_exception(exc)

        local.add_done_callback(lambda f: remote.cancel() if f.cancelled() else None)
        remote.add_done_callback(settle)
        return local

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            running, self._running = list(self._running), set()
        if cancel_futures and running:
            self.client.cancel(running)


class _Submitted(NamedTuple):
    """The blocks (level, index) a task writes; `many`: it returns a list of their results
    (`run_decoded`), else the one block's (`run_slab`)."""

    blocks: list[tuple[int, int]]
    many: bool


class DaskRun:
    """The client's side: submit every slab's task with its finer tasks as dependencies, then
    journal each slab once its future completes and its host synced it. Same inputs and hooks
    as `Pipeline`."""

    def __init__(self, job: Job, source: Source, store: Store, client: Client,
                 hooks: Hooks = Hooks(), done: frozenset[tuple[int, int]] = frozenset()) -> None:
        self.job, self.source, self.store, self.client, self.hooks = job, source, store, client, hooks
        self.grid = SlabGrid(job.scales, job.plan)
        #: per scale, block -> the blocks of the finer scale that downsample into it
        self.feeders: list[dict[int, list[int]]] = [{} for _ in job.scales]
        for level in range(1, len(job.scales)):
            for i in range(self.grid.count(level - 1)):
                self.feeders[level].setdefault(self.grid.target(level - 1, i), []).append(i)
        self.sink, self.completion, spool = output_sink(job, store)
        self.volume = Dataset(store, job.info, job.scales, spool=spool)
        self._finishing: set[Future] = set()  # shards being assembled
        self.done = done | {(level, i) for level in range(job.first) for i in range(self.grid.count(level))}
        self.prefix = f"{state_key(job.step)}/pieces"
        self.rooms = Rooms(True, ())  # each worker's room, read by _check_workers
        self.totals = Totals(stats=VolumeStats(job.scales, source.dtype) if job.collect_stats else None)
        if self.totals.stats is not None:
            self.totals.stats.resume(store, state_key(job.step), self.done)
        self.memory = [task_memory(job.plan, job.scales, k, source.num_channels * source.dtype.itemsize)
                       for k in range(len(job.scales))]
        self.spare = SpareRoom(job.plan.budget, max(self.memory))  # what a worker may keep between tasks
        #: the input file as the slab tasks map it, if they do (`_check_input`)
        self.mapped = source.mapped(0, source.shape[source.stream_axis])
        #: slabs written, journalled once their host synced them (a store that needs no sync: at once)
        self.syncs = HostSyncs(client, store) if store.can.sync else None

    def run(self) -> Totals:
        self._check_workers()
        futures: dict[Future, _Submitted] = {}
        try:
            self._finish(self.completion.start(self.done))
            self._submit_all(futures)
            pending = set(futures)
            while pending or self._finishing or (self.syncs and self.syncs.busy):
                self._check_stop()
                try:
                    synced = self.syncs.synced(last=not pending) if self.syncs else []
                except WorkerDied:
                    self._check_input()
                    raise
                for slab in synced:
                    self._journal(*slab)
                if not (pending or self._finishing):
                    continue
                try:
                    finished = wait(pending | self._finishing, timeout=0.25, return_when="FIRST_COMPLETED").done
                except TimeoutError:  # nothing finished yet: look at the stop flag and the input again
                    self._check_input()
                    continue
                for future in finished:
                    if future in self._finishing:
                        self._finishing.discard(future)
                        self._raise(future)
                        continue
                    pending.discard(future)
                    self._finished(future, futures[future])
            self._remove_pieces()
            self.completion.end()
            return self.totals
        finally:
            self.client.cancel(list(futures) + list(self._finishing))
            if self.syncs:
                self.syncs.close()

    def _finish(self, tasks: list[Finish]) -> None:
        """Shards whose slabs are all journalled: assembled by a task of their own."""
        for task in tasks:
            self._finishing.add(self.client.submit(run_finish, task, pure=False))

    def _submit_all(self, futures: dict[Future, _Submitted]) -> None:
        """Every block that has work, finest scale first; a coarser block after the finer blocks
        whose pieces it reads."""
        run = self._to_run()
        by_slab: dict[tuple[int, int], Future] = {}
        for level in range(len(self.job.scales)):
            for index in range(self.grid.count(level)):
                self.totals.skipped_blocks += (level, index) not in run and (level, index) in self.done
                self.totals.replayed_blocks += (level, index) in run and (level, index) in self.done
            for blocks, many in self._tasks_of(level, run):
                feeders = [f for i in blocks for f in self._feeders(level, i)]
                after = list(dict.fromkeys(by_slab[f] for f in feeders if f in by_slab))
                future = self.client.submit(*self._work(level, blocks, many), self.store, *after,
                                            **self.rooms.placement(self.memory[level]), pure=False,
                                            key=f"streamconv-slab-{level}-{blocks[0]}-{id(self)}")
                by_slab.update(((level, i), future) for i in blocks)
                futures[future] = _Submitted([(level, i) for i in blocks], many)

    def _work(self, level: int, blocks: list[int], many: bool) -> tuple[Callable[..., Any], object]:
        """A task's function and what it is sent: one block's `SlabTask`, or the tiles of a slab
        whose sections it decodes once (`DecodedSlab`)."""
        tasks = [self._task(level, i, self._feeders(level, i)) for i in blocks]
        if not many:
            return run_slab, tasks[0]
        window = self.source.window(*self.grid.planes(level, blocks[0]))
        return run_decoded, DecodedSlab(window, self.grid.axis, tuple(replace(t, source=None) for t in tasks))

    def _tasks_of(self, level: int, run: set[tuple[int, int]]) -> list[tuple[list[int], bool]]:
        """The blocks of a scale to run, as tasks: one per block, but under `decode_per_slab` the
        tiles of a slab of scale 0 to write (not replay) in one task, which decodes its sections
        once (`run_decoded`)."""
        todo = [i for i in range(self.grid.count(level)) if (level, i) in run]
        if level > 0 or not self.job.plan.decode_per_slab:
            return [([i], False) for i in todo]
        slabs: dict[int, list[int]] = {}
        for i in todo:
            if (level, i) not in self.done:
                slabs.setdefault(i // self.grid.tiles_per_slab(level), []).append(i)
        return [([i], False) for i in todo if (level, i) in self.done] + [(b, True) for b in slabs.values()]

    def _to_run(self) -> set[tuple[int, int]]:
        """Slabs not complete, and complete slabs whose piece a slab to run needs but lost
        (the piece is gone, or another engine wrote the slab): those are replayed."""
        run: set[tuple[int, int]] = set()
        pieces = set(self.store.list(self.prefix)) if self.done else set()
        for level in reversed(range(len(self.job.scales))):
            for index in range(self.grid.count(level)):
                if (level, index) not in self.done:
                    run.add((level, index))
                elif (level + 1 < len(self.job.scales) and (level + 1, self.grid.target(level, index)) in run
                      and self._piece(level, index) not in pieces):
                    run.add((level, index))
        return run

    def _feeders(self, level: int, index: int) -> list[tuple[int, int]]:
        return [(level - 1, i) for i in self.feeders[level].get(index, [])]

    def _piece(self, level: int, index: int) -> str:
        return f"{self.prefix}/{level}-{index}.raw"

    def _task(self, level: int, index: int, feeders: list[tuple[int, int]]) -> SlabTask:
        """Block `index` of a scale: a slab, or a tile of one (`SlabGrid`); the same task either way."""
        job, grid, scale = self.job, self.grid, self.job.scales[level]
        box = grid.box(level, index)
        p0, p1 = box.start[grid.axis], box.stop[grid.axis]
        replay = (level, index) in self.done
        x, y, z = box.shape
        down = None
        if level + 1 < len(job.scales):
            factor = job.scales[level + 1].factor
            part = downsampled(box, factor)
            nx, ny, nz = part.shape
            down = Piece(self._piece(level, index), part.start, (self.source.num_channels, nz, ny, nx), factor)
        return SlabTask(
            level, p0, p1, (self.source.num_channels, z, y, x), self.source.dtype.str,
            self.source.memory_order if level == 0 else MemoryOrder(), box.start,
            tuple(grid.bands_of(level, box)), scale, job.fmt, self.sink, job.skip_empty,
            source=self.source.window(p0, p1) if level == 0 and not replay else None,
            pieces=() if replay else tuple((self._piece(*f), downsampled(grid.box(*f), scale.factor))
                                           for f in feeders),
            replay=self.volume if replay else None, down=down, method=job.method, outside=job.outside_value,
            stats=sampling(scale) if job.collect_stats and not replay else None,
            spare=self.spare)

    def _raise(self, future: Future, what: str = "a shard's assembly") -> None:
        error = self._await(future.exception)
        if error is not None:
            self._check_stop()
            if isinstance(error, KilledWorker):
                self._check_input()
                raise WorkerDied(f"{what} killed the workers that ran it "
                                 "(out of memory?); lower --memory if it happens again") from None
            raise error

    def _finished(self, future: Future, submitted: _Submitted) -> None:
        (level, index), (_, last) = submitted.blocks[0], submitted.blocks[-1]
        tiles = self.grid.tiles_per_slab(level)
        self._raise(future, f"the task of {self.grid.describe(level, index)} of scale {level}" if index == last
                    else f"the task of slab {index // tiles}, tiles {index % tiles + 1} to {last % tiles + 1} "
                         f"of {tiles}, of scale {level}")
        self._check_input()  # before fetching a result from a worker that may have died of it
        results = self._await(future.result)
        for (level, index), done in zip(submitted.blocks, results if submitted.many else [results]):
            self._block_done(level, index, done)

    def _block_done(self, level: int, index: int, done: SlabDone) -> None:
        visited, written, nbytes, stats, worker = done
        if stats is not None and self.totals.stats is not None and (level, index) not in self.done:
            self.totals.stats.slab_done(self.store, state_key(self.job.step), level, index, stats)
        self.totals.chunks += visited
        self.totals.written += written
        self.totals.nbytes += nbytes
        if self.hooks.progress:
            self.hooks.progress(level, visited, nbytes)
        if (level, index) in self.done:
            return
        if self.syncs:
            self.syncs.add(level, index, worker)
        else:
            self._journal(level, index)

    def _journal(self, level: int, index: int) -> None:
        """A slab on disk: into the journal, and its shards assembled once complete."""
        if self.hooks.slab_done:
            self.hooks.slab_done(level, index)
        self._finish(self.completion.slab_done(level, index))

    def _remove_pieces(self) -> None:
        """Every slab is done: the pieces were only the way to the next scale."""
        self.store.delete(self.prefix)

    def _check_workers(self) -> None:
        """Wait for a first worker (a batch system may still be starting them), then refuse a
        cluster where no worker could ever run the largest task (it would wait forever)."""
        need = max(self.memory)
        while not (info := self.client.scheduler_info())["workers"]:
            self._check_stop()
            log.warning("waiting for a first worker to join %s", info.get("address"))
            time.sleep(1)  # not wait_for_workers: it waits for a *running* worker, never for a paused one
        self.rooms = Rooms.of(self.client)
        if not self.rooms.fitting(need):
            how = (f"start workers with --resources {RESOURCE}=<bytes> (at least {need}), or lower --memory"
                   if self.rooms.declared else "give workers a larger --memory-limit, or lower --memory")
            raise UsageError(f"no worker of {info.get('address', 'the cluster')} has room for the "
                             f"{format_size(need)} the largest task needs ({self.rooms.describe()}): {how}")

    def _await(self, call: Callable[[float], T]) -> T:
        """`call(timeout)` of a finished future (its error, its result), looking at the stop flag
        and the input meanwhile: a result lost with its worker is computed again, perhaps only
        once a worker joins (with none left, Dask waits for one)."""
        while True:
            try:
                return call(0.25)
            except TimeoutError:
                self._check_stop()
                self._check_input()

    def _check_input(self) -> None:
        """An input file that tasks map (`slabtask._mapped`) and that was cut short meanwhile: a
        task touching the lost part died of SIGBUS, and its worker with it (Dask retries the task
        elsewhere, or waits for a worker if none is left): that is the run's error."""
        if self.mapped is not None and (why := self.mapped.missing()):
            raise DataError(why)

    def _check_stop(self) -> None:
        if self.hooks.should_stop():
            raise Interrupted(f"{self.store.url}: interrupted")


