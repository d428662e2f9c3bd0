"""Where an output's voxels lie in the input's world: the one place that knows the conventions.

NIfTI (and nibabel's affine for every format it reads) maps a voxel's *centre* to world
coordinates in the header's units (millimetres nearly always); Neuroglancer and
neuroglancer-scripts' `transform.json` map a point of the layer's voxel grid in nanometres,
where voxel i spans [i, i + 1) x resolution, so its centre is (i + 0.5) x resolution, to world
nanometres. `neuroglancer_transform` is the only function that crosses between the two; it
does the arithmetic of neuroglancer-scripts (same matrix, same floating-point operations, for a
millimetre header whose voxel sizes are the resolution), so siibra and that tool's mesh step
read ours as theirs.

A `Placement` is the NIfTI-style affine of the *stored* grid (voxel centre to world mm), the
world space it names and the voxel order of the input; reorienting a volume (`reoriented`)
composes the affine with the axis permutation and flips, so the same world point is found.
An output holds two files (docs/coordinates.md):

* `transform.json`: neuroglancer-scripts' format, a 4x4 list of rows (nm, voxel corners).
* `placement.json`: our versioned record (`PLACEMENT_TYPE`, `version`), the affine in mm, the
  world space, the stored and input voxel orders, and the transform again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError
from .orientation import Orientation

NM_PER_MM = 1e6
TRANSFORM_JSON = "transform.json"
PLACEMENT_JSON = "placement.json"
PLACEMENT_TYPE = "streamconv_placement"
PLACEMENT_VERSION = 1
PLACEMENT_FILES = (TRANSFORM_JSON, PLACEMENT_JSON)

# NIfTI xform codes (nibabel.nifti1.xform_codes), as the world space they name
_SPACES = {0: "unknown", 1: "scanner", 2: "aligned", 3: "talairach", 4: "mni", 5: "template"}


@dataclass(frozen=True)
class Placement:
    """The stored voxel grid in the world: `affine` maps voxel centres (x, y, z indices of
    scale 0) to world millimetres; `space` names that world (scanner, aligned, talairach, mni,
    template, unknown, or `voxels` for a slice stack); `input_order` is the voxel order of
    the input (its axis codes, e.g. LAS), `order` that of the stored grid."""

    affine: np.ndarray
    space: str
    input_order: str

    @property
    def order(self) -> str:
        return axis_codes(self.affine)

    def reoriented(self, orientation: Orientation, shape: tuple[int, int, int]) -> Placement:
        """The placement of the same voxels stored in `orientation` (input axis a becomes output
        axis `orientation.axes[a]`, reversed if flipped); `shape` is the input's."""
        change = np.zeros((4, 4))
        change[3, 3] = 1.0
        for a, (axis, flip) in enumerate(zip(orientation.axes, orientation.flips)):
            change[a, axis] = -1.0 if flip else 1.0
            change[a, 3] = shape[a] - 1 if flip else 0
        return Placement(self.affine @ change, self.space, self.input_order)

    def transform(self, resolution: tuple[float, float, float]) -> np.ndarray:
        """The transform.json matrix of a grid of `resolution` nm."""
        return neuroglancer_transform(self.affine, resolution)

    def record(self, resolution: tuple[float, float, float]) -> dict[str, Any]:
        """placement.json."""
        return {"@type": PLACEMENT_TYPE, "version": PLACEMENT_VERSION, "space": self.space,
                "voxel_order": self.order, "input_voxel_order": self.input_order,
                "voxel_to_world_mm": _rows(self.affine), "world_units": "mm",
                "transform": _rows(self.transform(resolution)), "transform_units": "nm"}

    def files(self, resolution: tuple[float, float, float]) -> dict[str, bytes]:
        """The files an output holds: transform.json and placement.json."""
        return {TRANSFORM_JSON: json.dumps(_rows(self.transform(resolution))).encode(),
                PLACEMENT_JSON: _lines(self.record(resolution))}


def placement_files(placement: Placement | None, resolution: tuple[float, float, float]
                    ) -> tuple[tuple[str, bytes], ...]:
    """What an output holds about its placement (nothing where it is not known)."""
    return () if placement is None else tuple(placement.files(resolution).items())


def neuroglancer_transform(affine_mm: np.ndarray, resolution: tuple[float, float, float]) -> np.ndarray:
    """voxel-corner nm of a grid of `resolution` nm -> world nm, from an affine of voxel
    centres -> world mm.

    The linear part is the affine's columns per nanometre of grid; the translation is the
    world position of the first voxel's centre, moved back by half a voxel along each axis
    (the corner of voxel 0 is the origin of Neuroglancer's grid). With `resolution` the
    affine's voxel sizes in nm this is, operation for operation, neuroglancer-scripts'
    `--generate-info` matrix."""
    sizes_mm = np.asarray(resolution, np.float64) / NM_PER_MM
    matrix = np.empty((4, 4))
    for j in range(3):
        matrix[:, j] = affine_mm[:, j] / sizes_mm[j]
    matrix[:3, 3] = affine_mm[:3, 3] * NM_PER_MM
    matrix[3, 3] = 1
    matrix[:3, 3] -= np.dot(matrix[:3, :3], 0.5 * np.asarray(resolution, np.float64))
    return matrix


def world_mm_to_grid(transform: np.ndarray) -> np.ndarray:
    """The affine that takes world mm to the grid of a transform.json, in mm (so that x 1e6 it
    is the grid's nm, where Neuroglancer draws a layer's meshes and voxels)."""
    matrix = np.linalg.inv(transform)
    matrix[:3, 3] /= NM_PER_MM
    return matrix


def image_placement(img: Any, unit_nm: float) -> Placement:
    """Placement of a nibabel image in its own voxel order: its affine (NIfTI: sform, else
    qform, else the voxel sizes, as nibabel chooses) in mm, and the space its code names."""
    affine = np.asarray(img.affine, np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) == 0:
        raise DataError(f"the header's affine is not an invertible 4x4 matrix: {affine.tolist()}")
    scale = unit_nm / NM_PER_MM
    if scale != 1.0:  # NIfTI units other than mm (nibabel's affine is in the header's units)
        affine = affine.copy()
        affine[:3] *= scale
    return Placement(affine, _space(img.header), axis_codes(affine))


def stack_placement(resolution: tuple[float, float, float], input_order: str) -> Placement:
    """A slice stack has no world of its own: its RAS grid (`--input-orientation` applied) is
    the world, voxel 0's corner at the origin, so transform.json is the identity."""
    sizes = np.asarray(resolution, np.float64) / NM_PER_MM
    affine = np.diag([*sizes, 1.0])
    affine[:3, 3] = sizes / 2
    return Placement(affine, "voxels", input_order.upper())


def axis_codes(affine: np.ndarray) -> str:
    """The direction each voxel axis points to, e.g. LAS: as an `Orientation` code, the axis
    permutation and flips that bring the grid closest to RAS (nibabel's `io_orientation`:
    exact for a permutation of axes, the nearest one for an oblique affine)."""
    from nibabel.orientations import aff2axcodes

    return "".join(str(c) for c in aff2axcodes(affine))


def _space(header: Any) -> str:
    """The world the affine names, by NIfTI's rule (sform code first, then qform); other
    formats: scanner."""
    for method in ("get_sform", "get_qform"):
        if not hasattr(header, method):
            return "scanner"
        code = int(getattr(header, method)(coded=True)[1] or 0)
        if code > 0:
            return _SPACES.get(code, "unknown")
    return "unknown"


def _lines(record: dict[str, Any]) -> bytes:
    """JSON with one member a line (a matrix on one line)."""
    members = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in record.items())
    return f"{{\n{members}\n}}\n".encode()


def _rows(matrix: np.ndarray) -> list[list[float]]:
    return [[float(v) for v in row] for row in matrix]


def read_transform(data: bytes) -> np.ndarray:
    """A transform.json (a 4x4 or 3x4 list of rows) as a 4x4 matrix; DataError otherwise."""
    try:
        rows = np.asarray(json.loads(data), np.float64)
    except (ValueError, TypeError, RecursionError) as exc:
        raise DataError(f"{TRANSFORM_JSON} is not a matrix of numbers ({exc})") from None
    if rows.shape not in ((3, 4), (4, 4)) or not np.isfinite(rows).all():
        raise DataError(f"{TRANSFORM_JSON} is not a 3x4 or 4x4 matrix (shape {rows.shape})")
    matrix = np.eye(4)
    matrix[:3] = rows[:3]
    return matrix


def stored_voxel_order(read: Callable[[str], bytes | None]) -> str:
    """The `voxel_order` an output was written with (`ras` or `file`), from its placement.json;
    `file` for an output without one (neuroglancer-scripts', igneous')."""
    record = _json(read(PLACEMENT_JSON))
    return "ras" if isinstance(record, dict) and record.get("voxel_order") == "RAS" else "file"


def placement_problems(placement: Placement | None, resolution: tuple[float, float, float],
                       read: Callable[[str], bytes | None]) -> tuple[bool, list[str]]:
    """Whether an output (its files through `read`, scale 0 at `resolution` nm) says where its
    voxels lie as the input's header does: its transform.json and placement.json against the
    input's `placement`. Returns (whether a transform.json was there, the problems found)."""
    data = read(TRANSFORM_JSON)
    if placement is None or data is None:
        return data is not None, []
    expected = placement.transform(resolution)
    try:
        stored = read_transform(data)
    except DataError as exc:
        return True, [str(exc)]
    problems = []
    if not _close(stored, expected, resolution):
        problems.append(f"{TRANSFORM_JSON} differs from the input's header: stored "
                        f"{_rows(stored)}, the header gives {_rows(expected)}")
    record = _json(read(PLACEMENT_JSON))
    if record is not None:
        want = placement.record(resolution)
        if not isinstance(record, dict) or any(
                not _same(record.get(k), want[k], resolution) for k in want):
            problems.append(f"{PLACEMENT_JSON} differs from the input's header "
                            f"(expected {json.dumps(want)})")
    return True, problems


def _close(a: np.ndarray, b: np.ndarray, resolution: tuple[float, float, float]) -> bool:
    """Equal up to the rounding of a JSON round trip and of the voxel sizes: a thousandth of
    the smallest voxel over the grid."""
    return bool(np.allclose(a, b, rtol=1e-9, atol=1e-3 * min(resolution) / NM_PER_MM))


def _same(got: object, want: object, resolution: tuple[float, float, float]) -> bool:
    if isinstance(want, list):
        try:
            return _close(np.asarray(got, np.float64), np.asarray(want, np.float64), resolution)
        except (ValueError, TypeError):
            return False
    return got == want


def _json(data: bytes | None) -> object:
    if data is None:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return "not JSON"
