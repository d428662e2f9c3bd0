"""A job: what a writing command asks the engine to write and how (`Job`), and its planning
(`plan_job`, `job_record`, `resources`). The pipeline, the Dask path, the estimate and the
runner all take a `Job`; only the runner runs one.

Work that follows the pyramid (names and meshes of a segmentation) is not the engine's: a job
carries it as an `AfterPyramid`, which the runner calls once the pyramid is written and before
the info, on the same workers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..encodings import ChunkFormat
from ..errors import UsageError
from ..format.geometry import Scale
from ..format.info import VolumeInfo
from ..sources import Source
from ..stores.base import Store
from ..units import parse_size
from .budget import SlabPlan, default_budget, plan_slabs, plan_worker_slabs
from .executor import TaskExecutor
from .journal import CONVERT

NO_STATS = "STREAMCONV_NO_STATS"  # benchmarks only: see Job.collect_stats


class AfterReport(Protocol):
    """What the work after the pyramid did, for the summary line."""

    @property
    def labels(self) -> int: ...  # labels of scale 0, background aside

    @property
    def meshes(self) -> object: ...  # what was meshed, if anything

    def describe(self) -> str:
        """What it wrote, for the summary line after the volume's (', 5 labels meshed')."""


class AfterPyramid(Protocol):
    """Work a job runs once its pyramid is written, before its info: it may write beside the
    pyramid and returns the info that links what it wrote."""

    @property
    def collect_labels(self) -> bool:
        """Band tasks of scale 0 return their labels for it (`Totals.labels`)."""

    def record(self) -> dict:
        """For job.json: what changes the files written."""

    def run(self, store: Store, info: VolumeInfo, pool: TaskExecutor, workers: int, budget: int,
            labels: np.ndarray | None, should_stop: Callable[[], bool],
            overwrite: bool) -> tuple[VolumeInfo, AfterReport]:
        """Write, on `workers` of `pool` within `budget`; `labels`: those of scale 0 when the band
        tasks saw them all."""


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
    annotations: AfterPyramid | None = None  # names and meshes of a segmentation, added at the end
    files: tuple[tuple[str, bytes], ...] = ()  # transform.json, placement.json: before the AfterPyramid
    # False: once finished, the run leaves no job record or journal behind (the steps named
    # after neuroglancer-scripts': their output holds what a reader reads, no more); a rerun
    # then finds chunks it has no record of and is refused unless --overwrite
    keep_record: bool = True

    @property
    def collect_labels(self) -> bool:
        """Band tasks return the labels of scale 0 for the work after the pyramid."""
        return self.annotations is not None and self.annotations.collect_labels

    @property
    def collect_stats(self) -> bool:
        """Band tasks return value statistics (`stats.json`): for images, whose viewers need a range.
        STREAMCONV_NO_STATS=1 in the environment leaves them out: for benchmarks only (the
        statistics' cost measured on a whole conversion, docs/benchmarks.md), no `stats.json`."""
        return self.info.type == "image" and os.environ.get(NO_STATS, "") in ("", "0")


def resources(workers: int | None, memory: str | int | None) -> tuple[int, int]:
    """Worker count (default: CPU count) and memory budget in bytes (default: half of what is
    available)."""
    workers = os.cpu_count() or 1 if workers is None else workers
    if workers < 0:
        raise UsageError(f"--workers must be 0 or more, got {workers}")
    return workers, default_budget() if memory is None else parse_size(memory)


def plan_job(scales: list[Scale], source: Source, workers: int, budget: int, store: Store,
             scheduler: str | None) -> SlabPlan:
    """The slabs of a job: planned for the local engine's whole process tree, or with a
    `scheduler` for one Dask worker, which runs one slab's task at a time in its own memory
    (within the room the best worker has, `engine/rooms.py`)."""
    tile = os.environ.get("STREAMCONV_TILE")  # tiles of this size whatever the budget: tests, benchmarks
    if scheduler is None:
        return plan_slabs(scales, source.num_channels, source.dtype, workers, budget, source.parallel_reads,
                          source.stream_axis, writes_in_flight=store.can.parallel,
                          reads_regions=source.reads_regions, tile=int(tile) if tile else None)
    from .rooms import worker_budget  # dask is an optional extra

    budget, who = worker_budget(scheduler, budget)
    return plan_worker_slabs(scales, source.num_channels, source.dtype, budget, source.stream_axis, who,
                             reads_regions=source.reads_regions, tile=int(tile) if tile else None)


def job_record(source: Source, plan: SlabPlan, **parameters: object) -> dict:
    """What job.json keeps: the input's fingerprint, the parameters that change bytes, and the
    slab size (journal entries are slabs)."""
    return json.loads(json.dumps({  # as stored, so that it compares equal when read back
        "input": source.fingerprint(), **parameters,
        "slab_planes": list(plan.slab_planes), "stream_axis": plan.stream_axis,
        **({"tiles": [list(t) for t in plan.tiles]} if plan.tiled else {})}))


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


