"""Gathering a label's pieces from every block into the files Neuroglancer reads.

Multi-resolution: a fragment of level `lod` covers 2**lod blocks along each axis, and is the
union of those blocks' pieces at that level. Each piece lies within its own block, so no
triangle of a coarser fragment crosses the 2x2x2 split into the finer ones, as the format
requires. Legacy: one fragment per label, the finest pieces in nanometres.

How a label's mesh is stored is its `LabelWriter`'s business: two files per label
(`MultilodFiles`, `LegacyFiles`) or an entry of a shard (`sharded.ShardedMultilod`). A writer
also says whether a label is written already, so that a label task redone after a kill (its
pieces perhaps half deleted) does not write a label from what is left of them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..layout.dataset import Dataset
from ..stores.base import Store
from .blocks import PARTS, BlockGrid, Part, read_parts
from .legacy import LEGACY_INFO, LEGACY_MANIFEST, encode_legacy
from .multilod import MULTILOD_INFO, MULTILOD_MANIFEST, QUANTIZATION_BITS, Lod, Manifest, encode_fragment, zorder


class LabelWriter(Protocol):
    """Where and how a label's mesh is written."""

    @property
    def directory(self) -> str:
        """The mesh directory, relative to the dataset."""

    @property
    def levels(self) -> int:
        """Levels of detail the block tasks make."""

    def done(self, store: Store, label: int) -> bool:
        """Whether the label's mesh is written whole (its last file exists)."""

    def write(self, volume: Dataset, grid: BlockGrid, label: int, parts: list[Part]) -> int:
        """Write the label's mesh; returns the bytes written."""

    def info(self, volume: Dataset) -> dict:
        """The mesh directory's `info`."""

    def last_tasks(self, store: Store, labels: np.ndarray) -> list[tuple[Any, ...]]:
        """Tasks (function, arguments...) to run once every label is written (the shards)."""


def assemble(volume: Dataset, grid: BlockGrid, writer: LabelWriter, label: int) -> int:
    """Write a label's mesh and remove its pieces; returns the bytes written."""
    written = 0
    if not writer.done(volume.store, label):
        written = writer.write(volume, grid, label, read_parts(volume, label))
    volume.store.delete(f"{PARTS}/{label}")
    return written


@dataclass(frozen=True)
class MultilodFiles:
    """`<label>` (the fragments) and `<label>.index` (the manifest, written last)."""

    directory: str
    levels: int

    def done(self, store: Store, label: int) -> bool:
        return store.size(f"{self.directory}/{label}{MULTILOD_MANIFEST}") is not None

    def write(self, volume: Dataset, grid: BlockGrid, label: int, parts: list[Part]) -> int:
        data, index = multilod(grid, self.levels, parts)
        volume.store.write(f"{self.directory}/{label}", data)
        volume.store.write(f"{self.directory}/{label}{MULTILOD_MANIFEST}", index)
        return len(data) + len(index)

    def info(self, volume: Dataset) -> dict:
        return multilod_info(volume)

    def last_tasks(self, store: Store, labels: np.ndarray) -> list[tuple[Any, ...]]:
        return []


def multilod_info(volume: Dataset) -> dict:
    rx, ry, rz = volume.scales[0].resolution
    return {"@type": MULTILOD_INFO, "vertex_quantization_bits": QUANTIZATION_BITS,
            "transform": [rx, 0, 0, 0, 0, ry, 0, 0, 0, 0, rz, 0], "lod_scale_multiplier": 1.0}


def multilod(grid: BlockGrid, levels: int, parts: list[Part]) -> tuple[bytes, bytes]:
    """A label's fragment data (Draco meshes in manifest order) and its manifest."""
    edge = grid.edge
    fragments: list[bytes] = []
    lods = []
    for lod in range(levels):
        cells: dict[tuple[int, int, int], list[Part]] = defaultdict(list)
        for part in parts:
            cells[(part.block[0] >> lod, part.block[1] >> lod, part.block[2] >> lod)].append(part)
        positions = np.asarray(sorted(cells), np.int64).reshape(-1, 3)
        positions = positions[zorder(positions)]
        sizes, kept = [], []
        extent = (edge << lod,) * 3
        for cell in map(tuple, positions.tolist()):
            vertices, faces = _joined(cells[cell], lod, edge, np.asarray(cell) * (edge << lod))
            if len(faces):  # a piece simplified away: no fragment rather than an empty one
                fragments.append(encode_fragment(vertices, faces, extent))
                sizes.append(len(fragments[-1]))
                kept.append(cell)
        lods.append(Lod(np.asarray(kept, np.int64).reshape(-1, 3), sizes))
    manifest = Manifest((float(edge),) * 3, grid.origin, [float(2 ** lod) for lod in range(levels)], lods)
    return b"".join(fragments), manifest.to_bytes()


def _joined(parts: list[Part], lod: int, edge: int, corner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pieces of one fragment at one level, vertices relative to the fragment's `corner`
    (in voxels from the grid's origin)."""
    vertices, faces, count = [], [], 0
    for part in parts:
        shift = np.asarray(part.block, np.float64) * edge - corner
        vertices.append(part.vertices[lod].astype(np.float64) + shift)
        faces.append(part.faces[lod].astype(np.int64) + count)
        count += len(part.vertices[lod])
    if not vertices:
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint32)
    return np.concatenate(vertices), np.concatenate(faces).astype(np.uint32)


@dataclass(frozen=True)
class LegacyFiles:
    """One fragment `<label>:0:0` in nanometres and the manifest `<label>:0` (written last)."""

    directory: str
    levels: int = 1

    def done(self, store: Store, label: int) -> bool:
        return store.size(f"{self.directory}/{label}{LEGACY_MANIFEST}") is not None

    def write(self, volume: Dataset, grid: BlockGrid, label: int, parts: list[Part]) -> int:
        vertices, faces = _joined(parts, 0, grid.edge, np.zeros(3))
        nm = (vertices + np.asarray(grid.origin)) * np.asarray(grid.scale.resolution)
        name = f"{label}:0:0"
        data = encode_legacy(nm, faces)
        volume.store.write(f"{self.directory}/{name}", data)
        manifest = json.dumps({"fragments": [name]}, separators=(",", ":")).encode()
        volume.store.write(f"{self.directory}/{label}{LEGACY_MANIFEST}", manifest)
        return len(data) + len(manifest)

    def info(self, volume: Dataset) -> dict:
        return LEGACY_INFO

    def last_tasks(self, store: Store, labels: np.ndarray) -> list[tuple[Any, ...]]:
        return []
