"""The job runner: what every writing command shares around the pipeline.

`convert` and each step of the step-by-step workflow describe a `Job` (what to write and how,
and the record kept in the journal) and hand it to `run_job`, which starts the workers, takes
the output's lock, resumes or starts the step's journal, runs the `Pipeline` with Ctrl-C and
SIGTERM turned into a stop at a safe point, and marks the job finished.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..annotate import AnnotationReport, Annotations, annotate
from ..encodings import ChunkFormat
from ..errors import StreamconvError, UsageError
from ..geometry import Scale
from ..info import VolumeInfo
from ..sources import Source
from ..storage import Store, open_output
from .budget import SlabPlan, default_budget, parse_size
from .buffers import remove_stale_buffers
from .executor import TaskExecutor, executor
from .journal import CONVERT, Journal, Lock, boot_id, prepare_output, remove_temporary, write_job
from .pipeline import Hooks, Pipeline, ProgressFn, Totals

log = logging.getLogger("streamconv")

#: given the scales a job writes, the callback fed (scale, chunks, bytes) as bands finish
ProgressFactory = Callable[[list[Scale]], ProgressFn]


@dataclass(frozen=True)
class Job:
    """A conversion or one step of it, decided: what to write and how, and the description
    kept in the journal."""

    scales: list[Scale]
    info: VolumeInfo
    plan: SlabPlan
    fmt: ChunkFormat
    method: str
    skip_empty: bool
    record: dict  # everything that changes the bytes written, as stored in job.json
    step: str = CONVERT  # or a step of the step-by-step workflow (its own job record)
    first: int = 0       # scales below this one are on disk already: read, not written
    outside_value: float | None = None
    annotations: Annotations | None = None  # names and meshes of a segmentation, added at the end

    @property
    def collect_labels(self) -> bool:
        """Band tasks return the labels of scale 0 for a names table (a mesh pass finds them itself)."""
        return self.annotations is not None and self.annotations.names is not None \
            and self.annotations.meshes is None


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
    skipped_slabs: int = 0   # complete before this run
    replayed_slabs: int = 0  # complete before, read back to rebuild a coarser scale
    annotated: AnnotationReport | None = None  # names and meshes, when asked for


def resources(workers: int | None, memory: str | int | None) -> tuple[int, int]:
    """Worker count (default: CPU count) and memory budget in bytes (default: half of what is
    available)."""
    workers = os.cpu_count() or 1 if workers is None else workers
    if workers < 0:
        raise UsageError(f"--workers must be 0 or more, got {workers}")
    return workers, default_budget() if memory is None else parse_size(memory)


def job_record(source: Source, plan: SlabPlan, **parameters: object) -> dict:
    """What job.json keeps: the input's fingerprint, the parameters that change bytes, and the
    slab size (journal entries are slabs)."""
    return json.loads(json.dumps({  # as stored, so that it compares equal when read back
        "input": source.fingerprint(), **parameters,
        "slab_planes": list(plan.slab_planes), "stream_axis": plan.stream_axis}))


def check_outside_value(value: float | None, dtype: np.dtype) -> None:
    """`--outside-value` must be a value of the stored type, refused before any work."""
    if value is None or dtype.kind == "f":
        return
    info = np.iinfo(dtype)
    if value != int(value) or not info.min <= value <= info.max:
        raise UsageError(f"--outside-value {value} is not a value of {dtype}")


@contextmanager
def closing_on_error(source: Source) -> Iterator[None]:
    """Close a source opened while describing a job if describing it fails (once the job is
    described, `run_job` closes it)."""
    try:
        yield
    except BaseException:
        source.close()
        raise


def run_job(describe: Callable[[], tuple[Source, Job]], output: str | os.PathLike, workers: int,
            overwrite: bool, resume: bool, progress: ProgressFactory | None) -> Report:
    """Start the workers, open and plan the job (`describe`) while they start, then write it."""
    started = time.perf_counter()
    store = open_output(output)
    with executor(workers) as pool:
        for _ in range(workers):  # start the workers now, while headers are read
            pool.submit(int)
        source, job = describe()
        try:
            totals, resumed, annotated = _write(source, job, store, pool, overwrite, resume, progress)
        finally:
            source.close()
    return Report(str(output), job.scales, job.plan, totals.chunks, totals.written, totals.nbytes,
                  time.perf_counter() - started, resumed, totals.skipped_slabs, totals.replayed_slabs,
                  annotated)


def _write(source: Source, job: Job, store: Store, pool: TaskExecutor, overwrite: bool, resume: bool,
           progress: ProgressFactory | None) -> tuple[Totals, bool, AnnotationReport | None]:
    """Run the pipeline under the output's lock and the step's journal, then add names and
    meshes; `convert` writes the info last."""
    log.info("%s", job.plan.describe(job.scales))
    keys = [s.key for s in job.scales[job.first:]]
    lock = Lock(store)
    lock.acquire()
    try:
        resumed = prepare_output(store, keys, job.record, overwrite, resume, job.step)
        journal = Journal(store, job.step)
        done = set(journal.completed()) if resumed else set()
        if resumed:
            log.warning("resuming: %d slabs were complete", len(done))
        else:
            write_job(store, {"job": job.record, "complete": False}, job.step)
        remove_stale_buffers()
        journal.open()
        try:
            with _stop_on_signals() as stop:
                hooks = Hooks(progress=progress(job.scales) if progress else None,
                              slab_done=journal.record, should_stop=stop.is_set)
                totals = Pipeline(job, source, store, pool, hooks, frozenset(done)).run()
                info, annotated = job.info, None
                if job.annotations is not None:
                    # the band tasks saw every label only if this run wrote every slab
                    labels = totals.labels if job.collect_labels and job.first == 0 and not done else None
                    info, annotated = annotate(store, info, pool, job.plan.workers, job.plan.budget,
                                               job.annotations, labels, stop.is_set)
        finally:
            journal.close()
        if job.step == CONVERT:
            store.write("info", info.to_json(), durable=True)
        write_job(store, {"job": job.record, "complete": True, "boot": boot_id()}, job.step)
        return totals, resumed, annotated
    except StreamconvError as exc:
        remove_temporary(store, keys, job.step)
        if exc.resumable:
            exc.args = (f"{exc}; run the same command again to resume",)
        raise
    finally:
        lock.release()


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
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
