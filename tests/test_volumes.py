"""Volumes end to end: convert real and synthetic volumes, read every scale back with
tensorstore, and hold it against the input and the reference downsampler."""

from __future__ import annotations

import json
import math
from pathlib import Path

import dipy.data
import nibabel as nib
import nibabel.testing
import numpy as np
import pytest
from nilearn.datasets import MNI152_FILE_PATH
from reference import check_pyramid, read_scale

import streamconv


def convert(src, out: Path, **options) -> dict:
    streamconv.convert(src, out, **options)
    return json.loads((out / "info").read_text())


def as_xyzc(data: np.ndarray) -> np.ndarray:
    return data.reshape(data.shape[:3] + (-1,))


def test_mni152_template_with_a_process_pool(tmp_path):
    """The real MNI152 template nilearn ships: 197 x 233 x 189 uint8 at 1 mm. (The budget counts
    this process's own memory, which is the test runner's, grown by the tests before: 2 GiB.)"""
    info = convert(MNI152_FILE_PATH, tmp_path / "out", workers=2, memory="2GiB")
    assert info["@type"] == "neuroglancer_multiscale_volume"
    assert (info["type"], info["data_type"], info["num_channels"]) == ("image", "uint8", 1)
    scale0 = info["scales"][0]
    assert scale0["key"] == "1000000_1000000_1000000" and scale0["resolution"] == [1000000] * 3
    assert scale0["size"] == [197, 233, 189] and scale0["voxel_offset"] == [0, 0, 0]
    assert all(s["encoding"] == "raw" and s["chunk_sizes"] == [[64, 64, 64]] for s in info["scales"])
    assert [s["size"] for s in info["scales"]] == [[197, 233, 189], [99, 117, 95], [50, 59, 48]]
    data = np.asarray(nib.load(MNI152_FILE_PATH).dataobj)
    check_pyramid(tmp_path / "out", as_xyzc(data), "average", info)


def test_anisotropic_int16_volume_halves_the_fine_axes_first(tmp_path):
    """dipy's aniso_vox: 58 x 58 x 24 int16 at 4 x 4 x 5 mm."""
    path = dipy.data.get_fnames(name="aniso_vox")
    info = convert(path, tmp_path / "out", workers=0, chunk_size=16, voxel_order="file")  # as the file
    assert info["data_type"] == "int16"
    resolutions = [s["resolution"] for s in info["scales"]]
    assert resolutions[0] == [4000000, 4000000, 5000000]
    assert len(resolutions) >= 3
    check_pyramid(tmp_path / "out", as_xyzc(np.asarray(nib.load(path).dataobj)), "average", info)

    # 4 x 4 x 40 nm: only x and y are halved until the voxels are near isotropic, and the
    # chunks are longer along them.
    aniso = tmp_path / "aniso.nii"
    img = nib.Nifti1Image(np.arange(90 * 70 * 12, dtype=np.uint16).reshape(90, 70, 12),
                          np.diag([0.004, 0.004, 0.04, 1]))
    img.header.set_xyzt_units("micron")
    nib.save(img, aniso)
    info = convert(aniso, tmp_path / "aniso", workers=0, chunk_size=8)
    factors = [[round(c / p) for c, p in zip(b["resolution"], a["resolution"])]
               for a, b in zip(info["scales"], info["scales"][1:])]
    assert factors[:3] == [[2, 2, 1]] * 3
    chunk = info["scales"][0]["chunk_sizes"][0]
    assert chunk[0] == chunk[1] > chunk[2]
    check_pyramid(tmp_path / "aniso", as_xyzc(np.asarray(img.dataobj)), "average", info)


def test_four_d_volume_becomes_channels(tmp_path):
    path = Path(nibabel.testing.data_path) / "example4d.nii.gz"  # 128 x 96 x 24 x 2 int16
    info = convert(path, tmp_path / "out", workers=2, chunk_size=32, memory="2GiB", voxel_order="file")
    assert info["num_channels"] == 2
    check_pyramid(tmp_path / "out", np.asarray(nib.load(path).dataobj), "average", info)


def test_rgb_volume_becomes_three_uint8_channels(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (21, 17, 13, 3), dtype=np.uint8)
    structured = rgb.copy().view([("R", "u1"), ("G", "u1"), ("B", "u1")]).reshape(21, 17, 13)
    path = tmp_path / "rgb.nii"
    nib.save(nib.Nifti1Image(structured, np.eye(4)), path)
    info = convert(path, tmp_path / "out", workers=0, chunk_size=8)
    assert (info["data_type"], info["num_channels"]) == ("uint8", 3)
    check_pyramid(tmp_path / "out", rgb, "average", info)


def labels(shape: tuple[int, int, int], dtype: str, high: int, seed: int = 0) -> np.ndarray:
    """Blocky regions with single-voxel specks: ties and near-ties in many 2x2x2 blocks."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, high, 12, dtype=np.uint64, endpoint=True).astype(dtype)
    coarse = rng.integers(0, len(ids), tuple(math.ceil(n / 5) for n in shape))
    data = ids[coarse].repeat(5, 0).repeat(5, 1).repeat(5, 2)[:shape[0], :shape[1], :shape[2]]
    specks = rng.random(shape) < 0.2
    data[specks] = ids[rng.integers(0, len(ids), int(specks.sum()))]
    return np.ascontiguousarray(data)


@pytest.mark.parametrize("dtype, high", [("uint32", 2 ** 32 - 1), ("uint64", 2 ** 63 + 12345)])
def test_label_volumes_use_majority_at_every_scale(tmp_path, dtype, high):
    data = labels((70, 50, 45), dtype, high)
    path = tmp_path / "labels.nii"
    nib.save(nib.Nifti1Image(data, np.eye(4), dtype=np.dtype(dtype)), path)
    info = convert(path, tmp_path / "out", workers=2, volume_type="segmentation", chunk_size=16,
                   memory="2GiB")
    assert (info["type"], info["data_type"]) == ("segmentation", dtype)
    assert len(info["scales"]) >= 3
    check_pyramid(tmp_path / "out", data[..., None], "majority", info)


def test_cli_and_api_write_the_same_bytes_and_verify_passes(tmp_path):
    from typer.testing import CliRunner

    from streamconv.cli import app

    streamconv.convert(MNI152_FILE_PATH, tmp_path / "api", workers=0)
    result = CliRunner().invoke(app, ["convert", str(MNI152_FILE_PATH), str(tmp_path / "cli"), "-q"])
    assert result.exit_code == 0, result.output
    files = {p.relative_to(tmp_path / "api") for p in (tmp_path / "api").rglob("*")
             if p.is_file() and ".streamconv" not in p.parts}
    assert files and all((tmp_path / "api" / f).read_bytes() == (tmp_path / "cli" / f).read_bytes()
                         for f in files)
    verified = CliRunner().invoke(app, ["verify", str(MNI152_FILE_PATH), str(tmp_path / "cli")])
    assert verified.exit_code == 0 and "ok" in verified.output
    assert read_scale(tmp_path / "cli", 2).shape == (50, 59, 48, 1)
