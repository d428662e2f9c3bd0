"""Meshing a label volume block by block, so that memory holds one block per worker whatever
the volume's size.

The volume is padded with one plane of background on every side, so that every label's
surface is closed. Marching cubes puts each triangle inside one *cell*, the cube between eight
neighbouring voxel centres; we cut the cells, not the voxels, into blocks of `edge` cells. A
block therefore reads its voxels plus one plane of its lower neighbours (the overlap of one
voxel), and the triangles of two blocks never overlap and meet on the shared plane of voxel
centres at the same vertices: no crack, no duplicated face. zmesh's simplification keeps the
open border of a block's mesh in place, so this holds after simplification too.

Vertices are kept in *voxel-corner* coordinates of scale 0 (Neuroglancer's model space before
the resolution: voxel i spans [i, i + 1)), relative to the block's box, which starts at
`voxel_offset - 0.5 + edge * block`; a marching-cubes surface between two voxels then lies on
their shared face.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..engine.journal import state_key
from ..format.geometry import Box, Scale, Vec3, ceil_div, triple
from ..layout.dataset import Dataset

MESHES = "meshes"  # the mesh pass's step: its job record, journal and spool
MESH_STATE = state_key(MESHES)
#: where block tasks leave each label's pieces until the label is assembled
PARTS = f"{MESH_STATE}/spool/parts"


@dataclass(frozen=True)
class Simplification:
    """zmesh's simplification for one level of detail: a triangle reduction it tries to reach
    and how far (in voxels) a vertex may move for it."""

    reduction: int
    max_error: float


#: level 0 stays within half a voxel of the marching-cubes surface, level 1 within two voxels.
#: Each level is simplified from the raw marching-cubes mesh: zmesh 1.15 can loop forever
#: simplifying a mesh it simplified already (seen on the labels benchmark volume).
LEVELS = (Simplification(2, 0.5), Simplification(16, 2.0))


@dataclass(frozen=True)
class BlockGrid:
    """The cells of scale 0 (padded volume) cut into cubes of `edge` cells."""

    scale: Scale
    edge: int

    def counts(self) -> Vec3:
        """Blocks along x, y, z: the padded volume has size + 1 cells along each axis."""
        return triple(ceil_div(n + 1, self.edge) for n in self.scale.size)

    def blocks(self) -> Iterator[Vec3]:
        cx, cy, cz = self.counts()
        for bz in range(cz):
            for by in range(cy):
                for bx in range(cx):
                    yield bx, by, bz

    @property
    def origin(self) -> tuple[float, float, float]:
        """Corner of block (0, 0, 0) in voxel-corner coordinates."""
        ox, oy, oz = self.scale.voxel_offset
        return ox - 0.5, oy - 0.5, oz - 0.5

    def voxels(self, block: Vec3) -> Box:
        """The voxels a block's cells join, relative to the volume's first voxel, as
        [start, stop) with -1 and size standing for the background padding."""
        start = triple(b * self.edge - 1 for b in block)
        stop = triple(min(a + self.edge + 1, n + 1) for a, n in zip(start, self.scale.size))
        return Box(start, stop)


def read_padded(volume: Dataset, scale: Scale, box: Box) -> np.ndarray:
    """Voxels [start, stop) of scale 0 relative to its first voxel as a (z, y, x) array; the
    padding outside the volume is background. Only the chunks the box touches are decoded."""
    x, y, z = box.shape
    out = np.zeros((z, y, x), volume.dtype)
    offset = scale.voxel_offset
    inside_start = triple(max(a, 0) + o for a, o in zip(box.start, offset))
    inside_stop = triple(min(b, n) + o for b, n, o in zip(box.stop, scale.size, offset))
    if any(a >= b for a, b in zip(inside_start, inside_stop)):
        return out
    aligned = triple(o + (a - o) // c * c for a, o, c in zip(inside_start, offset, scale.chunk_size))
    origin = triple(a + o for a, o in zip(box.start, offset))
    for chunk_box in scale.chunks_in(aligned, inside_stop):
        lo = triple(max(a, b) for a, b in zip(chunk_box.start, inside_start))
        hi = triple(min(a, b) for a, b in zip(chunk_box.stop, inside_stop))
        if any(a >= b for a, b in zip(lo, hi)):
            continue
        chunk = volume.read_chunk(0, chunk_box)
        if chunk is None:
            continue
        part = Box(lo, hi)
        out[part.index(origin)[1:]] = chunk[0][part.index(chunk_box.start)[1:]]
    return out


def mesh_block(volume: Dataset, grid: BlockGrid, block: Vec3, levels: int) -> np.ndarray:
    """Mesh one block: each label's surface at `levels` levels of detail, written to
    `PARTS/<label>/<block>` for `assemble` to gather. Returns the labels the block meshed."""
    import zmesh

    labels = read_padded(volume, grid.scale, grid.voxels(block))
    resolution = np.asarray(grid.scale.resolution, np.float64)
    mesher = zmesh.Mesher(tuple(resolution))
    mesher.mesh(labels.T)  # zmesh indexes x, y, z: the transpose of our (z, y, x) array
    del labels
    ids = np.asarray(sorted(int(i) for i in mesher.ids() if i != 0), np.uint64)
    unit = float(resolution.min())
    name = "_".join(str(b) for b in block)
    for label in ids.tolist():
        raw = mesher.get(label, normals=False, reduction_factor=0)
        mesher.erase(label)
        arrays: dict[str, np.ndarray] = {}
        for lod, level in enumerate(LEVELS[:levels]):
            mesh = mesher.simplify(raw, reduction_factor=level.reduction, max_error=level.max_error * unit,
                                   compute_normals=False) if level.reduction > 1 else raw
            arrays[f"v{lod}"] = (np.asarray(mesh.vertices, np.float64) / resolution).astype(np.float32)
            arrays[f"f{lod}"] = np.asarray(mesh.faces, np.uint32)
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **arrays)
        volume.store.write(f"{PARTS}/{label}/{name}", buffer.getvalue())
    mesher.clear()
    return ids


@dataclass(frozen=True)
class Part:
    """A label's surface within one block, at each level of detail."""

    block: Vec3
    vertices: list[np.ndarray]  # per level: n x 3, voxel units relative to the block's box
    faces: list[np.ndarray]


def read_parts(volume: Dataset, label: int) -> list[Part]:
    """What the block tasks wrote for a label."""
    parts = []
    for key in volume.store.list(f"{PARTS}/{label}"):
        if key.rsplit("/", 1)[-1].startswith("."):  # half-written by a killed task
            continue
        data = volume.store.read(key)
        if data is None:
            continue
        block = triple(int(v) for v in key.rsplit("/", 1)[-1].split("_"))
        with np.load(io.BytesIO(data)) as arrays:
            levels = len(arrays.files) // 2
            parts.append(Part(block, [arrays[f"v{i}"] for i in range(levels)],
                              [arrays[f"f{i}"] for i in range(levels)]))
    return parts
