"""The streaming shard writer: chunks wait in spool segments until their shard is complete.
(Scales whose chunk sizes are known ahead skip all this: `inplace.py` writes them in place;
`ShardSpool` and `ShardCompletion` send each scale its way.)

Workers encode chunks in parallel, band by band, and a shard gathers the chunks of many bands
of many slabs. Each band task therefore writes, for each shard it touches, its own *segment*
`<spool>/<scale key>/<shard file>/<band region>.seg`: the chunks' stored bytes (after the
data encoding: each chunk is encoded once, here) followed by a trailer of (id, size) pairs and
their count. A segment appears whole at commit or not at all, and its name depends only on the
band, so a band redone after a kill replaces its segment with the same bytes; no two processes
ever append to one file.

A shard is complete when every slab holding one of its chunks is complete (the journal's
`slab` lines, which `ShardCompletion` is told of as the pipeline writes them). Then a worker
assembles it (`AssembleShard`): reads the trailers, sorts by id, writes the shard file through
the Store (atomic, fsynced, since its spool is deleted next) and deletes the shard's spool. A
shard file that exists is complete: a resume deletes any spool left for it. A killed run
resumes with the journal's slabs: shards all of whose slabs are complete and that have no file
yet are assembled first, the other slabs are redone into their segments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..encodings import NO_COMPRESSION, Compression
from ..encodings.base import Encoded
from ..format.geometry import Box, Scale
from ..format.sharding import ShardingSpec, chunk_id, chunk_ids
from ..stores.base import Store, StreamWriter
from ..units import format_size
from .inplace import PlacedWriter, indexes
from .shardfile import Entry, write_shard
from .sink import ChunkSink, ChunkWriter, Finish

SEGMENT = ".seg"


def shard_folder(root: str, scale: Scale, spec: ShardingSpec, shard: int) -> str:
    return f"{root}/{scale.key}/{spec.file_name(shard)}"


@dataclass(frozen=True)
class ShardSpool:
    """The sink of a sharded output: scales with a spec spool their chunks, the others (none
    of ours; a step may mix) go to `files`. `compression` is the run's step (`--gzip`): a
    scale whose `data_encoding` is gzip stores each chunk as the `.gz` file it would otherwise
    write (the step commands follow the info, at the default level without `--gzip`)."""

    store: Store
    root: str  # the spool's key prefix, e.g. `.streamconv/spool`
    specs: tuple[ShardingSpec | None, ...]  # per scale
    files: ChunkSink
    compression: Compression
    #: per scale: bytes per voxel of a scale written in place (`inplace.py`), None: spooled
    placed: tuple[int | None, ...] = ()

    def open(self, level: int, scale: Scale, region: Box) -> ChunkWriter:
        spec = self.specs[level]
        if spec is None:
            return self.files.open(level, scale, region)
        voxel = self.placed[level] if level < len(self.placed) else None
        if voxel is not None:
            return PlacedWriter(self.store, scale, spec, voxel)
        step = self.compression.as_gzip() if spec.data_encoding == "gzip" else NO_COMPRESSION
        return _SegmentWriter(self.store, self.root, scale, spec, region, step)


class _SegmentWriter:
    """One band task's segments, one per shard it touches, written as chunks arrive."""

    def __init__(self, store: Store, root: str, scale: Scale, spec: ShardingSpec, region: Box,
                 step: Compression) -> None:
        self.store, self.root, self.scale, self.spec, self.region = store, root, scale, spec, region
        self.step = step
        self._segments: dict[int, tuple[StreamWriter, list[tuple[int, int]]]] = {}

    def put(self, box: Box, data: Encoded) -> int:
        cid = chunk_id(self.scale, box)
        shard = self.spec.locate(cid)[0]
        if shard not in self._segments:
            key = f"{shard_folder(self.root, self.scale, self.spec, shard)}/{self.region.name}{SEGMENT}"
            self._segments[shard] = (self.store.writer(key), [])
        out, entries = self._segments[shard]
        stored = self.step.encode(data)
        out.write(stored)
        entries.append((cid, len(stored)))
        return len(stored)

    def close(self) -> None:
        for out, entries in self._segments.values():
            out.write(np.array(entries, "<u8").tobytes() + np.array([len(entries)], "<u8").tobytes())
            out.commit()


def segment_entries(store: Store, key: str) -> list[Entry]:
    """The chunks a segment holds, from its trailer."""
    size = store.size(key) or 0
    count = int(np.frombuffer(store.read_range(key, size - 8, size) or bytes(8), "<u8")[0])
    start = size - 8 - 16 * count
    pairs = np.frombuffer(store.read_range(key, start, size - 8) or b"", "<u8").reshape(-1, 2)
    offsets = np.concatenate([[0], np.cumsum(pairs[:, 1])]).tolist()
    return [Entry(int(cid), int(n), key, int(o)) for (cid, n), o in zip(pairs.tolist(), offsets)]


def spooled(store: Store, folder: str) -> list[Entry]:
    """Every chunk spooled for a shard, sorted by id; a chunk in two segments (its band was
    cut differently by a resumed run with another worker count) is taken once: its bytes are
    the same."""
    entries = sorted((e for name in store.list(folder) if name.endswith(SEGMENT)
                      for e in segment_entries(store, name)), key=lambda e: (e.chunk_id, e.source))
    return [e for i, e in enumerate(entries) if i == 0 or entries[i - 1].chunk_id != e.chunk_id]


@dataclass(frozen=True)
class AssembleShard:
    """A worker's task: the shard file from its spool, then the spool deleted."""

    store: Store
    root: str
    scale: Scale
    spec: ShardingSpec
    shard: int

    def run(self) -> None:
        target = f"{self.scale.key}/{self.spec.file_name(self.shard)}"
        folder = shard_folder(self.root, self.scale, self.spec, self.shard)
        if self.store.size(target) is None:
            entries = spooled(self.store, folder)
            if entries:  # a shard without chunks (all skipped as empty) has no file
                write_shard(self.store, target, self.spec, entries)
        self.store.delete(folder)


@dataclass(frozen=True)
class ShardedLevel:
    """A scale the run writes sharded, with what the completion bookkeeping needs of its slabs."""

    level: int
    scale: Scale
    spec: ShardingSpec
    slab_planes: int
    voxel_bytes: int  # channels x item size
    placed: int | None = None  # bytes per voxel of a scale written in place (`inplace.py`)
    #: a tiled plan's tile extent along (band axis, third axis): slab indexes are then blocks
    #: (`engine/slabgrid.py`: `(slab * tiles_b + tile_b) * tiles_r + tile_r`)
    tile: tuple[int, int] | None = None

    def blocks(self, cells: np.ndarray, axis: int) -> np.ndarray:
        """The slab (block, when tiled) of each chunk of a grid (`cells`: one row per axis)."""
        chunk, size = self.scale.chunk_size, self.scale.size
        index = cells[axis].astype(np.int64) * chunk[axis] // self.slab_planes
        if self.tile is not None:
            b_ax = 2 if axis == 1 else 1
            for ax, ext in zip((b_ax, 3 - axis - b_ax), self.tile):
                index = index * -(-size[ax] // ext) + cells[ax].astype(np.int64) * chunk[ax] // ext
        return index


class ShardCompletion:
    """In the main process: which shards wait for which slabs; hands back `AssembleShard`
    tasks as slabs complete."""

    def __init__(self, store: Store, root: str, levels: list[ShardedLevel], axis: int) -> None:
        self.store, self.root, self.axis = store, root, axis
        self.levels = {lv.level: lv for lv in levels}
        self._slabs: dict[tuple[int, int], list[int]] = {}   # (level, slab) -> shards it feeds
        self._range: dict[tuple[int, int], tuple[int, int]] = {}  # (level, shard) -> slabs
        self._waiting: dict[tuple[int, int], int] = {}  # (level, shard) -> slabs not complete
        self._placed: list[tuple[ShardedLevel, int]] = []  # shards laid out in place
        for lv in levels:
            codes, cells = chunk_ids(lv.scale.grid)
            shards = lv.spec.shard_numbers(codes)
            slab = lv.blocks(cells, axis)
            numbers, inverse = np.unique(shards, return_inverse=True)
            lo = np.full(len(numbers), np.iinfo(np.int64).max)
            hi = np.full(len(numbers), -1)
            np.minimum.at(lo, inverse, slab)
            np.maximum.at(hi, inverse, slab)
            for shard, a, b in zip(numbers.tolist(), lo.tolist(), hi.tolist()):
                if lv.placed is not None:
                    self._placed.append((lv, shard))
                    continue
                self._range[(lv.level, shard)] = (a, b)
                for index in range(a, b + 1):
                    self._slabs.setdefault((lv.level, index), []).append(shard)

    def start(self, done: frozenset[tuple[int, int]]) -> list[Finish]:
        """Shards laid out in place get their indexes now (the same bytes on a resume), before
        any task writes into them or a replay reads them; spooled shards whose slabs are all
        complete are owed their assembly."""
        for lv, shard in self._placed:
            assert lv.placed is not None
            self.store.write_at(f"{lv.scale.key}/{lv.spec.file_name(shard)}",
                                indexes(lv.scale, lv.spec, lv.placed, shard))
        ready: list[Finish] = []
        for (level, shard), (a, b) in self._range.items():
            self._waiting[(level, shard)] = sum((level, i) not in done for i in range(a, b + 1))
            if self._waiting[(level, shard)] == 0:
                ready.append(self._task(level, shard))
        return ready

    def slab_done(self, level: int, index: int) -> list[Finish]:
        ready: list[Finish] = []
        for shard in self._slabs.get((level, index), []):
            self._waiting[(level, shard)] -= 1
            if self._waiting[(level, shard)] == 0:
                ready.append(self._task(level, shard))
        return ready

    def end(self) -> None:
        """Every shard is assembled: the spool's empty folders go."""
        self.store.delete(self.root)

    def _task(self, level: int, shard: int) -> AssembleShard:
        lv = self.levels[level]
        return AssembleShard(self.store, self.root, lv.scale, lv.spec, shard)

    def describe(self) -> str:
        """Shard files and the spool's bound: per scale, the chunks of the shards open at once,
        at most a shard's depth in slabs (plus one) of the whole cross-section, before
        compression."""
        total, lines = 0, []
        for lv in self.levels.values():
            if lv.placed is not None:
                shards = sum(1 for placed, _ in self._placed if placed is lv)
                lines.append(f"scale {lv.level} {lv.scale.key}: sharding preshift {lv.spec.preshift_bits}, "
                             f"minishard {lv.spec.minishard_bits}, shard {lv.spec.shard_bits} bits: "
                             f"{shards} shard files written in place (no spool)")
                continue
            shards = sum(1 for level, _ in self._range if level == lv.level)
            depth = max(b - a + 1 for (level, _), (a, b) in self._range.items() if level == lv.level)
            size = lv.scale.size
            planes = min(size[self.axis], (depth + 1) * lv.slab_planes)
            spool = planes * size[0] * size[1] * size[2] // size[self.axis] * lv.voxel_bytes
            total += spool
            lines.append(f"scale {lv.level} {lv.scale.key}: sharding preshift {lv.spec.preshift_bits}, "
                         f"minishard {lv.spec.minishard_bits}, shard {lv.spec.shard_bits} bits: "
                         f"{shards} shard files, spool up to {format_size(spool)}")
        if any(lv.placed is None for lv in self.levels.values()):
            lines.append(f"spool: up to {format_size(total)} on the output's disk (before compression)")
        return "\n".join(lines)
