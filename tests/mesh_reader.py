"""An independent reader of Neuroglancer's multi-resolution meshes, written from the spec
(section 6.4 of the format notes): the manifest parsed field by field, the fragments decoded with
DracoPy. It shares no code with streamconv's writer, so a test that reads back through it checks
the bytes, not the writer against itself."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import DracoPy
import numpy as np


def read_multilod(mesh_dir: Path, label: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per level of detail: (vertices in nm, faces) of a segment, all fragments joined."""
    info = json.loads((mesh_dir / "info").read_text())
    assert info["@type"] == "neuroglancer_multilod_draco"
    bits = info["vertex_quantization_bits"]
    transform = np.asarray(info["transform"], np.float64).reshape(3, 4)
    index = (mesh_dir / f"{label}.index").read_bytes()
    data = (mesh_dir / str(label)).read_bytes()
    chunk_shape = np.asarray(struct.unpack_from("<3f", index, 0))
    grid_origin = np.asarray(struct.unpack_from("<3f", index, 12))
    (num_lods,) = struct.unpack_from("<I", index, 24)
    at = 28 + 4 * num_lods
    vertex_offsets = np.frombuffer(index, "<f4", 3 * num_lods, at).reshape(num_lods, 3)
    at += 12 * num_lods
    per_lod = np.frombuffer(index, "<u4", num_lods, at)
    at += 4 * num_lods
    lods, offset = [], 0
    for lod, count in enumerate(per_lod):
        positions = np.frombuffer(index, "<u4", 3 * count, at).reshape(3, count).T
        at += 12 * count
        sizes = np.frombuffer(index, "<u4", count, at)
        at += 4 * count
        vertices, faces, n = [], [], 0
        for position, size in zip(positions, sizes):
            mesh = DracoPy.decode(data[offset:offset + size])
            offset += int(size)
            q = np.asarray(mesh.points, np.float64).reshape(-1, 3)
            assert q.min() >= 0 and q.max() <= 2 ** bits - 1 and np.all(q == np.rint(q))
            model = grid_origin + vertex_offsets[lod] + chunk_shape * 2 ** lod * (position + q / (2 ** bits - 1))
            vertices.append(model @ transform[:, :3].T + transform[:, 3])
            faces.append(np.asarray(mesh.faces, np.int64).reshape(-1, 3) + n)
            n += len(q)
        lods.append((np.concatenate(vertices), np.concatenate(faces)))
    assert at == len(index) and offset == len(data)
    return lods


def watertight(vertices: np.ndarray, faces: np.ndarray, tolerance: float) -> bool:
    """Closed and consistently oriented: once vertices at the same place are merged, every
    directed edge appears once and its reverse once."""
    keys = np.rint(vertices / tolerance).astype(np.int64)
    _, merged = np.unique(keys, axis=0, return_inverse=True)
    f = merged.reshape(-1)[faces]
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    directed, counts = np.unique(edges, axis=0, return_counts=True)
    if counts.max() != 1:
        return False
    reverse = {tuple(e) for e in directed[:, ::-1].tolist()}
    return all(tuple(e) in reverse for e in directed.tolist())
