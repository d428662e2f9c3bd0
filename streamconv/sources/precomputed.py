"""A precomputed volume on disk as a source: the full-resolution chunks that an earlier step
(ours or another tool's) wrote, for `compute-scales`."""

from __future__ import annotations

import numpy as np

from ..format.geometry import Box, Vec3, ceil_div, triple
from ..layout.dataset import Dataset
from .base import MemoryOrder, Source
from .placement import Placement


class PrecomputedSource:
    """Scale 0 of a precomputed volume, read in z planes through the volume's chunks."""

    stream_axis = 2
    parallel_reads = True
    reads_regions = True  # by the chunks the region meets
    memory_order = MemoryOrder()
    placement: Placement | None = None  # the chunks of a pyramid: its transform.json is its own

    def __init__(self, volume: Dataset) -> None:
        self.volume = volume
        scale = volume.scales[0]
        self.shape: Vec3 = scale.size
        self.num_channels = volume.num_channels
        self.dtype = volume.dtype
        self.resolution = scale.resolution

    def read(self, p0: int, p1: int, out: np.ndarray) -> None:
        scale = self.volume.scales[0]
        cz = scale.chunk_size[2]
        z0, z1 = p0 // cz * cz, min(ceil_div(p1, cz) * cz, scale.size[2])
        region = self.volume.read(0, Box((0, 0, z0), (scale.size[0], scale.size[1], z1)))
        out[...] = region[:, p0 - z0:p1 - z0]

    def read_region(self, region: Box, out: np.ndarray) -> None:
        scale = self.volume.scales[0]
        start = triple(a // c * c for a, c in zip(region.start, scale.chunk_size))
        stop = triple(min(ceil_div(b, c) * c, n) for b, c, n in zip(region.stop, scale.chunk_size, scale.size))
        out[...] = self.volume.read(0, Box(start, stop))[region.index(start)]

    def mapped(self, p0: int, p1: int) -> None:
        return None  # chunks decoded from the pyramid

    def window(self, p0: int, p1: int) -> Source:
        return self

    def fingerprint(self) -> dict:
        return {"precomputed": self.volume.store.url, "scale": self.volume.info.scales[0].to_dict()}

    def close(self) -> None:
        pass
