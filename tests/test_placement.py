"""Placement (issue 24): every output says where its voxels lie in the input's world, in
neuroglancer-scripts' transform.json; `--voxel-order ras` stores them in RAS order losslessly;
verify checks the placement; meshes in mm land on the image."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import dipy.data
import nibabel as nib
import nibabel.testing
import numpy as np
import pytest
from make_surface import surface_of_mask, write_gifti
from nilearn.datasets import MNI152_FILE_PATH, load_mni152_brain_mask
from reference import read_scale

import streamconv
from streamconv.commands.verify import verify
from streamconv.meshing.legacy import decode_legacy

BIN = Path(sys.executable).parent
MINC = Path(nibabel.testing.data_path)


def run(*args: object, tool: str = "streamconv") -> None:
    result = subprocess.run([str(BIN / tool), *map(str, args)], capture_output=True, text=True)
    # neuroglancer-scripts says 4 when it suggests float32 for a type Neuroglancer lacks (int16)
    assert result.returncode in ((0, 4) if tool != "streamconv" else (0,)), result.stderr[-2000:]


def transform(out: Path) -> np.ndarray:
    return np.asarray(json.loads((out / "transform.json").read_text()), np.float64)


def to_output_voxels(out: Path, world_mm: np.ndarray) -> np.ndarray:
    """World mm to the output's voxel indices as a reader of transform.json finds them: the
    grid's nm (voxel i spans [i, i + 1) x resolution) through the inverse transform."""
    resolution = np.asarray(json.loads((out / "info").read_text())["scales"][0]["resolution"])
    points = np.c_[world_mm * 1e6, np.ones(len(world_mm))] @ np.linalg.inv(transform(out)).T
    return points[:, :3] / resolution - 0.5


def same_values_in_world(src: Path, out: Path, samples: int = 200) -> None:
    """200 voxels of the input, through nibabel's affine to world mm and back through the
    output's transform.json to an output voxel, hold the same value."""
    img = nib.load(src)
    data = np.asarray(img.dataobj)
    if data.ndim == 3:
        data = data[..., None]
    rng = np.random.default_rng(7)
    ijk = np.stack([rng.integers(0, n, samples) for n in data.shape[:3]], axis=1)
    world = nib.affines.apply_affine(img.affine, ijk)
    found = to_output_voxels(out, world)
    assert np.abs(found - np.round(found)).max() < 1e-3  # on voxel centres, not half a voxel off
    voxels = np.round(found).astype(int)
    stored = read_scale(out, 0)
    assert ((voxels >= 0) & (voxels < stored.shape[:3])).all()
    got = stored[voxels[:, 0], voxels[:, 1], voxels[:, 2]]
    want = data[ijk[:, 0], ijk[:, 1], ijk[:, 2]]
    assert np.array_equal(got, want.astype(got.dtype))


def _flip(affine: np.ndarray, axis: int, n: int) -> np.ndarray:
    change = np.eye(4)
    change[axis, axis], change[axis, 3] = -1, n - 1
    return affine @ change


@pytest.fixture(scope="module")
def orders(tmp_path_factory) -> dict[str, Path]:
    """One asymmetric volume saved in several voxel orders, nibabel mapping each voxel to the
    same millimetre (the oblique one: the same voxels rotated by 10 degrees about z)."""
    work = tmp_path_factory.mktemp("orders")
    data = np.random.default_rng(3).integers(0, 30000, (23, 19, 14)).astype(np.int16)
    data[2:6, 3:5, 1:3] = 31000  # a marker off every axis of symmetry
    ras = np.diag([1.5, 1.5, 2.0, 1.0])
    ras[:3, 3] = (-17.0, -14.0, -12.0)
    n = data.shape
    las = _flip(ras, 0, n[0])
    lpi = _flip(_flip(las, 1, n[1]), 2, n[2])
    permute = np.zeros((4, 4))
    permute[[0, 1, 2, 3], [2, 0, 1, 3]] = 1  # file axes (y, z, x)
    angle = np.radians(10)
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    volumes = {"RAS": (data, ras), "LAS": (data[::-1], las), "LPI": (data[::-1, ::-1, ::-1], lpi),
               "permuted": (data.transpose(1, 2, 0), ras @ permute), "oblique": (data, rotation @ ras)}
    paths = {}
    for name, (array, affine) in volumes.items():  # LPI gzipped: read in order, slices backwards
        paths[name] = work / (f"{name}.nii.gz" if name == "LPI" else f"{name}.nii")
        nib.save(nib.Nifti1Image(np.ascontiguousarray(array), affine), paths[name])
    paths["MINC"] = MINC / "small.mnc"
    return paths


def chunk_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".streamconv" not in p.parts and p.name != "placement.json"}


@pytest.mark.parametrize("voxel_order", ["ras", "file"])
def test_every_voxel_order_finds_the_same_values_in_world(orders, voxel_order, tmp_path):
    for name, src in orders.items():
        out = tmp_path / name
        streamconv.convert(src, out, workers=2 if name == "LPI" else 0, chunk_size=8,
                           memory="1GiB", voxel_order=voxel_order)
        same_values_in_world(src, out)
        record = json.loads((out / "placement.json").read_text())
        assert record["voxel_order"] == ("RAS" if voxel_order == "ras" else record["input_voxel_order"])
        assert verify(src, out).ok, name
    if voxel_order == "ras":
        reference = chunk_files(tmp_path / "RAS")
        assert len(reference) > 10
        assert chunk_files(tmp_path / "LAS") == reference
        assert chunk_files(tmp_path / "LPI") == reference
        assert chunk_files(tmp_path / "permuted") == reference
        # MINC arrays come in (z, y, x): stored in RAS they are x, y, z like a NIfTI
        assert read_scale(tmp_path / "MINC", 0).shape[:3] == (29, 28, 18)


def test_four_d_minc_time_axis_becomes_channels(tmp_path):
    """nibabel's minc1_4d.mnc: dimensions (time, zspace, yspace, xspace); the time axis becomes
    the two channels, the spatial ones x, y, z."""
    src = MINC / "minc1_4d.mnc"
    out = tmp_path / "out"
    report = streamconv.convert(src, out, workers=0, chunk_size=8)
    assert report.scales[0].size == (20, 20, 10)
    assert json.loads((out / "info").read_text())["num_channels"] == 2
    img = nib.load(src)
    data = np.moveaxis(np.asarray(img.dataobj), 0, -1)  # (z, y, x, time): time as channels
    stored = read_scale(out, 0)
    ijk = np.indices(data.shape[:3]).reshape(3, -1).T
    voxels = np.round(to_output_voxels(out, nib.affines.apply_affine(img.affine, ijk))).astype(int)
    got = stored[voxels[:, 0], voxels[:, 1], voxels[:, 2]]
    assert np.array_equal(got, data[ijk[:, 0], ijk[:, 1], ijk[:, 2]].astype(got.dtype))
    assert verify(src, out).ok


@pytest.fixture(scope="module")
def las_volume(tmp_path_factory) -> Path:
    return Path(nibabel.testing.data_path) / "anatomical.nii"  # 33 x 41 x 25 int16, LAS, 2 mm


@pytest.mark.parametrize("name", ["mni", "aniso", "las"])
def test_transform_json_is_neuroglancer_scripts_one(name, las_volume, tmp_path):
    """In the file's voxel order, transform.json is the matrix neuroglancer-scripts'
    --generate-info writes (the MNI template, dipy's oblique anisotropic int16 volume, a LAS
    volume); in RAS order it maps the reoriented voxels to the same world.

    Exactly the same where both tools give scale 0 the same resolution; dipy's volume has
    pixdim 4 x 4 x 5 mm (our resolution) and sform columns of 3.99999992... mm (theirs), so
    there each matrix is exact for its own grid and they differ by ~2e-8 in the linear part
    (a millionth of a voxel across the volume)."""
    if not (BIN / "compute-scales").exists():
        pytest.skip("neuroglancer-scripts is not installed (pip install '.[test]')")
    src = {"mni": Path(MNI152_FILE_PATH), "aniso": Path(dipy.data.get_fnames(name="aniso_vox")),
           "las": las_volume}[name]
    run("--generate-info", src, tmp_path / "theirs", tool="volume-to-precomputed")
    theirs = transform(tmp_path / "theirs")
    run("convert", "--voxel-order", "file", "--workers", "0", src, tmp_path / "file")
    run("volume-to-precomputed", "--generate-info", src, tmp_path / "step")
    for ours in (transform(tmp_path / "file"), transform(tmp_path / "step")):
        if name == "aniso":
            assert np.allclose(ours[:3, :3], theirs[:3, :3], rtol=0, atol=1e-7)
            assert np.allclose(ours[:3, 3], theirs[:3, 3], rtol=0, atol=1e-3)  # nm
        else:
            assert np.array_equal(ours, theirs)
    run("convert", "--workers", "0", src, tmp_path / "ras")
    same_values_in_world(src, tmp_path / "ras")
    # the first voxel's corner and the far corner of the grid: the same world points
    img = nib.load(src)
    corners = np.array([[0, 0, 0], img.shape[:3]], np.float64) - 0.5
    world = nib.affines.apply_affine(img.affine, corners)
    back = to_output_voxels(tmp_path / "ras", world)
    shape = np.asarray(json.loads((tmp_path / "ras" / "info").read_text())["scales"][0]["size"])
    assert np.allclose(np.sort(np.abs(back + 0.5), axis=0), [[0, 0, 0], shape], atol=1e-6)


def test_surface_placed_onto_the_image_lies_on_its_mask(tmp_path):
    """A GIfTI surface made from the MNI brain mask (mm), converted with --onto the mask's own
    output (stored LAS, converted to RAS): every vertex is a corner between voxels of the mask
    and voxels outside it."""
    mask_img = load_mni152_brain_mask(resolution=2)
    mask = np.asarray(mask_img.dataobj).astype(np.uint8)
    las = tmp_path / "mask-las.nii"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(mask[::-1]), _flip(mask_img.affine, 0, mask.shape[0])), las)
    out = tmp_path / "out"
    run("convert", "--type", "segmentation", "--workers", "0", las, out)
    surface = tmp_path / "brain.gii"
    write_gifti(surface, *surface_of_mask(mask, mask_img.affine))
    run("mesh-to-precomputed", "--onto", out, surface, out)
    vertices, _ = decode_legacy(gzip.decompress((out / "mesh" / "brain.gz").read_bytes()))  # gzip: the default
    resolution = np.asarray(json.loads((out / "info").read_text())["scales"][0]["resolution"])
    corners = vertices / resolution  # voxel-corner coordinates of the output's grid
    assert np.abs(corners - np.round(corners)).max() < 1e-3
    stored = np.pad(read_scale(out, 0)[..., 0], 1)  # corner g touches voxels g-1 and g
    g = np.round(corners).astype(int) + 1
    around = np.stack([stored[g[:, 0] - dx, g[:, 1] - dy, g[:, 2] - dz]
                       for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)], axis=1)
    assert (around.max(axis=1) == 1).all() and (around.min(axis=1) == 0).all()


def test_verify_fails_on_a_tampered_transform(las_volume, tmp_path):
    out = tmp_path / "out"
    streamconv.convert(las_volume, out, workers=0)
    assert verify(las_volume, out).ok and verify(las_volume, out).placed
    matrix = transform(out)
    matrix[0, 3] += 1e6  # one millimetre along x
    (out / "transform.json").write_text(json.dumps(matrix.tolist()))
    report = verify(las_volume, out)
    assert not report.ok and "transform.json differs" in report.problems[0]
    (out / "transform.json").write_text("[[1, 0]]")
    assert "transform.json is not a 3x4 or 4x4" in verify(las_volume, out).problems[0]


def test_label_meshes_stay_on_their_labels_in_any_voxel_order(tmp_path):
    """`--meshes` of one label volume saved RAS and LAS: in RAS order both give the same mesh
    files, on the boundaries of the labels of the stored grid that transform.json places."""
    from test_segmentations import check_meshes

    x, y, z = np.indices((30, 26, 22))
    labels = np.zeros((30, 26, 22), np.uint8)
    labels[(x - 10) ** 2 + (y - 12) ** 2 + (z - 11) ** 2 < 36] = 5  # off centre along x
    labels[18:26, 6:20, 4:15] = 9
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    inputs = {"RAS": (labels, affine), "LAS": (labels[::-1], _flip(affine, 0, 30))}
    meshes = {}
    for name, (array, matrix) in inputs.items():
        src, out = tmp_path / f"{name}.nii", tmp_path / name
        nib.save(nib.Nifti1Image(np.ascontiguousarray(array), matrix), src)
        streamconv.convert(src, out, volume_type="segmentation", meshes=True, workers=0, chunk_size=16)
        meshes[name] = {str(p.relative_to(out)): p.read_bytes() for p in (out / "mesh").rglob("*")
                        if p.is_file()}
        same_values_in_world(src, out)
    assert meshes["LAS"] == meshes["RAS"] and len(meshes["RAS"]) >= 3
    check_meshes(tmp_path / "LAS", read_scale(tmp_path / "LAS", 0)[..., 0], np.array([2e6] * 3))


def test_header_units_other_than_mm_are_honoured(tmp_path):
    """A NIfTI in micrometres: nibabel's affine is in µm, transform.json in nm all the same."""
    src = tmp_path / "micron.nii"
    affine = np.diag([4.0, 4.0, 40.0, 1.0])
    affine[:3, 3] = (100.0, -200.0, 3000.0)
    img = nib.Nifti1Image(np.arange(6 * 5 * 4, dtype=np.uint16).reshape(6, 5, 4), affine)
    img.header.set_xyzt_units("micron")
    nib.save(img, src)
    streamconv.convert(src, tmp_path / "out", workers=0)
    resolution = np.array([4000.0, 4000.0, 40000.0])
    voxels = np.array([[0, 0, 0], [5, 4, 3], [2, 1, 3]], np.float64)
    grid = np.c_[(voxels + 0.5) * resolution, np.ones(3)]
    world_nm = (grid @ transform(tmp_path / "out").T)[:, :3]
    assert np.allclose(world_nm, nib.affines.apply_affine(affine, voxels) * 1000)
    record = json.loads((tmp_path / "out" / "placement.json").read_text())
    assert np.allclose(record["voxel_to_world_mm"], np.diag([1e-3, 1e-3, 1e-3, 1]) @ affine)


def test_onto_an_output_without_transform_is_refused(tmp_path):
    out = tmp_path / "out"
    streamconv.convert(Path(MNI152_FILE_PATH), out, workers=0, max_scales=1)
    (out / "transform.json").unlink()
    surface = tmp_path / "s.gii"
    write_gifti(surface, np.eye(3, dtype=np.float32), np.array([[0, 1, 2]], np.int32))
    result = subprocess.run([str(BIN / "streamconv"), "mesh-to-precomputed", "--onto", str(out),
                             str(surface), str(out)], capture_output=True, text=True)
    assert result.returncode == 2 and "transform.json does not exist" in result.stderr
    assert "Traceback" not in result.stderr
