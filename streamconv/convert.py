"""The library API: `convert(input, output)` does a whole conversion; the CLI calls this."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Callable

from . import downsampling
from .engine.buffers import remove_stale_buffers
from .engine.executor import executor
from .engine.journal import prepare_output, write_job
from .engine.pipeline import Pipeline, ProgressFn
from .engine.plan import Plan, default_budget, make_plan, parse_size
from .errors import UsageError
from .geometry import Scale, parse_resolution
from .pyramid import make_info, plan_scales
from .sources import open_source
from .storage import open_store

log = logging.getLogger("streamconv")


@dataclass(frozen=True)
class Report:
    """What a conversion did."""

    output: str
    scales: list[Scale]
    plan: Plan
    chunks: int
    chunks_written: int
    bytes_written: int
    seconds: float


def convert(input: str | os.PathLike, output: str | os.PathLike, *, volume_type: str = "image",
            chunk_size: int = 64, max_scales: int | None = None, downsampling_method: str | None = None,
            memory: str | int | None = None, workers: int | None = None, ignore_scaling: bool = False,
            resolution: str | tuple[float, float, float] | None = None,
            input_orientation: str | None = None, fill_missing: float | None = None,
            skip_empty: bool = False, overwrite: bool = False,
            progress: "Callable[[list[Scale]], ProgressFn] | None" = None) -> Report:
    """Convert a volume or a slice stack to a precomputed pyramid: info, full resolution and
    every scale.

    `input` is a volume file nibabel reads, or a slice stack: a directory of sections, a glob,
    a text file listing sections, or a multi-page TIFF (`input_orientation`: a code such as
    RIA, as neuroglancer-scripts; `fill_missing`: the value of missing or unreadable sections).
    `resolution` ('20um', or X,Y,Z in nm) overrides what the input says. `memory` bounds the whole process tree ('512MiB'; default: half of the available memory);
    `workers` is the number of processes (default: CPU count; 0 runs everything in this
    process); `progress`, given the scales, returns a callback fed (scale, chunks, bytes).
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
    source = open_source(input, ignore_scaling=ignore_scaling, resolution=resolution,
                         orientation=input_orientation, fill_missing=fill_missing)
    try:
        if volume_type == "segmentation" and source.dtype.kind == "f":
            raise UsageError(f"a segmentation needs integer labels, {input} holds {source.dtype}")
        scales = plan_scales(source.shape, source.resolution, chunk_size, max_scales)
        info = make_info(scales, source.dtype.name, source.num_channels, volume_type)
        plan = make_plan(scales, source.num_channels, source.dtype, workers, budget,
                         source.parallel_reads, source.stream_axis)
        log.info("%s", plan.describe(scales))

        store = open_store(output)
        prepare_output(store, [s.key for s in scales], overwrite)
        job = {"input": source.fingerprint(), "info": info, "downsampling": method,
               "skip_empty": skip_empty, "complete": False}
        write_job(store, job)
        remove_stale_buffers()
        with executor(workers) as pool:
            totals = Pipeline(source, scales, store, "raw", method, skip_empty, plan, pool,
                              progress(scales) if progress else None).run()
        store.write("info", json.dumps(info, indent=1).encode())
        write_job(store, {**job, "complete": True})
    finally:
        source.close()
    return Report(str(output), scales, plan, totals.chunks, totals.written, totals.nbytes,
                  time.perf_counter() - started)
