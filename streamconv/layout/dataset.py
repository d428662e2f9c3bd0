"""A reader for precomputed volumes, ours or anyone's: used by verify, and by the steps that
start from an existing pyramid.

Chunks are looked up as the writers of our field store them: the flat name, the flat name
with `.gz` (gzip-compressed, the cloud-volume and neuroglancer-scripts convention on local
disk), and neuroglancer-scripts' nested `x0-x1/y0-y1/z0-z1` layout; a sharded scale through
its shard files (`sharding/reader.py`). An absent chunk reads as zeros, as in Neuroglancer and
tensorstore.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..encodings import GZIP, NO_COMPRESSION
from ..errors import DataError
from ..format.geometry import Box, Scale, triple
from ..format.info import VolumeInfo
from ..stores import Where, open_store
from ..stores.base import Store
from .shardreader import ShardedScaleReader

_FLAT = re.compile(r"(-?\d+)-(-?\d+)_(-?\d+)-(-?\d+)_(-?\d+)-(-?\d+)")
_NESTED = re.compile(r"-?\d+--?\d+")


@dataclass(frozen=True)
class Dataset:
    """A precomputed volume: its store, its `info`, and the scales a job works on (all of the
    info's, or the first alone for the full-resolution step)."""

    store: Store
    info: VolumeInfo
    scales: list[Scale]
    #: the spool of a sharded run in progress: chunks not yet in a shard file are read there
    spool: str | None = None
    _sharded: dict[int, ShardedScaleReader] = field(default_factory=dict, compare=False, repr=False)

    @property
    def dtype(self) -> np.dtype:
        return self.info.dtype

    @property
    def num_channels(self) -> int:
        return self.info.num_channels

    def encoding(self, level: int) -> str:
        return self.info.scales[level].codec.name

    def chunk_bytes(self, level: int, box: Box) -> bytes | None:
        """The stored (decompressed) bytes of a chunk, or None when it is absent."""
        spec = self.info.scales[level].sharding
        if spec is not None:
            if level not in self._sharded:
                self._sharded[level] = ShardedScaleReader(self.store, self.scales[level], spec, self.spool)
            return self._sharded[level].read(box)
        key = self.scales[level].key
        nested = "/".join(f"{a}-{b}" for a, b in zip(box.start, box.stop))
        for name in (f"{key}/{box.name}", f"{key}/{nested}"):
            for compression in (NO_COMPRESSION, GZIP):
                data = self.store.read(compression.key(name))
                if data is not None:
                    try:
                        return compression.decode(data)
                    except DataError as exc:
                        raise DataError(f"{self.store.url}/{compression.key(name)}: {exc}") from exc
        return None

    def read_chunk(self, level: int, box: Box) -> np.ndarray | None:
        """A chunk as a (c, z, y, x) array, or None when it is absent."""
        data = self.chunk_bytes(level, box)
        if data is None:
            return None
        x, y, z = box.shape
        shape = (self.num_channels, z, y, x)
        try:
            return self.info.scales[level].codec.decode(data, shape, self.dtype)
        except DataError as exc:
            raise DataError(f"{self.store.url}/{self.scales[level].key}/{box.name}: {exc}") from exc

    def stored_cells(self, level: int) -> list[tuple[int, int, int]] | None:
        """The grid cells (gx, gy, gz) of a scale that have a chunk file, in grid order (z, then
        y, then x), when the store can list them and they are stored flat; None otherwise
        (every cell must then be tried). A sparse or hostile info with a huge grid then costs
        one listing, not one lookup per cell."""
        if not self.store.can.list or self.info.scales[level].sharding is not None:
            return None  # a sharded scale's chunks are in its shard files, not files of their own
        scale = self.scales[level]
        cells = set()
        for key in self.store.list(scale.key):
            name = key.rsplit("/", 1)[-1].removesuffix(GZIP.suffix)
            match = _FLAT.fullmatch(name)
            if match is None:
                if _NESTED.fullmatch(name):
                    return None  # neuroglancer-scripts' x/y/z directories
                continue
            bounds = [int(v) for v in match.groups()]
            start = (bounds[0], bounds[2], bounds[4])
            cell = triple((a - o) // c for a, o, c in zip(start, scale.voxel_offset, scale.chunk_size))
            if all(0 <= g < n for g, n in zip(cell, scale.grid)) \
                    and scale.chunk(*cell).name == name:
                cells.add(cell)
        return sorted(cells, key=lambda c: (c[2], c[1], c[0]))

    def read(self, level: int, region: Box) -> np.ndarray:
        """A chunk-aligned region of a scale as a (c, z, y, x) array; absent chunks are zeros."""
        x, y, z = region.shape
        out = np.zeros((self.num_channels, z, y, x), self.dtype)
        for box in self.scales[level].chunks_in(region.start, region.stop):
            chunk = self.read_chunk(level, box)
            if chunk is not None:
                out[box.index(region.start)] = chunk
        return out


def read_info(store: Store) -> VolumeInfo | None:
    """The store's info, parsed and checked; None when there is none."""
    raw = store.read("info")
    return None if raw is None else VolumeInfo.parse(raw, f"{store.url}/info")


def open_dataset(url: Where) -> Dataset:
    """Open the precomputed volume at a path or URL."""
    store = open_store(url)
    info = read_info(store)
    if info is None:
        raise DataError(f"{store.url}: no info file, not a precomputed volume")
    return Dataset(store, info, info.geometry)
