"""A FreeSurfer-style atlas for the segmentation tests (nilearn ships no atlas offline, so the
labels are the MNI template's tissue classes), its LUT, the command line, and the checks of
meshes against the labels they were made from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from mesh_reader import read_multilod, watertight
from nilearn.datasets import load_mni152_gm_template, load_mni152_wm_template

STREAMCONV = str(Path(sys.executable).with_name("streamconv"))
LUT = """\
#$Id: FreeSurferColorLUT.txt (a few rows of it)
#No. Label Name:                            R   G   B   A

0   Unknown                                 0   0   0   0
2   Left-Cerebral-White-Matter              245 245 245 0
3   Left-Cerebral-Cortex                    205 62  78  0
4   Left-Lateral-Ventricle                  120 18  134 0
41  Right-Cerebral-White-Matter             245 245 245 0
42  Right-Cerebral-Cortex                   205 62  78  0
"""
NAMED = {2: "Left-Cerebral-White-Matter", 3: "Left-Cerebral-Cortex", 41: "Right-Cerebral-White-Matter",
         42: "Right-Cerebral-Cortex"}


def streamconv(*args: object, code: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run([STREAMCONV, *map(str, args)], capture_output=True, text=True)
    assert result.returncode == code, result.stderr
    return result


def make_aseg(work: Path) -> tuple[Path, Path, np.ndarray]:
    """(volume, LUT, labels): the MNI template's tissue classes at 2 mm as an aseg, with a
    small closed blob (label 77) that the LUT does not name."""
    gm, wm = load_mni152_gm_template(resolution=None), load_mni152_wm_template(resolution=None)
    g, w = (np.asarray(i.dataobj, np.float32)[::2, ::2, ::2] for i in (gm, wm))
    labels = np.zeros(g.shape, np.uint8)
    right = (np.arange(g.shape[0]) >= g.shape[0] // 2)[:, None, None]
    labels[(w > 0.5) & ~right], labels[(w > 0.5) & right] = 2, 41
    labels[(g > 0.5) & (w <= 0.5) & ~right], labels[(g > 0.5) & (w <= 0.5) & right] = 3, 42
    x, y, z = np.indices(g.shape)
    labels[(x - 20) ** 2 + (y - 20) ** 2 + (z - 20) ** 2 < 16] = 77
    affine = gm.affine @ np.diag([2, 2, 2, 1])
    volume = work / "aseg.nii.gz"
    nib.save(nib.Nifti1Image(labels, affine), volume)
    lut = work / "FreeSurferColorLUT.txt"
    lut.write_text(LUT)
    return volume, lut, labels


def boundary_distance_ok(vertices_vox: np.ndarray, mask: np.ndarray, limit: float = 1.0) -> np.ndarray:
    """For each vertex (voxel-corner coordinates: voxel i spans [i, i + 1)), whether a face
    between a voxel of the mask and one outside it (or the volume's edge) lies within `limit`."""
    padded = np.pad(mask, 1)
    base = np.floor(vertices_vox).astype(np.int64) - 1  # voxel index of the lowest neighbour
    ok = np.zeros(len(vertices_vox), bool)
    span = range(-1, 3)
    for axis in range(3):
        for d in [(a, b, c) for a in span for b in span for c in span]:
            lo = base + np.asarray(d)
            hi = lo.copy()
            hi[:, axis] += 1
            a = padded[tuple((lo + 1).clip(0, np.asarray(padded.shape) - 1).T)]
            b = padded[tuple((hi + 1).clip(0, np.asarray(padded.shape) - 1).T)]
            face = (a != b)
            # the face between lo and hi: plane at hi[axis], square [lo, lo + 1) on the others
            nearest = np.clip(vertices_vox, lo, lo + 1).astype(np.float64)
            nearest[:, axis] = hi[:, axis]
            ok |= face & (np.linalg.norm(vertices_vox - nearest, axis=1) <= limit)
    return ok


def check_meshes(out: Path, labels: np.ndarray, resolution: np.ndarray) -> None:
    for label in sorted(set(np.unique(labels).tolist()) - {0}):
        lods = read_multilod(out / "mesh", label)
        assert len(lods) >= 2
        vertices, faces = lods[0]
        assert len(faces) > 0 and all(len(f) > 0 for _, f in lods)
        voxels = vertices / resolution  # the voxel-corner frame: voxel i spans [i, i + 1)
        assert boundary_distance_ok(voxels, labels == label).all(), label
        assert watertight(vertices, faces, tolerance=float(resolution.min()) * 1e-3), label
        assert len(lods[-1][1]) <= len(faces)


def same_meshes(a: Path, b: Path, labels: list[int]) -> None:
    """Every label reads back from both mesh directories with the same vertices and faces at
    every level of detail."""
    for label in labels:
        lods_a, lods_b = read_multilod(a, label), read_multilod(b, label)
        assert len(lods_a) == len(lods_b) >= 2, label
        for (va, fa), (vb, fb) in zip(lods_a, lods_b):
            assert len(fa) > 0 and np.array_equal(va, vb) and np.array_equal(fa, fb), label


def check_properties(properties: dict) -> None:
    """The spec's rules (section 7): ids decimal strings, one entry each, typed properties."""
    assert properties["@type"] == "neuroglancer_segment_properties"
    ids = properties["inline"]["ids"]
    assert all(isinstance(i, str) and i.isdigit() and str(int(i)) == i for i in ids)
    assert len(set(ids)) == len(ids)
    seen = set()
    for prop in properties["inline"]["properties"]:
        assert prop["id"] not in seen and len(prop["values"]) == len(ids)
        seen.add(prop["id"])
        assert prop["type"] in ("label", "description", "string", "tags", "number")
        if prop["type"] in ("label", "description", "string"):
            assert all(isinstance(v, str) for v in prop["values"])
    kinds = [p["type"] for p in properties["inline"]["properties"]]
    assert kinds.count("label") <= 1 and kinds.count("description") <= 1
