"""Gathering a label's pieces from every block into the files Neuroglancer reads.

Multi-resolution: a fragment of level `lod` covers 2**lod blocks along each axis, and is the
union of those blocks' pieces at that level. Each piece lies within its own block, so no
triangle of a coarser fragment crosses the 2x2x2 split into the finer ones, as the format
requires. Legacy: one fragment per label, the finest pieces in nanometres.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ..dataset import Dataset
from ..meshes import encode_fragment as encode_legacy
from .blocks import PARTS, BlockGrid, Part, read_parts
from .multilod import Lod, Manifest, encode_fragment, zorder


@dataclass(frozen=True)
class MeshLayout:
    """Where and how a label's meshes are written."""

    directory: str  # the mesh directory, relative to the dataset
    format: str     # "multilod" or "legacy"
    levels: int     # levels of detail (multilod)


def assemble(volume: Dataset, grid: BlockGrid, layout: MeshLayout, label: int) -> int:
    """Write a label's mesh files and remove its pieces; returns the bytes written."""
    parts = read_parts(volume, label)
    if layout.format == "legacy":
        written = _legacy(volume, grid, layout.directory, label, parts)
    else:
        written = _multilod(volume, grid, layout, label, parts)
    volume.store.delete(f"{PARTS}/{label}")
    return written


def _multilod(volume: Dataset, grid: BlockGrid, layout: MeshLayout, label: int, parts: list[Part]) -> int:
    edge = grid.edge
    fragments: list[bytes] = []
    lods = []
    for lod in range(layout.levels):
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
    manifest = Manifest((float(edge),) * 3, grid.origin, [float(2 ** lod) for lod in range(layout.levels)], lods)
    data = b"".join(fragments)
    volume.store.write(f"{layout.directory}/{label}", data)
    index = manifest.to_bytes()
    volume.store.write(f"{layout.directory}/{label}.index", index)
    return len(data) + len(index)


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


def _legacy(volume: Dataset, grid: BlockGrid, directory: str, label: int, parts: list[Part]) -> int:
    vertices, faces = _joined(parts, 0, grid.edge, np.zeros(3))
    nm = (vertices + np.asarray(grid.origin)) * np.asarray(grid.scale.resolution)
    name = f"{label}:0:0"
    data = encode_legacy(nm, faces)
    volume.store.write(f"{directory}/{name}", data)
    manifest = json.dumps({"fragments": [name]}, separators=(",", ":")).encode()
    volume.store.write(f"{directory}/{label}:0", manifest)
    return len(data) + len(manifest)
