"""The job runner: what every writing command shares around the pipeline.

`convert` and each step of the step-by-step workflow describe a `Job` (what to write and how,
and the record kept in the journal) and hand it to `run_job`, which starts the workers, takes
the output's lock, resumes or starts the step's journal, runs the `Pipeline` with Ctrl-C and
SIGTERM turned into a stop at a safe point, and marks the job finished.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass

from ..errors import StreamconvError, UsageError
from ..format.geometry import Scale
from ..format.sharding import shard_files
from ..layout.statsfile import VolumeStats, write_stats
from ..sources import Source
from ..stores import Where, open_output, open_store
from ..stores.base import Store, require
from .budget import SlabPlan
from .buffers import remove_stale_buffers
from .estimate import Estimate, check_free_space, estimate_job
from .executor import TaskExecutor, executor
from .job import AfterReport, Job
from .journal import (
    COMPLETE,
    CONVERT,
    RESUME,
    Journal,
    Lock,
    boot_id,
    forget,
    prepare_output,
    remove_temporary,
    write_job,
)
from .leftovers import nothing_left_on_failure, remove_empty_state
from .peak import peak_memory
from .pipeline import Hooks, Pipeline, ProgressFn, Totals
from .slabgrid import SlabGrid

log = logging.getLogger("streamconv")

#: given the scales a job writes, the callback fed (scale, chunks, bytes) as bands finish
ProgressFactory = Callable[[list[Scale]], ProgressFn]


@dataclass(frozen=True)
class Report:
    """What a conversion did."""

    output: str
    scales: list[Scale]
    plan: SlabPlan
    chunks: int           # chunks visited by this run
    chunks_written: int
    bytes_written: int
    seconds: float
    resumed: bool = False
    skipped_blocks: int = 0   # blocks (slabs, or slab tiles when tiled) complete before this run
    replayed_blocks: int = 0  # complete before, read back to rebuild a coarser scale
    complete: bool = False   # the output already held this finished job: nothing was done
    peak_memory: int = 0     # bytes: the largest PSS sum of the process tree during the run
    estimate: Estimate | None = None  # a dry run: what the run would cost; nothing was written
    shard_files: int = 0     # the sharded scales' files (their chunks are among chunks_written)
    annotated: AfterReport | None = None  # names and meshes, when asked for
    stats: VolumeStats | None = None  # the values seen (scales seen whole: `stats.json`)


@contextmanager
def _frozen_heap() -> Iterator[None]:
    """The objects that exist before the run (imports: tens of thousands) are left out of the
    garbage collector's passes while it runs: the coordinator allocates a little per task, and
    every full pass walked them all (docs/benchmarks.md). A library caller's objects go back to
    the collector after."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_job(describe: Callable[[Store], tuple[Source, Job]], output: Where, workers: int,
            overwrite: bool, resume: bool, progress: ProgressFactory | None,
            dry_run: bool = False, scheduler: str | None = None) -> Report:
    """Start the workers, open and plan the job (`describe`, given the output's store: how it
    writes counts in the plan) while they start, then write it; on the Dask cluster at
    `scheduler` (or a LocalCluster of `workers` for `local`) if given. A dry run only plans the
    job and measures a sample of it (`Report.estimate`)."""
    started = time.perf_counter()
    if dry_run:
        planned = open_store(output)
        source, job = describe(planned)
        log.info("%s", job.plan.describe(job.scales))  # -v: the slab and tile plan in detail
        try:
            cost = estimate_job(source, job, planned.url)
        finally:
            source.close()
        return Report(str(output), job.scales, job.plan, 0, 0, 0, time.perf_counter() - started,
                      estimate=cost)
    store = open_output(output)
    if workers and scheduler is None:
        require(store, "shared", "be written by worker processes (each would write its own copy); "
                "pass --workers 0")
    with nothing_left_on_failure(output), _frozen_heap(), peak_memory() as peak, \
            _engine(describe, store, workers, scheduler) as run:
        totals, found, annotated = _write(run, store, overwrite, resume, progress)
    job = run.job
    if not job.keep_record:
        remove_empty_state(output)  # the lock is released: an empty .streamconv/ goes too
    return Report(str(output), job.scales, job.plan, totals.chunks, totals.written, totals.nbytes,
                  time.perf_counter() - started, found == RESUME, totals.skipped_blocks,
                  totals.replayed_blocks, complete=found == COMPLETE, peak_memory=peak.bytes,
                  annotated=annotated, shard_files=_shard_files(job), stats=totals.stats)


def _shard_files(job: Job) -> int:
    """The files of the sharded scales the job wrote: the summary counts them, not chunks."""
    return sum(shard_files(job.scales[level], spec) for level in range(job.first, len(job.scales))
               if (spec := job.info.scales[level].sharding) is not None)


#: runs the job's slabs, given the hooks and the slabs complete before: the local pipeline or a
#: Dask cluster
Engine = Callable[[Hooks, frozenset[tuple[int, int]]], Totals]


@dataclass(frozen=True)
class Running:
    """The described job, what runs it, and where names and meshes run after the pyramid: the
    local workers, or the cluster's (`workers` of them, `budget` in all)."""

    job: Job
    engine: Engine  # holds the source it reads
    pool: TaskExecutor
    capacity: Callable[[], tuple[int, int]]  # (workers, their budget in all) when names and meshes start
    labels_seen: bool  # the engine's totals hold the labels of the scale-0 slabs it wrote


@contextmanager
def _engine(describe: Callable[[Store], tuple[Source, Job]], store: Store, workers: int,
            scheduler: str | None) -> Iterator[Running]:
    """The described job and what runs it; the source is closed and the workers stopped after."""
    if scheduler is None:
        with executor(workers) as pool:
            # Read the headers and plan first: the fork server, started with the command line,
            # finishes its imports meanwhile (starting a worker waits for them); then the
            # workers start, while the output is locked and the job recorded.
            source, job = describe(store)
            with closing(source):
                for _ in range(workers):
                    pool.submit(int)
                yield Running(job, lambda hooks, done: _run_pipeline(
                    Pipeline(job, source, store, pool, hooks, done)), pool,
                    lambda: (job.plan.workers, job.plan.budget), labels_seen=True)
        return
    try:
        from .distributed import ClusterExecutor, DaskRun, connect
    except ImportError as exc:  # dask is an optional extra
        raise UsageError(f"--scheduler needs Dask ({exc}): pip install 'streamconv[dask]'") from None

    source, job = describe(store)
    with closing(source), connect(scheduler, workers, job.plan.budget) as client:
        cluster = ClusterExecutor(client, job.plan.budget)
        try:
            yield Running(job, lambda hooks, done: DaskRun(job, source, store, client, hooks, done).run(),
                          cluster, cluster.fit_tasks, labels_seen=False)
        finally:
            cluster.shutdown(cancel_futures=True)


def _run_pipeline(pipeline: Pipeline) -> Totals:
    if pipeline.completion.describe():
        log.info("%s", pipeline.completion.describe())
    return pipeline.run()


def _write(run: Running, store: Store, overwrite: bool, resume: bool,
           progress: ProgressFactory | None) -> tuple[Totals, str, AfterReport | None]:
    """Run the pipeline under the output's lock and the step's journal, then add names and
    meshes; `convert` writes the info last. Returns what the output held: START, RESUME or
    COMPLETE (nothing written)."""
    job = run.job
    log.info("%s", job.plan.describe(job.scales))
    keys = [s.key for s in job.scales[job.first:]]
    lock = Lock(store)
    lock.acquire()
    try:
        found = prepare_output(store, keys, job.record, overwrite, resume, job.step)
        if found == COMPLETE:
            log.info("%s already holds this finished job: nothing to do", store.url)
            return Totals(), found, None
        resumed = found == RESUME
        if not resumed:
            check_free_space(job, store.url)
        journal = Journal(store, job.step)
        done = set(journal.completed()) if resumed else set()
        if resumed:
            log.warning("resuming: %s were complete", SlabGrid(job.scales, job.plan).count_done(done))
        else:
            write_job(store, {"job": job.record, "complete": False}, job.step)
        remove_stale_buffers()
        journal.open()
        try:
            with stop_on_signals() as stop:
                hooks = Hooks(progress=progress(job.scales) if progress else None,
                              slab_done=journal.record, should_stop=stop.is_set)
                totals = run.engine(hooks, frozenset(done))
                info, annotated = job.info, None
                if job.step == CONVERT:  # the work after the pyramid may read them (transform.json)
                    for key, data in job.files:
                        store.write(key, data)
                if job.annotations is not None:
                    # the band tasks saw every label only if this run wrote every slab
                    labels = totals.labels if (run.labels_seen and job.collect_labels and job.first == 0
                                               and not done) else None
                    # --overwrite replaces meshes even where no record of ours names them
                    info, annotated = job.annotations.run(store, info, run.pool, *run.capacity(), labels,
                                                          stop.is_set, overwrite)
        finally:
            journal.close()
        if totals.stats is not None:
            write_stats(store, totals.stats, replace=job.step == CONVERT)
        if job.step == CONVERT:
            store.write("info", info.to_json(), durable=True)
        if job.keep_record:
            write_job(store, {"job": job.record, "complete": True, "boot": boot_id()}, job.step)
        else:
            forget(store, job.step)
        return totals, found, annotated
    except StreamconvError as exc:
        remove_temporary(store, keys, job.step)
        if exc.resumable:
            exc.args = (f"{exc}; run the same command again to resume",)
        raise
    finally:
        lock.release()


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """Ctrl-C and SIGTERM ask the pipeline to stop at its next safe point (never in the
    middle of a write or of the pool's bookkeeping); the journal keeps what is done."""
    stop = threading.Event()
    try:
        previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals to the caller
        yield stop
        return
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
