"""Surface meshes of every label of a segmentation, made in the conversion: block tasks mesh
scale 0 read back from the output (zmesh), label tasks assemble each label's pieces into
Neuroglancer's multi-resolution format (or the legacy one). Both run on the job's workers, a
few tasks ahead at a time, so memory is one block (or one label's mesh) per worker.

Why a second pass over what was written rather than meshing the slabs as they stream: a slab
spans the whole volume along two axes, so a block-wise mesher would have to keep a plane of
each slab for the next and could not choose its block shape; reading scale 0 back decodes each
chunk once more (measured in docs/benchmarks.md), needs no change to the pipeline, and is the
same code as `generate-meshes` on an existing pyramid.

Sharded meshes (the sharding work) plug in at `assemble._multilod`, which writes a label's
fragments and manifest: a shard writer takes the two as one entry keyed by the label.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..dataset import Dataset
from ..engine.executor import TaskExecutor
from ..errors import Interrupted, UsageError
from ..info import check_key
from ..meshes import MESH_INFO
from .assemble import MeshLayout, assemble
from .blocks import LEVELS, PARTS, BlockGrid, mesh_block
from .multilod import MULTILOD_INFO, QUANTIZATION_BITS

MESH_FORMATS = ("multilod", "legacy")
#: peak memory of a block task per cell of its block (uint32 labels, zmesh's tables, the
#: meshes), measured on the labels benchmark volume (docs/benchmarks.md)
BYTES_PER_CELL = 60
EDGES = (256, 128, 64, 32, 16)


@dataclass(frozen=True)
class MeshOptions:
    """What `--meshes` writes."""

    format: str = "multilod"
    directory: str = "mesh"
    block: int | None = None  # block edge in cells; None: the largest the memory budget allows

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


@dataclass(frozen=True)
class MeshReport:
    """What meshing did."""

    labels: np.ndarray  # the labels of scale 0 (background aside), sorted
    blocks: int
    edge: int
    bytes_written: int


def block_edge(per_worker: int) -> int:
    """The largest block edge whose task fits in a worker's share of the budget."""
    for edge in EDGES:
        if BYTES_PER_CELL * edge ** 3 <= per_worker:
            return edge
    return EDGES[-1]


def mesh_labels(volume: Dataset, pool: TaskExecutor, workers: int, per_worker: int,
                options: MeshOptions, should_stop: Callable[[], bool] = lambda: False) -> MeshReport:
    """Mesh every label of the volume's scale 0 and write the mesh directory (not the
    volume's info: the caller adds `mesh` to it)."""
    scale = volume.scales[0]
    edge = options.block or block_edge(per_worker)
    grid = BlockGrid(scale, edge)
    levels = 1 if options.format == "legacy" else len(LEVELS)
    volume.store.delete(PARTS)  # pieces of an interrupted run
    ahead = 2 * max(workers, 1)
    found: list[np.ndarray] = []
    blocks = list(grid.blocks())
    for ids in bounded(pool, ahead, should_stop, ((mesh_block, volume, grid, b, levels) for b in blocks)):
        found.append(ids)
    labels = np.unique(np.concatenate(found)) if found else np.zeros(0, np.uint64)
    layout = MeshLayout(options.directory, options.format, levels)
    written = sum(bounded(pool, ahead, should_stop,
                           ((assemble, volume, grid, layout, int(label)) for label in labels)))
    volume.store.delete(PARTS)
    volume.store.write(f"{options.directory}/info", json.dumps(_mesh_info(volume, options)).encode())
    return MeshReport(labels, len(blocks), edge, written)


def _mesh_info(volume: Dataset, options: MeshOptions) -> dict:
    if options.format == "legacy":
        return MESH_INFO
    rx, ry, rz = volume.scales[0].resolution
    return {"@type": MULTILOD_INFO, "vertex_quantization_bits": QUANTIZATION_BITS,
            "transform": [rx, 0, 0, 0, 0, ry, 0, 0, 0, 0, rz, 0], "lod_scale_multiplier": 1.0}


def bounded(pool: TaskExecutor, ahead: int, should_stop: Callable[[], bool],
             calls: Iterable[tuple[Any, ...]]) -> Iterator[Any]:
    """Results of the calls (function, arguments...), at most `ahead` in flight."""
    pending: set[Future[Any]] = set()
    calls = iter(calls)
    exhausted = False
    try:
        while pending or not exhausted:
            while not exhausted and len(pending) < ahead:
                call = next(calls, None)
                if call is None:
                    exhausted = True
                    break
                pending.add(pool.submit(*call))
            if not pending:
                break
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            if should_stop():
                raise Interrupted("meshing interrupted")
            for future in done:
                yield future.result()
    finally:
        for future in pending:
            future.cancel()
