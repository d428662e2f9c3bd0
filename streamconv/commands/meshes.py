"""Surface meshes in Neuroglancer's legacy single-resolution format, as neuroglancer-scripts'
mesh-to-precomputed and link-mesh-fragments write them.

A fragment file is little-endian: uint32 vertex count, float32 x y z per vertex (nm), then
uint32 vertex indices, three per triangle. `<mesh dir>/<label>:0` lists the fragments of a
label (`{"fragments": [...]}`), `<mesh dir>/info` says `neuroglancer_legacy_mesh`, and the
volume's info names the mesh directory under "mesh".
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..encodings import GZIP, compression
from ..engine.journal import locked
from ..errors import DataError, StreamconvError, UsageError, one_line
from ..format.info import VolumeInfo, check_key
from ..format.mesh_info import ScalelessInfo, parse_mesh_info
from ..meshing.legacy import LEGACY_INFO, encode_legacy
from ..sources.placement import TRANSFORM_JSON, read_transform, world_mm_to_grid
from ..stores import Location, Where, open_output, open_store
from ..stores.base import Store
from .viewstate import parse_transform as parse_placement

log = logging.getLogger("streamconv")

#: where a dataset of meshes alone records the image whose transform.json `--onto` copied
ONTO_JSON = ".streamconv/onto.json"

NM_PER_MM = 1e6


def read_mesh(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(vertices N x 3 float64, in the file's units, taken as mm; triangles M x 3) of a GIfTI
    surface (nibabel) or an OBJ, PLY, STL, OFF or VTK mesh (meshio)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if path.name.lower().endswith((".gii", ".gii.gz")):
            import nibabel

            image: Any = nibabel.load(str(path))
            points = [a.data for a in image.get_arrays_from_intent("NIFTI_INTENT_POINTSET")]
            faces = [a.data for a in image.get_arrays_from_intent("NIFTI_INTENT_TRIANGLE")]
            if len(points) != 1 or len(faces) != 1:
                raise DataError(f"{path}: a GIfTI surface needs one pointset and one triangle "
                                f"array, found {len(points)} and {len(faces)}")
            vertices, triangles = points[0], faces[0]
        else:
            import meshio

            mesh = meshio.read(str(path))
            vertices = mesh.points
            cells = [c.data for c in mesh.cells if c.type == "triangle"]
            if not cells:
                kinds = sorted({c.type for c in mesh.cells}) or ["none"]
                raise DataError(f"{path}: no triangles (cells: {', '.join(kinds)}); only "
                                "triangle meshes are supported")
            triangles = np.concatenate(cells)
    except DataError:
        raise
    except Exception as exc:  # readers raise many kinds for a file they cannot read
        raise DataError(f"{path}: not a mesh that can be read ({one_line(exc)})") from exc
    vertices = np.asarray(vertices, np.float64)[:, :3]
    triangles = np.asarray(triangles)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or triangles.ndim != 2 or triangles.shape[1] != 3:
        raise DataError(f"{path}: expected N x 3 vertices and M x 3 triangles")
    if not np.isfinite(vertices).all():
        raise DataError(f"{path}: vertex coordinates that are not finite")
    if triangles.size and (triangles.min() < 0 or triangles.max() >= len(vertices)):
        raise DataError(f"{path}: triangles refer to vertices that do not exist")
    return vertices, triangles.astype(np.uint32)


def parse_transform(text: str) -> np.ndarray:
    """A 3x4 or 4x4 affine from 12 or 16 comma-separated numbers, row-major, translation in mm."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (12, 16):
        raise UsageError(f"--coord-transform takes 12 or 16 comma-separated numbers, got {text!r}")
    matrix = np.eye(4)
    matrix[:3] = np.reshape(values, (-1, 4))[:3]
    return matrix


def transform(vertices: np.ndarray, triangles: np.ndarray,
              matrix: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Apply an affine (mm); a mirroring one (negative determinant) reverses the winding of
    every triangle so that normals still point outwards."""
    if matrix is None:
        return vertices, triangles
    vertices = vertices @ matrix[:3, :3].T + matrix[:3, 3]
    if np.linalg.det(matrix[:3, :3]) < 0:
        triangles = triangles[:, ::-1]
    return vertices, triangles


def mesh_to_precomputed(mesh: str | os.PathLike, output: str | os.PathLike, *,
                        coord_transform: str | None = None, mesh_dir: str | None = None,
                        mesh_name: str | None = None, gzip: bool = True,
                        compresslevel: int = 6, onto: Where | None = None) -> str:
    """Write one mesh as a fragment of the dataset at `output`; returns the fragment's key.
    Coordinates are taken as mm, transformed by `coord_transform`, and stored in nm; `onto`
    (an image output, often `output` itself) places world mm onto that output's voxel grid by
    its transform.json, after `coord_transform`. As neuroglancer-scripts, the fragment is
    gzip-compressed (`<name>.gz`) unless `gzip` is False (`<name>`); the other form of the same
    fragment, left by an earlier run, is removed (a server would send whichever it finds first)."""
    matrix = parse_transform(coord_transform) if coord_transform else None
    placed = None
    if onto is not None:
        placed, grid = onto_grid(onto)
        matrix = grid if matrix is None else grid @ matrix
    name = mesh_name or _stem(Path(mesh))
    if "/" in name or name in ("", ".", "..", "info") or "\0" in name:
        if mesh_name is None:
            raise UsageError(f"{mesh}: its name makes no fragment name ({name!r}); give --mesh-name")
        raise UsageError(f"--mesh-name {name!r} is not a valid file name")
    vertices, triangles = transform(*read_mesh(mesh), matrix)
    store = open_output(output)
    with locked(store):  # a running conversion rewrites the info at its end
        info = _info(store)
        directory = mesh_dir or info.get("mesh", "mesh")
        if info.get("mesh", directory) != directory:
            raise UsageError(f"--mesh-dir {directory} differs from the info's mesh directory "
                             f"{info.get('mesh')!r}")
        _check_mesh_dir(directory)
        if info.type != "segmentation":
            log.warning("the dataset's type is %r, not segmentation: Neuroglancer shows meshes "
                        "of segmentations only", info.type)
        if placed is not None:
            _keep_placement(store, placed, volume=bool(info.geometry))
        step = compression(gzip, compresslevel)
        key = step.key(f"{directory}/{name}")
        store.write(key, step.encode(encode_legacy(vertices * NM_PER_MM, triangles)))
        _drop_other_form(store, compression(not gzip).key(f"{directory}/{name}"))
        store.write(f"{directory}/info", json.dumps(LEGACY_INFO).encode())
        if info.get("mesh") != directory:
            store.write("info", info.with_member("mesh", directory).to_json(), durable=True)
    return key


def _drop_other_form(store: Store, key: str) -> None:
    """Remove the fragment an earlier run wrote under the other name (`<name>` beside a new
    `<name>.gz`, or the reverse): a server sends whichever it finds first, the stale one too.
    Only a file that is a legacy fragment goes (not a manifest that happens to be so named)."""
    try:
        data = store.read(key)
        if data is None:
            return
        if key.endswith(GZIP.suffix):
            data = GZIP.decode(data)
    except (StreamconvError, OSError, EOFError):  # a directory, a damaged file: not ours to remove
        return
    count = int.from_bytes(data[:4], "little") if len(data) >= 4 else -1
    rest = len(data) - 4 - 12 * count
    if count >= 0 and rest >= 0 and rest % 12 == 0:
        store.delete(key)


@dataclass(frozen=True)
class Onto:
    """The image output a mesh is placed onto: where it is, and its transform.json as stored."""

    url: str
    transform: bytes


def onto_grid(image: Where) -> tuple[Onto, np.ndarray]:
    """An output's transform.json as stored, and world mm to its voxel grid (mm) from it."""
    store = open_store(image)
    data = store.read(TRANSFORM_JSON)
    if data is None:
        raise UsageError(f"{store.url}/{TRANSFORM_JSON} does not exist: convert the image with "
                         "streamconv convert (or volume-to-precomputed --generate-info), or give "
                         "--coord-transform")
    location = Location.of(image)
    where = os.path.abspath(location.path) if location.is_local else store.url  # found from any directory
    try:
        return Onto(where, data), world_mm_to_grid(read_transform(data))
    except DataError as exc:
        raise DataError(f"{store.url}/{exc}") from None


def _keep_placement(store: Store, placed: Onto, volume: bool) -> None:
    """The mesh is in the image's grid: a dataset of meshes alone keeps a copy of the image's
    transform.json (`view` places it by it) and records where it came from (`ONTO_JSON`, which
    `verify` reads); a dataset's own must say the same. A volume without one is left so (its
    voxels are not known to lie in the image's grid)."""
    own = store.read(TRANSFORM_JSON)
    if own is None:
        if volume:
            log.warning("%s has no %s: the mesh lies in the --onto image's grid, which nothing "
                        "places this volume in", store.url, TRANSFORM_JSON)
        else:
            store.write(TRANSFORM_JSON, placed.transform, durable=True)
            store.write(ONTO_JSON, json.dumps({"image": placed.url}).encode())
        return
    try:
        same = np.array_equal(read_transform(own), read_transform(placed.transform))
    except DataError as exc:
        raise DataError(f"{store.url}/{exc}") from None
    if not same:
        raise UsageError(f"{store.url}/{TRANSFORM_JSON} differs from the --onto image's: the mesh would "
                         "not lie where this dataset's transform places it; write it into the image's "
                         "output or into a dataset of meshes alone")
    if not volume and store.read(ONTO_JSON) is None:
        store.write(ONTO_JSON, json.dumps({"image": placed.url}).encode())


def surface_problems(store: Store) -> tuple[str | None, list[str]]:
    """`verify` of a dataset of meshes alone: its transform.json (if any) is an invertible
    affine, as `view` needs, and equal to that of the image `--onto` copied it from, when that
    image is recorded (`ONTO_JSON`) and can still be read. Returns (the image compared with,
    or None; the problems found)."""
    try:
        mine = parse_placement(store.read(TRANSFORM_JSON), store.url)
    except DataError as exc:
        return None, [str(exc)]
    if mine is None:
        return None, []
    try:
        record = json.loads(store.read(ONTO_JSON) or b"null")
    except ValueError:
        record = None
    image = record.get("image") if isinstance(record, dict) else None
    if not isinstance(image, str):
        return None, []
    try:
        theirs = open_store(image).read(TRANSFORM_JSON)
    except (StreamconvError, OSError):
        theirs = None
    if theirs is None:
        log.warning("%s/%s, which %s/%s was copied from, cannot be read: not compared", image,
                    TRANSFORM_JSON, store.url, TRANSFORM_JSON)
        return None, []
    try:
        same = np.allclose(mine, read_transform(theirs), rtol=1e-12, atol=0)
    except DataError:
        same = False
    if not same:
        return image, [f"{store.url}/{TRANSFORM_JSON} differs from that of {image}, the image the "
                       f"meshes were placed onto (mesh-to-precomputed --onto): stored {mine.tolist()}"]
    return image, []


def link_mesh_fragments(table: str | os.PathLike, output: str | os.PathLike, *,
                        colon_suffix: bool = True) -> int:
    """Write the manifest of each label of a CSV (label, fragment, fragment...); returns how
    many. `colon_suffix=False` names them `<label>` for filesystems without colons."""
    store = open_output(output)
    directory = _info(store).get("mesh")
    if directory is None:
        raise UsageError(f"{store.url}/info has no \"mesh\" directory: run mesh-to-precomputed first")
    _check_mesh_dir(directory)
    try:
        with open(table, newline="") as f:
            rows = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
    except OSError as exc:
        raise DataError(f"{table}: cannot read ({exc.strerror or exc})") from exc
    present = {name.rsplit("/", 1)[-1].removesuffix(GZIP.suffix) for name in store.list(directory)}
    manifests = {}
    for number, row in enumerate(rows, 1):
        try:
            label = int(row[0])
        except ValueError:
            raise DataError(f"{table}, line {number}: the first cell must be an integer label, "
                            f"got {row[0]!r}") from None
        fragments = [cell.strip() for cell in row[1:] if cell.strip()]
        for fragment in fragments:
            try:
                check_key(fragment, "fragment")
            except ValueError as exc:
                raise DataError(f"{table}, line {number}: {exc}") from None
            if fragment not in present and ("/" not in fragment  # listed above: one directory
                                            or store.read(f"{directory}/{fragment}") is None):
                log.warning("label %d: the fragment %s/%s does not exist", label, directory, fragment)
        manifests[f"{directory}/{label}:0" if colon_suffix else f"{directory}/{label}"] = fragments
    with locked(store):
        for key, fragments in manifests.items():
            store.write(key, json.dumps({"fragments": fragments}, separators=(",", ":")).encode())
    return len(manifests)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".gii", ".obj", ".ply", ".stl", ".off", ".vtk", ".vtp"):
        if name.lower().endswith(suffix):
            name = name[:-len(suffix)]
    return name


def _info(store: Store) -> VolumeInfo | ScalelessInfo:
    raw = store.read("info")
    info = None if raw is None else parse_mesh_info(raw, f"{store.url}/info")
    if info is None:
        raise UsageError(f"{store.url}/info does not exist: create the dataset first "
                         "(convert, or generate-scales-info)")
    return info


def _check_mesh_dir(directory: object) -> None:
    try:
        check_key(directory)
    except ValueError:
        raise UsageError(f"the mesh directory {directory!r} is not a relative path inside the "
                         "dataset") from None
