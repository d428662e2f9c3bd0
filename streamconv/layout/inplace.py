"""Shards written in place: when every chunk's stored size is known before it is encoded (raw
chunks, data not gzip, none skipped as empty), a shard's whole layout follows from the grid,
so band tasks write each chunk straight to its final offset in the shard file. No spool, no
second copy of the data, no assembly at the end: a sharded raw scale costs what its chunk
files would (the spool and its copy had made the sharded 1 GiB run 2-3x the unsharded one).

Layout (format notes 5.4 allow any order; cloud-volume writes this one): the shard index, then
every chunk's data in (minishard, id) order, then the minishard indexes. Chunk offsets depend
on chunk sizes only, so a task computes them from the ids of the shard; the indexes, which
depend on nothing written, are written by the main process when the run starts (again on a
resume: the same bytes).

Resume: a shard file exists from the start and is complete only when every slab holding one
of its chunks is in the journal, exactly like a scale of chunk files: a redone slab rewrites
its ranges with the same bytes, and the journal's checkpoints make them durable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..encodings.base import Codec, Encoded
from ..format.geometry import Box, Scale
from ..format.sharding import ShardingSpec, chunk_id, morton_bits
from ..stores.base import Store
from .shardfile import encode_index, minishard_index

MAX_BITS = 16  # chunk ids of a shard laid out in a task: 2^16 (~6 MiB of temporaries, 1.5 MiB kept)
FLUSH = 1 << 20  # a task's chunks written per call to the store


def placed_voxel_bytes(store: Store, scale: Scale, spec: ShardingSpec, codec: Codec, dtype: np.dtype,
                       channels: int, skip_empty: bool) -> int | None:
    """Bytes per voxel of a scale that can be written in place, else None (spooled): the store
    writes at offsets, the codec's sizes are known ahead, data is raw, every chunk is stored,
    and a shard is one aligned block of ids (identity hash, no ignored high bits), small
    enough to lay out in a task."""
    below = spec.preshift_bits + spec.minishard_bits
    voxel = codec.voxel_bytes(dtype, channels)
    if (voxel is None or not store.can.write_at or skip_empty or spec.data_encoding != "raw"
            or spec.hash != "identity" or min(below, sum(morton_bits(scale.grid))) > MAX_BITS
            or below + spec.shard_bits < sum(morton_bits(scale.grid))):
        return None
    return voxel


@dataclass(frozen=True)
class Layout:
    """Where each chunk of one shard lies: ids ascending, their offsets and sizes."""

    ids: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray
    data_end: int  # where the minishard indexes start

    def find(self, cid: int) -> tuple[int, int]:
        i = int(np.searchsorted(self.ids, np.uint64(cid)))
        assert i < len(self.ids) and int(self.ids[i]) == cid, cid
        return int(self.offsets[i]), int(self.sizes[i])


def layout(scale: Scale, spec: ShardingSpec, voxel_bytes: int, shard: int) -> Layout:
    """The shard's chunks (the ids of its block that lie in the grid), in (minishard, id) order
    after the shard index."""
    total = sum(morton_bits(scale.grid))
    below = min(spec.preshift_bits + spec.minishard_bits, total)
    ids = np.arange(shard << below, min((shard + 1) << below, 1 << total), dtype=np.uint64)
    cells = _cells(ids, scale.grid)
    inside = np.all(cells < np.array(scale.grid, np.uint64)[:, None], axis=0)
    ids, cells = ids[inside], cells[:, inside].astype(np.int64)
    extent = [np.minimum(c, n - g * c) for c, n, g in zip(scale.chunk_size, scale.size, cells)]
    sizes = extent[0] * extent[1] * extent[2] * voxel_bytes
    order = np.lexsort((ids, _minishards(ids, spec)))
    start = 16 * spec.minishards
    ends = start + np.cumsum(sizes[order])
    offsets = np.empty_like(sizes)
    offsets[order] = ends - sizes[order]
    return Layout(ids, offsets, sizes, int(ends[-1]) if len(ends) else start)


def indexes(scale: Scale, spec: ShardingSpec, voxel_bytes: int, shard: int) -> list[tuple[int, bytes]]:
    """The shard index and the minishard indexes of a shard laid out in place: what the main
    process writes at the start. Empty for a shard without chunks (no file)."""
    place = layout(scale, spec, voxel_bytes, shard)
    if not len(place.ids):
        return []
    start = 16 * spec.minishards
    minishards = _minishards(place.ids, spec)
    table = np.zeros((spec.minishards, 2), "<u8")
    parts, at = [], place.data_end - start
    for m in np.unique(minishards).tolist():
        mine = minishards == m
        data = encode_index(minishard_index(place.ids[mine], int(place.offsets[mine][0]) - start,
                                            place.sizes[mine]), spec.minishard_index_encoding)
        table[m] = (at, at + len(data))
        parts.append(data)
        at += len(data)
    return [(0, table.tobytes()), (place.data_end, b"".join(parts))]


def _minishards(ids: np.ndarray, spec: ShardingSpec) -> np.ndarray:
    """The minishard of each id (identity hash), at once."""
    if spec.preshift_bits >= 64:
        return np.zeros_like(ids)
    return (ids >> np.uint64(spec.preshift_bits)) & np.uint64(spec.minishards - 1)


def _cells(ids: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """The (x, y, z) grid cell of each compressed Morton code (format notes 5.6, inverted)."""
    bits = morton_bits(grid)
    cells = np.zeros((3, len(ids)), np.uint64)
    j = 0
    for i in range(max(bits)):
        for d in range(3):
            if i < bits[d]:
                cells[d] |= ((ids >> np.uint64(j)) & np.uint64(1)) << np.uint64(i)
                j += 1
    return cells


@dataclass
class PlacedWriter:
    """One band task's chunks, written at their offsets in their shard files."""

    store: Store
    scale: Scale
    spec: ShardingSpec
    voxel_bytes: int
    _layouts: dict[int, Layout] = field(default_factory=dict)
    _pending: dict[int, list[tuple[int, Encoded]]] = field(default_factory=dict)
    _held: int = 0

    def put(self, box: Box, data: Encoded) -> int:
        cid = chunk_id(self.scale, box)
        shard = self.spec.locate(cid)[0]
        if shard not in self._layouts:
            self._layouts[shard] = layout(self.scale, self.spec, self.voxel_bytes, shard)
        offset, size = self._layouts[shard].find(cid)
        assert len(data) == size, (box, len(data), size)
        self._pending.setdefault(shard, []).append((offset, data))
        self._held += size
        if self._held >= FLUSH:
            self.close()
        return size

    def close(self) -> None:
        for shard, pieces in self._pending.items():
            self.store.write_at(f"{self.scale.key}/{self.spec.file_name(shard)}", pieces)
        self._pending, self._held = {}, 0
