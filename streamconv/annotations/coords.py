"""Where the table's coordinates are: voxels of an image output (or of a given resolution), or
millimetres of that output's world space (`transform.json`, neuroglancer-scripts' format: a
4x4 matrix from voxel-corner coordinates in nm to world coordinates in nm).

Annotations are written in the image's voxel space (dimensions x, y, z of one voxel each), so
they overlay the image as it is shown. A voxel coordinate is a voxel's index, its centre:
voxel i spans [i, i + 1) in Neuroglancer, so i is written as i + 0.5 (format notes 9.8.10),
plus the image's `voxel_offset`. Radii are lengths: scaled, never shifted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from ..errors import DataError, UsageError
from ..format.geometry import Scale, parse_resolution
from ..layout.dataset import read_info
from ..stores import open_store
from ..stores.base import Store
from .schema import AnnotationType

COORDINATES = ("voxel", "mm")


@dataclass(frozen=True)
class Placement:
    """How table coordinates become the collection's: voxel units of `resolution` nm."""

    resolution: tuple[float, float, float]
    offset: tuple[float, float, float]  # voxel_offset + 0.5 (voxel), or 0 (mm: the transform)
    to_voxels: tuple[tuple[float, ...], ...] | None  # 4x4, world nm -> voxel-corner coordinates

    def apply(self, kind: AnnotationType, geometry: np.ndarray) -> np.ndarray:
        """(n, vectors, 3) table coordinates -> collection coordinates."""
        out = np.array(geometry, np.float64)
        lengths = [i for i, name in enumerate(kind.vectors) if name == "radii"]
        points = [i for i in range(out.shape[1]) if i not in lengths]
        if self.to_voxels is None:
            out[:, points] += np.asarray(self.offset)
            return out
        matrix = np.asarray(self.to_voxels)
        linear = matrix[:3, :3]
        if kind.option in ("box", "ellipsoid") and np.count_nonzero(linear - np.diag(np.diag(linear))):
            raise UsageError(f"{kind.name} in mm: the image's transform.json rotates its axes, and an "
                             "axis-aligned shape would not stay one; give voxel coordinates")
        nm = out * 1e6
        out[:, points] = nm[:, points] @ linear.T + matrix[:3, 3]
        out[:, lengths] = np.abs(nm[:, lengths] * np.diag(linear))
        return out


def placement(image: str | os.PathLike | None, resolution: str | None, coordinates: str) -> Placement:
    """The placement from `--image` (its scale 0 and transform.json) or `--resolution`."""
    if coordinates not in COORDINATES:
        raise UsageError(f"--coordinates must be one of {', '.join(COORDINATES)}, got {coordinates!r}")
    if image is None:
        if resolution is None:
            raise UsageError("give the image the annotations belong to (--image OUTPUT) or its voxel "
                             "size (--resolution X,Y,Z in nm)")
        if coordinates == "mm":
            raise UsageError("--coordinates mm needs --image: the world space is that of an image output "
                             "(its transform.json)")
        return Placement(parse_resolution(resolution), (0.5, 0.5, 0.5), None)
    store = open_store(image)
    info = read_info(store)
    if info is None:
        raise UsageError(f"{store.url}: no info file; --image is a precomputed volume output")
    return placement_in(store, info.geometry[0], resolution, coordinates)


def placement_in(store: Store, scale: Scale, resolution: str | None, coordinates: str) -> Placement:
    """The placement in the volume output of `store` whose scale 0 is `scale` (its
    `transform.json` for mm)."""
    if coordinates not in COORDINATES:
        raise UsageError(f"--coordinates must be one of {', '.join(COORDINATES)}, got {coordinates!r}")
    res = parse_resolution(resolution) if resolution else scale.resolution
    if coordinates == "voxel":
        return Placement(res, tuple(o + 0.5 for o in scale.voxel_offset), None)  # type: ignore[arg-type]
    raw = store.read("transform.json")
    if raw is None:
        raise UsageError(f"--coordinates mm: {store.url} has no transform.json (its world space is "
                         "unknown); convert it again to write one, or give voxel coordinates")
    try:
        matrix = np.asarray(json.loads(raw), np.float64)
        if matrix.shape == (3, 4):
            matrix = np.vstack([matrix, [0, 0, 0, 1]])
        if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
            raise ValueError("not a 4x4 matrix of numbers")
        inverse = np.linalg.inv(matrix)
    except (ValueError, np.linalg.LinAlgError) as exc:
        raise DataError(f"{store.url}/transform.json: {exc}") from None
    to_voxels = np.diag([1 / r for r in res] + [1.0]) @ inverse
    return Placement(res, (0.0, 0.0, 0.0), tuple(tuple(float(v) for v in row) for row in to_voxels))
