"""The legacy (single-resolution) mesh format: a fragment file's bytes and the mesh
directory's info, written by `mesh-to-precomputed` and by label meshing with
`--mesh-format legacy`."""

from __future__ import annotations

import numpy as np

LEGACY_INFO = {"@type": "neuroglancer_legacy_mesh"}
LEGACY_MANIFEST = ":0"  # `<label>:0`, a label's manifest (the list of its fragments)


def encode_legacy(vertices_nm: np.ndarray, triangles: np.ndarray) -> bytes:
    """A legacy fragment file: vertex count, vertices (float32, nm), triangles (uint32)."""
    return b"".join([np.uint32(len(vertices_nm)).astype("<u4").tobytes(),
                     np.ascontiguousarray(vertices_nm, "<f4").tobytes(),
                     np.ascontiguousarray(triangles, "<u4").tobytes()])


def decode_legacy(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(vertices N x 3 float32 in nm, triangles M x 3 uint32) of a legacy fragment file."""
    n = int(np.frombuffer(data, "<u4", 1)[0])
    vertices = np.frombuffer(data, "<f4", 3 * n, 4).reshape(n, 3)
    triangles = np.frombuffer(data, "<u4", offset=4 + 12 * n).reshape(-1, 3)
    return vertices, triangles
