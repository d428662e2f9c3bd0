"""A block's task on a Dask worker (`engine/distributed.py`): fill one block (a slab of one
scale, or a tile of one: `SlabGrid`) in the worker's own memory, write its chunks, and leave its
piece of the next scale in the store. Nothing here touches the client's memory."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..encodings import ChunkFormat
from ..format.geometry import Box, Scale, Vec3, triple
from ..kernels.stats import ChannelStats, Sampling, merge
from ..layout.dataset import Dataset
from ..layout.sink import ChunkSink
from ..sources import Source
from ..sources.base import MemoryOrder
from ..stores.base import Store
from .buffers import PrivateSlab
from .hostsync import where
from .tasks import Band, Downsample, fill, fill_from_store, process_band


@dataclass(frozen=True)
class Piece:
    """What a slab downsamples into: a piece of the next scale, kept in the store under `key`."""

    key: str
    origin: Vec3                      # voxel of the next scale at the piece's first element
    shape: tuple[int, int, int, int]  # (c, z, y, x)
    factor: Vec3


@dataclass(frozen=True)
class SlabTask:
    """One slab of one scale, and everything its task needs besides the store."""

    level: int
    p0: int
    p1: int
    shape: tuple[int, int, int, int]  # (c, z, y, x) of the slab in the task's memory
    dtype: str
    order: MemoryOrder
    origin: Vec3
    bands: tuple[Box, ...]
    scale: Scale
    fmt: ChunkFormat
    sink: ChunkSink  # chunk files, or shards (written in place or spooled) as locally
    skip_empty: bool
    #: how the slab is filled: from the source, from pieces of the finer scale, or read back
    #: from its own chunks (`replay`: complete already, only its piece is lost)
    source: Source | None
    pieces: tuple[tuple[str, Box], ...]  # key of each piece of the finer scale, and the voxels it holds
    replay: Dataset | None
    down: Piece | None  # None on the coarsest scale
    method: str
    outside: float | None
    stats: Sampling | None = None  # the bands' value statistics: `Band.stats`


def run_slab(task: SlabTask, store: Store, *after: object
             ) -> tuple[int, int, int, list[ChannelStats] | None, str]:
    """Fill, write and downsample one slab; (chunks visited, written, bytes, value statistics,
    the worker that wrote them: the client has that worker's host sync them before it journals
    the slab, `hostsync.py`). `after`: the finer tasks' results, only there so that Dask runs
    this task after them."""
    slab = PrivateSlab.zeros(task.shape, task.dtype, task.order)
    if task.source is not None:
        _, nz, ny, nx = task.shape
        region = Box(task.origin, triple(a + n for a, n in zip(task.origin, (nx, ny, nz))))
        fill(task.source, region, slab, task.origin)
    for key, box in task.pieces:
        piece = store.read(key)
        if piece is None:
            raise FileNotFoundError(f"{store.url}: {key} is missing (its slab is journalled complete)")
        target = slab.data[box.index(task.origin)]
        target[...] = np.frombuffer(piece, task.dtype).reshape(target.shape)  # raw, (c, z, y, x) in C order
    if task.replay is not None:
        for region in task.bands:
            fill_from_store(task.replay, task.level, region, slab, task.origin)
    out = PrivateSlab.zeros(task.down.shape, task.dtype) if task.down else None
    down = Downsample(out, task.down.origin, task.down.factor, task.method, task.outside) if task.down and out else None
    totals = np.zeros(3, np.int64)
    stats = []
    for region in task.bands:
        done = process_band(Band(slab, task.origin, task.level, task.scale, region, task.fmt.codec,
                                    task.sink, task.skip_empty, down,
                                    write=task.replay is None, stats=task.stats))
        totals += (done.visited, done.written, done.nbytes)
        stats += [done.stats] if done.stats is not None else []
    if task.down and out:  # raw bytes, C order: the coarser task knows the shape (no .npy header to copy behind)
        store.write(task.down.key, np.ascontiguousarray(out.data).data.cast("B"))
    return (int(totals[0]), int(totals[1]), int(totals[2]), merge(stats, np.dtype(task.dtype)) if stats else None,
            where())
