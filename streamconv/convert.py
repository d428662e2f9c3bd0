"""The library API: `convert(input, output)` does a whole conversion; the CLI calls this."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from . import downsampling
from .encodings import ChunkFormat, check_encoding, make_codec, stored_dtype
from .engine.buffers import remove_stale_buffers
from .engine.executor import executor
from .engine.journal import STATE_DIR, Journal, Lock, prepare_output, remove_temporary, write_job
from .engine.pipeline import Pipeline, ProgressFn
from .engine.plan import Plan, default_budget, make_plan, parse_size
from .errors import StreamconvError, UsageError
from .geometry import Scale, parse_resolution
from .pyramid import make_info, plan_scales
from .sources import open_source
from .storage import LocalStore, open_store

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
            memory: str | int | None = None, workers: int | None = None, ignore_scaling: bool = False,
            resolution: str | tuple[float, float, float] | None = None,
            input_orientation: str | None = None, fill_missing: float | None = None,
            encoding: str = "raw", jpeg_quality: int = 90, jpeg_plane: str = "xy",
            cseg_block_size: tuple[int, int, int] = (8, 8, 8), gzip: bool = False,
            skip_empty: bool = False, overwrite: bool = False, resume: bool = True,
            progress: Callable[[list[Scale]], ProgressFn] | None = None) -> Report:
    """Convert a volume or a slice stack to a precomputed pyramid: info, full resolution and
    every scale.

    `input` is a volume file nibabel reads, or a slice stack: a directory of sections, a glob,
    a text file listing sections, or a multi-page TIFF (`input_orientation`: a code such as
    RIA, as neuroglancer-scripts; `fill_missing`: the value of missing or unreadable sections).
    `resolution` ('20um', or X,Y,Z in nm) overrides what the input says. `encoding` is raw,
    jpeg, png or compressed_segmentation; `gzip` writes `<chunk>.gz` files. `memory` bounds
    the whole process tree ('512MiB'; default: half of the available memory); `workers` is the
    number of processes (default: CPU count; 0 runs everything in this process). An output
    holding an unfinished run of the same conversion is resumed (`resume=False` refuses);
    `overwrite` starts over. `progress`, given the scales, returns a callback fed
    (scale, chunks, bytes).
    """
    started = time.perf_counter()
    method = downsampling_method or downsampling.default_method(volume_type)
    downsampling.check_method(method)
    workers = os.cpu_count() or 1 if workers is None else workers
    if workers < 0:
        raise UsageError(f"--workers must be 0 or more, got {workers}")
    budget = default_budget() if memory is None else parse_size(memory)
    if isinstance(resolution, str):
        resolution = parse_resolution(resolution)
    codec = make_codec(encoding, jpeg_quality=jpeg_quality, jpeg_plane=jpeg_plane,
                       cseg_block_size=cseg_block_size)

    source = open_source(input, ignore_scaling=ignore_scaling, resolution=resolution,
                         orientation=input_orientation, fill_missing=fill_missing)
    try:
        if volume_type == "segmentation" and source.dtype.kind == "f":
            raise UsageError(f"a segmentation needs integer labels, {input} holds {source.dtype}")
        stored = stored_dtype(encoding, source.dtype, volume_type)
        if stored != source.dtype:
            log.warning("%s labels are stored as %s for compressed_segmentation", source.dtype, stored)
        check_encoding(encoding, stored, source.num_channels, volume_type)
        scales = plan_scales(source.shape, source.resolution, chunk_size, max_scales)
        if encoding == "jpeg":
            check_jpeg_chunks(scales, jpeg_plane)
        info = make_info(scales, stored.name, source.num_channels, volume_type, codec.info())
        plan = make_plan(scales, source.num_channels, source.dtype, workers, budget,
                         source.parallel_reads, source.stream_axis)
        log.info("%s", plan.describe(scales))
        # Everything that changes the bytes written; slab size too, since journal entries are slabs.
        job = json.loads(json.dumps({  # as stored, so that it compares equal when read back
            "input": source.fingerprint(), "info": info, "downsampling": method,
            "encoding": repr(codec), "gzip": gzip,
            "skip_empty": skip_empty, "slab_planes": list(plan.slab_planes),
            "stream_axis": plan.stream_axis}))
        store = open_store(output)
        state = _state_dir(store)
        lock = Lock(state)
        lock.acquire()
        try:
            resumed = prepare_output(store, [s.key for s in scales], job, overwrite, resume)
            journal = Journal(state)
            done = frozenset(journal.completed()) if resumed else frozenset()
            if resumed:
                log.warning("resuming: %d slabs were complete", len(done))
            else:
                write_job(store, {"job": job, "complete": False})
            remove_stale_buffers()
            journal.open()
            try:
                with executor(workers) as pool, _stop_on_signals() as stop:
                    totals = Pipeline(source, scales, store, ChunkFormat(codec, gzip), method,
                                      skip_empty, plan, pool,
                                      progress(scales) if progress else None, done,
                                      journal.record, stop.is_set).run()
            finally:
                journal.close()
            store.write("info", json.dumps(info).encode())
            write_job(store, {"job": job, "complete": True})
        except StreamconvError as exc:
            remove_temporary(store, [s.key for s in scales])
            if exc.resumable:
                exc.args = (f"{exc}; run the same command again to resume",)
            raise
        finally:
            lock.release()
    finally:
        source.close()
    return Report(str(output), scales, plan, totals.chunks, totals.written, totals.nbytes,
                  time.perf_counter() - started, resumed, totals.skipped_slabs, totals.replayed_slabs)


def check_jpeg_chunks(scales: list[Scale], plane: str) -> None:
    """A JPEG side is at most 65535 pixels: a chunk's image is (z*y, x), or (z, y*x) for xz."""
    for s in scales:
        x, y, z = s.chunk_size
        if max((z * y, x) if plane == "xy" else (z, y * x)) > 65535:
            raise UsageError(f"chunks of {x}x{y}x{z} make JPEG images over 65535 pixels high; "
                             "use a smaller --chunk-size")


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
