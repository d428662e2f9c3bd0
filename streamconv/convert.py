"""The library API: `convert(input, output)` does a whole conversion; the CLI calls this."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import downsampling
from .encodings import ChunkFormat, make_codec
from .engine.buffers import remove_stale_buffers
from .engine.executor import executor
from .engine.journal import (CONVERT, STATE_DIR, Journal, Lock, boot_id, prepare_output,
                             remove_temporary, state_key, write_job)
from .engine.pipeline import Pipeline, ProgressFn, Totals
from .engine.plan import Plan, default_budget, make_plan, parse_size
from .errors import StreamconvError, UsageError
from .geometry import Scale, ceil_div, parse_resolution
from .pyramid import plan_pyramid
from .reader import Volume
from .sources import Source, open_source
from .storage import LocalStore, Store, open_store

log = logging.getLogger("streamconv")


@dataclass(frozen=True)
class Report:
    """What a conversion did."""

    output: str
    scales: list[Scale]
    plan: Plan
    chunks: int           # chunks visited by this run
    chunks_written: int
    bytes_written: int
    seconds: float
    resumed: bool = False
    skipped_slabs: int = 0   # complete before this run
    replayed_slabs: int = 0  # complete before, read back to rebuild a coarser scale


def convert(input: str | os.PathLike, output: str | os.PathLike, *, volume_type: str = "image",
            chunk_size: int = 64, max_scales: int | None = None, downsampling_method: str | None = None,
            outside_value: float | None = None, memory: str | int | None = None,
            workers: int | None = None, ignore_scaling: bool = False,
            input_range: tuple[float, float] | None = None,
            resolution: str | tuple[float, float, float] | None = None,
            input_orientation: str | None = None, fill_missing: float | None = None,
            encoding: str = "raw", jpeg_quality: int = 90, jpeg_plane: str = "xy",
            cseg_block_size: tuple[int, int, int] = (8, 8, 8), gzip: bool = False,
            compresslevel: int = 6, skip_empty: bool = False, overwrite: bool = False,
            resume: bool = True,
            progress: Callable[[list[Scale]], ProgressFn] | None = None) -> Report:
    """Convert a volume or a slice stack to a precomputed pyramid: info, full resolution and
    every scale.

    `input` is a volume file nibabel reads, or a slice stack: a directory of sections, a glob,
    a text file listing sections, or a multi-page TIFF (`input_orientation`: a code such as
    RIA, as neuroglancer-scripts; `fill_missing`: the value of missing or unreadable sections).
    `resolution` ('20um', or X,Y,Z in nm) overrides what the input says; `input_range` maps
    those input values onto 0..1 in float32 (neuroglancer-scripts' --input-min/--input-max).
    `encoding` is raw, jpeg, png or compressed_segmentation; `gzip` writes `<chunk>.gz` files
    (at `compresslevel`).
    `outside_value`: average downsampling counts the voxels past odd edges as this value.
    `memory` bounds the whole process tree ('512MiB'; default: half of the available memory);
    `workers` is the number of processes (default: CPU count; 0 runs everything in this
    process). An output holding an unfinished run of the same conversion is resumed
    (`resume=False` refuses); `overwrite` starts over. `progress`, given the scales, returns a
    callback fed (scale, chunks, bytes).
    """
    method = downsampling_method or downsampling.default_method(volume_type)
    downsampling.check_method(method)
    workers, budget = resources(workers, memory)
    if isinstance(resolution, str):
        resolution = parse_resolution(resolution)
    codec = make_codec(encoding, jpeg_quality=jpeg_quality, jpeg_plane=jpeg_plane,
                       cseg_block_size=cseg_block_size)

    def describe() -> tuple[Source, Job]:
        source = open_source(input, ignore_scaling=ignore_scaling, resolution=resolution,
                             orientation=input_orientation, fill_missing=fill_missing,
                             input_range=input_range)
        with closing_on_error(source):
            scales, info = plan_pyramid(source.shape, source.resolution, source.dtype,
                                        source.num_channels, volume_type, chunk_size, max_scales, codec)
            check_outside_value(outside_value, source.dtype)
            plan = make_plan(scales, source.num_channels, source.dtype, workers, budget,
                             source.parallel_reads, source.stream_axis)
            record = job_record(source, plan, info=info, downsampling=method,
                                outside_value=outside_value, encoding=repr(codec), gzip=gzip,
                                level=compresslevel if gzip else None, skip_empty=skip_empty)
            return source, Job(scales, info, plan, ChunkFormat(codec, gzip, compresslevel), method,
                               skip_empty, record, outside_value=outside_value)

    return run_job(describe, output, workers, overwrite, resume, progress)


@dataclass(frozen=True)
class Job:
    """A conversion or one step of it, decided: what to write and how, and the description
    kept in the journal."""

    scales: list[Scale]
    info: dict
    plan: Plan
    fmt: ChunkFormat
    method: str
    skip_empty: bool
    record: dict  # everything that changes the bytes written, as stored in job.json
    step: str = CONVERT  # or a step of the step-by-step workflow (its own job record)
    first: int = 0       # scales below this one are on disk already: read, not written
    outside_value: float | None = None


def resources(workers: int | None, memory: str | int | None) -> tuple[int, int]:
    """Worker count (default: CPU count) and memory budget in bytes (default: half of what is
    available)."""
    workers = os.cpu_count() or 1 if workers is None else workers
    if workers < 0:
        raise UsageError(f"--workers must be 0 or more, got {workers}")
    return workers, default_budget() if memory is None else parse_size(memory)


def job_record(source: Source, plan: Plan, **parameters: object) -> dict:
    """What job.json keeps: the input's fingerprint, the parameters that change bytes, and the
    slab size (journal entries are slabs)."""
    return json.loads(json.dumps({  # as stored, so that it compares equal when read back
        "input": source.fingerprint(), **parameters,
        "slab_planes": list(plan.slab_planes), "stream_axis": plan.stream_axis}))


def check_outside_value(value: float | None, dtype: np.dtype) -> None:
    if value is None or dtype.kind == "f":
        return
    info = np.iinfo(dtype)
    if value != int(value) or not info.min <= value <= info.max:
        raise UsageError(f"--outside-value {value} is not a value of {dtype}")


@contextmanager
def closing_on_error(source: Source) -> Iterator[None]:
    try:
        yield
    except BaseException:
        source.close()
        raise


def run_job(describe: Callable[[], tuple[Source, Job]], output: str | os.PathLike, workers: int,
            overwrite: bool, resume: bool,
            progress: Callable[[list[Scale]], ProgressFn] | None) -> Report:
    """Start the workers, open and plan the job (`describe`) while they start, then write it."""
    started = time.perf_counter()
    with executor(workers) as pool:
        for _ in range(workers):  # start the workers now, while headers are read
            pool.submit(int)
        source, job = describe()
        try:
            totals, resumed = _write(source, job, open_store(output), pool, overwrite, resume, progress)
        finally:
            source.close()
    return Report(str(output), job.scales, job.plan, totals.chunks, totals.written, totals.nbytes,
                  time.perf_counter() - started, resumed, totals.skipped_slabs, totals.replayed_slabs)


def _write(source: Source, job: Job, store: Store, pool: Executor, overwrite: bool, resume: bool,
           progress: Callable[[list[Scale]], ProgressFn] | None) -> tuple[Totals, bool]:
    """Run the pipeline under the output's lock and the step's journal; `convert` writes the
    info last."""
    log.info("%s", job.plan.describe(job.scales))
    keys = [s.key for s in job.scales[job.first:]]
    root = _state_dir(store).parent
    lock = Lock(root / STATE_DIR)
    lock.acquire()
    try:
        resumed = prepare_output(store, keys, job.record, overwrite, resume, job.step)
        journal = Journal(root / state_key(job.step))
        done = set(journal.completed()) if resumed else set()
        if resumed:
            log.warning("resuming: %d slabs were complete", len(done))
        else:
            write_job(store, {"job": job.record, "complete": False}, job.step)
        for level in range(job.first):  # on disk already: only read back to downsample
            slabs = ceil_div(job.scales[level].size[job.plan.stream_axis], job.plan.slab_planes[level])
            done.update((level, i) for i in range(slabs))
        remove_stale_buffers()
        journal.open()
        try:
            with _stop_on_signals() as stop:
                totals = Pipeline(source, Volume(store, job.info, job.scales), job.fmt, job.method,
                                  job.skip_empty, job.plan, pool,
                                  progress(job.scales) if progress else None, frozenset(done),
                                  journal.record, stop.is_set, job.outside_value).run()
        finally:
            journal.close()
        if job.step == CONVERT:
            store.write("info", json.dumps(job.info).encode(), durable=True)
        write_job(store, {"job": job.record, "complete": True, "boot": boot_id()}, job.step)
        return totals, resumed
    except StreamconvError as exc:
        remove_temporary(store, keys, job.step)
        if exc.resumable:
            exc.args = (f"{exc}; run the same command again to resume",)
        raise
    finally:
        lock.release()


def _state_dir(store: object) -> Path:
    if not isinstance(store, LocalStore):
        raise UsageError("only local output directories are supported for now")
    return store.root / STATE_DIR


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
