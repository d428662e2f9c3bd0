"""Meshes: mesh-to-precomputed writes legacy fragments (nm), link-mesh-fragments the manifests;
checked by parsing the bytes here and by cloud-volume's mesh reader."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import meshio
import nibabel as nib
import nilearn
import numpy as np
import pytest
from make_surface import surface_of_mask, write_gifti
from nilearn.datasets import MNI152_FILE_PATH, load_mni152_brain_mask

STREAMCONV = str(Path(sys.executable).with_name("streamconv"))
PIAL = Path(nilearn.__file__).parent / "datasets/data/fsaverage5/pial_right.gii.gz"  # shipped
MIRROR = "-1,0,0,10,0,1,0,-20,0,0,1,5"  # x mirrored, translated in mm: the winding must flip


def streamconv(*args: object, code: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run([STREAMCONV, *map(str, args)], capture_output=True, text=True)
    assert result.returncode == code, result.stderr
    return result


def fragment(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The legacy format, read by hand: uint32 n, n x 3 float32, then uint32 triangles; of a
    `<name>.gz` file (mesh-to-precomputed's default, as neuroglancer-scripts') gunzipped."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    n = int.from_bytes(data[:4], "little")
    vertices = np.frombuffer(data[4:4 + 12 * n], "<f4").reshape(n, 3)
    return vertices, np.frombuffer(data[4 + 12 * n:], "<u4").reshape(-1, 3)


def expected(vertices: np.ndarray, matrix: np.ndarray | None) -> np.ndarray:
    v = vertices.astype(np.float64)
    if matrix is not None:
        v = v @ matrix[:3, :3].T + matrix[:3, 3]
    return (v * 1e6).astype(np.float32)


def triangle_set(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Triangles as rows of their corner coordinates, each rotated to start at its smallest
    corner (keeps the winding), sorted: comparable whatever the vertex numbering."""
    keys = [tuple(map(tuple, c)) for c in vertices[triangles].tolist()]
    rotated = [min(k[i:] + k[:i] for i in range(3)) for k in keys]
    return np.array(sorted(rotated))


@pytest.fixture()
def segmentation(tmp_path) -> Path:
    out = tmp_path / "seg"
    mask = tmp_path / "mask.nii.gz"
    nib.save(load_mni152_brain_mask(), mask)
    streamconv("convert", mask, out, "--type", "segmentation", "-q")
    return out


def test_gifti_with_a_mirroring_transform(segmentation):
    streamconv("mesh-to-precomputed", "--coord-transform", MIRROR, PIAL, segmentation)
    info = json.loads((segmentation / "info").read_text())
    assert info["mesh"] == "mesh"
    assert json.loads((segmentation / "mesh/info").read_text()) == {"@type": "neuroglancer_legacy_mesh"}
    vertices, triangles = fragment(segmentation / "mesh/pial_right.gz")
    image = nib.load(PIAL)
    points = image.get_arrays_from_intent("NIFTI_INTENT_POINTSET")[0].data
    faces = image.get_arrays_from_intent("NIFTI_INTENT_TRIANGLE")[0].data
    matrix = np.vstack([np.array(MIRROR.split(","), float).reshape(3, 4), [0, 0, 0, 1]])
    assert np.allclose(vertices, expected(points, matrix), rtol=1e-6, atol=1)  # nm
    assert np.array_equal(triangles, faces[:, ::-1])


def test_brain_surface_reads_back_through_cloud_volume(segmentation, tmp_path):
    """A surface of the MNI brain mask (130k vertices), linked to label 1."""
    cloudvolume = pytest.importorskip("cloudvolume")
    image = load_mni152_brain_mask()
    points, faces = surface_of_mask(np.asarray(image.dataobj) > 0, image.affine)
    surface = tmp_path / "brain.gii"
    write_gifti(surface, points, faces)
    streamconv("mesh-to-precomputed", "--mesh-name", "brain", surface, segmentation)
    (tmp_path / "labels.csv").write_text("1,brain\n")
    streamconv("link-mesh-fragments", tmp_path / "labels.csv", segmentation)
    assert json.loads((segmentation / "mesh/1:0").read_text()) == {"fragments": ["brain"]}
    mesh = cloudvolume.CloudVolume(f"file://{segmentation}", progress=False).mesh.get(1)
    want = expected(points, None)
    assert len(mesh.faces) == len(faces) > 100_000
    assert np.array_equal(triangle_set(mesh.vertices, mesh.faces), triangle_set(want, faces))


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".stl", ".off", ".vtk"])
def test_other_mesh_formats(segmentation, tmp_path, suffix):
    mask = np.zeros((4, 4, 4), bool)
    mask[1:3, 1:3, 1:2] = True
    points, faces = surface_of_mask(mask, np.diag([2.0, 2.0, 2.0, 1.0]))
    path = tmp_path / f"block{suffix}"
    meshio.write(str(path), meshio.Mesh(points.astype(np.float64), [("triangle", faces)]))
    streamconv("mesh-to-precomputed", "--no-gzip", path, segmentation)
    vertices, triangles = fragment(segmentation / "mesh/block")
    assert np.array_equal(triangle_set(vertices, triangles), triangle_set(expected(points, None), faces))


def test_manifests_and_errors(segmentation, tmp_path):
    table = tmp_path / "labels.csv"
    table.write_text("1,lh,rh\n2,rh\n")
    streamconv("link-mesh-fragments", table, segmentation, code=2)  # no mesh directory yet
    streamconv("mesh-to-precomputed", "--mesh-name", "rh", PIAL, segmentation)
    result = streamconv("link-mesh-fragments", "--no-colon-suffix", table, segmentation)
    assert "fragment mesh/lh does not exist" in result.stderr  # a warning, the manifest is kept
    assert json.loads((segmentation / "mesh/1").read_text()) == {"fragments": ["lh", "rh"]}
    assert json.loads((segmentation / "mesh/2").read_text()) == {"fragments": ["rh"]}
    result = streamconv("mesh-to-precomputed", "--mesh-dir", "other", PIAL, segmentation, code=2)
    assert "differs from the info's mesh directory" in result.stderr
    streamconv("mesh-to-precomputed", "--coord-transform", "1,0,0", PIAL, segmentation, code=2)
    table.write_text("left,lh\n")
    result = streamconv("link-mesh-fragments", table, segmentation, code=1)
    assert "integer label" in result.stderr and len(result.stderr.splitlines()) == 1
    quads = tmp_path / "quads.obj"
    quads.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3 4\n")
    result = streamconv("mesh-to-precomputed", quads, segmentation, code=1)
    assert "no triangles" in result.stderr
    result = streamconv("mesh-to-precomputed", MNI152_FILE_PATH, segmentation, code=1)
    assert "not a mesh" in result.stderr and len(result.stderr.splitlines()) == 1
