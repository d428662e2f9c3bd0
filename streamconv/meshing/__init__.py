"""Surface meshes of every label of a segmentation, made in the conversion: block tasks mesh
scale 0 read back from the output (zmesh), label tasks assemble each label's pieces into
Neuroglancer's multi-resolution format (or the legacy one). Both run on the job's workers, a
few tasks ahead at a time, so memory is one block (or one label's mesh) per worker.

Why a second pass over what was written rather than meshing the slabs as they stream: a slab
spans the whole volume along two axes, so a block-wise mesher would have to keep a plane of
each slab for the next and could not choose its block shape; reading scale 0 back decodes each
chunk once more (measured in docs/benchmarks.md), needs no change to the pipeline, and is the
same code as `generate-meshes` on an existing pyramid.

The pass keeps its own job record and journal (`job.py`), so it resumes after a kill; its
labels are written by a `LabelWriter` (`assemble.py`): two files per label, or, with
`--sharding`, shard files (`sharded.py`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.executor import TaskExecutor, bounded
from ..errors import UsageError
from ..format.info import check_key
from ..format.sharding_choice import NoSharding, Sharding
from ..layout.dataset import Dataset
from .assemble import LabelWriter, LegacyFiles, MultilodFiles, assemble
from .blocks import LEVELS, PARTS, BlockGrid, mesh_block
from .job import prepare_meshes
from .sharded import ShardedMultilod

MESH_FORMATS = ("multilod", "legacy")
#: peak memory of a block task per cell of its block (uint32 labels, zmesh's tables, the
#: meshes), measured on the labels benchmark volume (docs/benchmarks.md)
BYTES_PER_CELL = 60
#: no larger than 128: zmesh's simplification costs more than linearly in a piece's size, so
#: the same labels in smaller blocks take less CPU (256^3 labels volume, 200 labels, one
#: process: blocks of 256 cells 120 s, 129: 90 s, 86: 72 s, 52: 80 s; docs/benchmarks.md)
EDGES = (128, 64, 32, 16)


@dataclass(frozen=True)
class MeshOptions:
    """What `--meshes` writes."""

    format: str = "multilod"
    directory: str = "mesh"
    block: int | None = None  # block edge in cells; None: the largest the memory budget allows
    sharding: Sharding = NoSharding()  # of the labels' meshes (multilod only)

    def check(self) -> None:
        if self.format not in MESH_FORMATS:
            raise UsageError(f"--mesh-format must be one of {', '.join(MESH_FORMATS)}, got {self.format!r}")
        try:
            check_key(self.directory)
        except ValueError:
            raise UsageError(f"the mesh directory {self.directory!r} is not a relative path inside "
                             "the dataset") from None
        if self.block is not None and self.block < 2:
            raise UsageError(f"the mesh block edge must be at least 2 cells, got {self.block}")
        if self.format == "legacy" and self.sharded:
            raise UsageError("--mesh-format legacy has no sharded variant; use --mesh-format multilod "
                             "or --sharding off")

    @property
    def sharded(self) -> bool:
        return self.sharding.hashed(1) is not None

    @property
    def levels(self) -> int:
        return 1 if self.format == "legacy" else len(LEVELS)

    def record(self) -> dict:
        """For the mesh pass's job.json: what changes the files written (the block edge is
        added by `prepare_meshes`)."""
        return {"format": self.format, "directory": self.directory, "levels": self.levels,
                "sharded": self.sharded, "writes": [self.directory]}

    def writer(self, labels: int) -> LabelWriter:
        """How the labels are written, once their number is known (it sizes the shards)."""
        if self.format == "legacy":
            return LegacyFiles(self.directory)
        spec = self.sharding.hashed(labels)
        return MultilodFiles(self.directory, self.levels) if spec is None else \
            ShardedMultilod(self.directory, self.levels, spec)


@dataclass(frozen=True)
class MeshReport:
    """What meshing did."""

    labels: np.ndarray | None  # the labels of scale 0 (background aside), sorted; None: not read
    count: int                 # how many
    blocks: int                # meshed by this run
    edge: int
    bytes_written: int
    complete: bool = False     # the output held this finished mesh pass: nothing was done


def block_edge(per_worker: int, cells: Sequence[int], workers: int) -> int:
    """The block edge: the largest of `EDGES` whose task fits in a worker's share of the
    budget, halved while there are fewer blocks than two per worker, then evened out so that
    the blocks along each axis are of equal size (within one cell) rather than full blocks and
    a sliver: the padded volume has size + 1 cells, and a 256^3 volume cut into blocks of 256
    was one block of all the work and seven of one plane, so one worker meshed it all."""
    fits = [e for e in EDGES if BYTES_PER_CELL * e ** 3 <= per_worker] or [EDGES[-1]]
    for edge in fits:
        counts = [-(-n // edge) for n in cells]
        if math.prod(counts) >= 2 * max(workers, 1) or edge == fits[-1]:
            break
    return max(-(-n // c) for n, c in zip(cells, counts))


def mesh_labels(volume: Dataset, pool: TaskExecutor, workers: int, per_worker: int,
                options: MeshOptions, should_stop: Callable[[], bool] = lambda: False,
                overwrite: bool = False) -> MeshReport:
    """Mesh every label of the volume's scale 0 and write the mesh directory (not the
    volume's info: the caller adds `mesh` to it); resumes an interrupted pass."""
    record = {"volume": volume.info.volume_part(), **options.record()}
    cells = [n + 1 for n in volume.scales[0].size]  # the padded volume's (BlockGrid)
    job = prepare_meshes(volume.store, record, options.block, block_edge(per_worker, cells, workers), overwrite)
    if job.complete:
        return MeshReport(None, job.finished_labels(), 0, job.edge, 0, complete=True)
    grid = BlockGrid(volume.scales[0], job.edge)
    ahead = 2 * max(workers, 1)
    labels = job.labels()
    todo = [] if labels is not None else \
        [(i, b) for i, b in enumerate(grid.blocks()) if i not in job.done_blocks]
    if labels is None:
        calls = ((_numbered, i, mesh_block, volume, grid, b, options.levels) for i, b in todo)
        for index in bounded(pool, ahead, should_stop, calls):
            job.journal.record(0, index)
        labels = np.asarray(sorted(int(k.rsplit("/", 1)[-1]) for k in volume.store.list(PARTS)), np.uint64)
        job.blocks_meshed(labels)
    writer = options.writer(len(labels))
    written = sum(bounded(pool, ahead, should_stop,
                          ((assemble, volume, grid, writer, int(label)) for label in labels)))
    written += sum(bounded(pool, ahead, should_stop, writer.last_tasks(volume.store, labels)))
    volume.store.write(f"{options.directory}/info", json.dumps(writer.info(volume)).encode())
    job.finish(len(labels))
    return MeshReport(labels, len(labels), len(todo), job.edge, written)


def _numbered(index: int, function: Callable[..., Any], *args: Any) -> int:
    """Run a task, return its number (for the journal)."""
    function(*args)
    return index
