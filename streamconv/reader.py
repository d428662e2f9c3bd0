"""A reader for precomputed volumes, ours or anyone's: used by verify, and by the steps that
start from an existing pyramid.

Chunks are looked up as the writers of our field store them: the flat name, the flat name
with `.gz` (gzip-compressed, the cloud-volume and neuroglancer-scripts convention on local
disk), and neuroglancer-scripts' nested `x0-x1/y0-y1/z0-z1` layout. An absent chunk reads as
zeros, as in Neuroglancer and tensorstore.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from .encodings import codec_for_scale, gzip_decompress
from .errors import DataError
from .geometry import Box, Scale
from .storage import Store, open_store


@dataclass(frozen=True)
class Volume:
    """The `info` of a precomputed volume, and how to read its chunks."""

    store: Store
    info: dict
    scales: list[Scale]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.info["data_type"])

    @property
    def num_channels(self) -> int:
        return int(self.info["num_channels"])

    def encoding(self, level: int) -> str:
        return self.info["scales"][level]["encoding"]

    def chunk_bytes(self, level: int, box: Box) -> bytes | None:
        """The stored (decompressed) bytes of a chunk, or None when it is absent."""
        key = self.scales[level].key
        nested = "/".join(f"{a}-{b}" for a, b in zip(box.start, box.stop))
        for name in (f"{key}/{box.name}", f"{key}/{nested}"):
            data = self.store.read(name)
            if data is not None:
                return data
            data = self.store.read(name + ".gz")
            if data is not None:
                try:
                    return gzip_decompress(data)
                except DataError as exc:
                    raise DataError(f"{self.store.url}/{name}.gz: {exc}") from exc
        return None

    def read_chunk(self, level: int, box: Box) -> np.ndarray | None:
        """A chunk as a (c, z, y, x) array, or None when it is absent."""
        data = self.chunk_bytes(level, box)
        if data is None:
            return None
        x, y, z = box.shape
        shape = (self.num_channels, z, y, x)
        try:
            return codec_for_scale(self.info["scales"][level]).decode(data, shape, self.dtype)
        except DataError as exc:
            raise DataError(f"{self.store.url}/{self.scales[level].key}/{box.name}: {exc}") from exc

    def read(self, level: int, region: Box) -> np.ndarray:
        """A chunk-aligned region of a scale as a (c, z, y, x) array; absent chunks are zeros."""
        x, y, z = region.shape
        out = np.zeros((self.num_channels, z, y, x), self.dtype)
        for box in self.scales[level].chunks_in(region.start, region.stop):
            chunk = self.read_chunk(level, box)
            if chunk is not None:
                out[box.index(region.start)] = chunk
        return out


def open_volume(url: str | os.PathLike) -> Volume:
    """Open the precomputed volume at a local path."""
    store = open_store(url)
    raw = store.read("info")
    if raw is None:
        raise DataError(f"{store.url}: no info file, not a precomputed volume")
    try:
        info = json.loads(raw)
        previous = None
        scales = []
        for s in info["scales"]:
            resolution = tuple(float(r) for r in s["resolution"])
            factor = (1, 1, 1) if previous is None else tuple(
                max(1, round(r / p)) for r, p in zip(resolution, previous))
            scales.append(Scale(s["key"], tuple(s["size"]), resolution, tuple(s["chunk_sizes"][0]),
                                factor, tuple(s.get("voxel_offset", (0, 0, 0)))))  # type: ignore[arg-type]
            previous = resolution
        np.dtype(info["data_type"])
        int(info["num_channels"])
        if not scales or any(len(v) != 3 for s in scales for v in (s.size, s.resolution, s.chunk_size)):
            raise ValueError("every scale needs three sizes, resolutions and chunk sizes")
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise DataError(f"{store.url}/info: not a valid precomputed info file ({exc})") from exc
    return Volume(store, info, scales)
