"""A block's task on a Dask worker (`engine/distributed.py`): fill one block (a slab of one
scale, or a tile of one: `SlabGrid`) in the worker's own memory, write its chunks, and leave its
piece of the next scale in the store. Nothing here touches the client's memory.

A tiled slab of a source that decodes whole sections is one task (`run_decoded`): its sections
decoded once into a scratch file on the worker's local disk, then its tiles' tasks one after
the other, each filled from that file."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, replace

import numpy as np

from ..encodings import ChunkFormat
from ..errors import NoSpaceError
from ..format.geometry import Box, Scale, Vec3, triple
from ..kernels.stats import ChannelStats, Sampling, merge
from ..layout.dataset import Dataset
from ..layout.sink import ChunkSink
from ..sources import Source
from ..sources.base import MappedSlab, MemoryOrder, spans_planes
from ..stores.base import Store
from ..units import format_size
from .buffers import SPARE, PrivateSlab, SpareRoom
from .hostsync import current_worker, where
from .scratch import ScratchSlab, decode_into, fill_from_scratch
from .tasks import Band, Downsample, Slab, fill, fill_from_store, process_band


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
    #: a tile of scale 0 filled from its slab's decoded sections (tile `t` of them): `run_decoded`
    scratch: tuple[ScratchSlab, int] | None = None
    #: what its worker may keep of its buffers for the next task (`buffers.SpareBuffers`)
    spare: SpareRoom = SpareRoom()

    @property
    def box(self) -> Box:
        """The block's voxels (x, y, z) in its scale."""
        _, nz, ny, nx = self.shape
        return Box(self.origin, triple(a + n for a, n in zip(self.origin, (nx, ny, nz))))


#: what a block's task did: chunks visited, written, bytes, value statistics, and the worker
#: that wrote them (the client has that worker's host sync them before it journals the block,
#: `hostsync.py`)
SlabDone = tuple[int, int, int, list[ChannelStats] | None, str]


def run_slab(task: SlabTask, store: Store, *after: object) -> SlabDone:
    """Fill, write and downsample one slab. `after`: the finer tasks' results, only there so that
    Dask runs this task after them."""
    return _write_slab(task, store)


def _write_slab(task: SlabTask, store: Store) -> SlabDone:
    worker = current_worker()
    SPARE.limit(task.spare.bytes(worker.state.nthreads if worker is not None else 1))
    slab: Slab | None = _mapped(task)
    if slab is None:
        # read from the source, the slab is covered whole; filled otherwise, perhaps in part
        slab = PrivateSlab.new(task.shape, task.dtype, task.order, zeroed=task.source is None)
        if task.scratch is not None:
            fill_from_scratch(*task.scratch, task.p0, task.p1, slab, task.origin)
        elif task.source is not None:
            fill(task.source, task.box, slab, task.origin)
    for key, box in task.pieces:
        piece = store.read(key)
        if piece is None:
            raise FileNotFoundError(f"{store.url}: {key} is missing (its slab is journalled complete)")
        target = slab.array()[box.index(task.origin)]
        target[...] = np.frombuffer(piece, task.dtype).reshape(target.shape)  # raw, (c, z, y, x) in C order
    if task.replay is not None:
        for region in task.bands:
            fill_from_store(task.replay, task.level, region, slab, task.origin)
    out = PrivateSlab.new(task.down.shape, task.dtype) if task.down else None
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


def _mapped(task: SlabTask) -> MappedSlab | None:
    """The block's planes of the input file mapped, as the local engine's tasks map them
    (`Source.mapped`: an uncompressed local volume stored as it is output), for a block of whole
    planes read from the source: no read and no slab of the task's own (the read was a tenth of
    the worker's time on the 1 GiB volume; mapping costs about two thirds of it, and the
    worker's peak fell by the slab: docs/benchmarks.md). A file cut short meanwhile is found by
    `MappedSlab.array` on the next task, and by the client after a worker died of it."""
    source = task.source
    if source is None or not spans_planes(task.box, source.shape, source.stream_axis):  # a scratch tile has none
        return None
    return source.mapped(task.p0, task.p1)


@dataclass(frozen=True)
class DecodedSlab:
    """The tiles still to write of one slab of scale 0, of a source that decodes whole sections
    (`SlabPlan.decode_per_slab`): one task, so that each section is decoded once, not once per
    tile, and on one worker, whose local disk holds them meanwhile."""

    source: Source               # the slab's planes
    axis: int                    # the stream axis
    tiles: tuple[SlabTask, ...]  # the same planes, `source` None: filled from the scratch file


def run_decoded(slab: DecodedSlab, store: Store, *after: object) -> list[SlabDone]:
    """Decode each section of the slab once into a scratch file cut by tile (`scratch.decode_into`,
    as the local engine does), then run each tile's task filled from it (`fill_from_scratch`),
    freeing each tile's part once filled. The file lies in the worker's local directory and goes
    with the task, done or failed (a killed worker's directory is purged by Dask's next worker
    there). Its bytes count against that disk; the memory is a decoded section, then one tile's
    task, one after the other (`budget.task_memory`)."""
    first = slab.tiles[0]
    boxes = tuple(t.box for t in slab.tiles)
    item = first.shape[0] * np.dtype(first.dtype).itemsize
    with tempfile.TemporaryDirectory(prefix="streamconv-scratch-", dir=_local_directory()) as directory:
        scratch = ScratchSlab(os.path.join(directory, "slab.raw"), slab.axis, boxes, item, first.order)
        free = shutil.disk_usage(directory).free
        if free < scratch.size:
            raise NoSpaceError(f"{directory}: a slab's decoded sections need {format_size(scratch.size)} of the "
                               f"worker's local disk, which has {format_size(free)} free; start the workers "
                               "with a --local-directory on a larger disk")
        scratch.create()
        for p in range(first.p0, first.p1):
            decode_into(slab.source, scratch, p)
        done = []
        for t, task in enumerate(slab.tiles):
            done.append(_write_slab(replace(task, scratch=(scratch, t)), store))
            scratch.drop(t)
    return done


def _local_directory() -> str:
    """The Dask worker's local directory (`dask worker --local-directory`, Dask's
    `temporary-directory`: local disk, meant for such files); outside a worker, the system's
    temporary directory."""
    worker = current_worker()
    return str(worker.local_directory) if worker is not None else tempfile.gettempdir()

