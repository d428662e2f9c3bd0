"""A closed triangle surface around a mask: the boundary faces of its voxels, as GIfTI (mm).

    python tools/make_surface.py OUT.gii [--mask MASK.nii]   (default: nilearn's MNI152 brain mask)

Each voxel face between the mask and the outside becomes two triangles, wound so that normals
point outwards; vertices are voxel corners shared between faces, placed by the mask's affine.
"""

from __future__ import annotations

import argparse
import os

import nibabel as nib
import numpy as np


def surface_of_mask(mask: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vertices N x 3 float32 in mm, triangles M x 3 int32) of the mask's boundary."""
    padded = np.pad(mask.astype(bool), 1)
    quads = []
    for axis in range(3):
        b, c = (axis + 1) % 3, (axis + 2) % 3
        lo = np.take(padded, range(padded.shape[axis] - 1), axis)
        hi = np.take(padded, range(1, padded.shape[axis]), axis)
        for sign, faces in ((1, lo & ~hi), (-1, hi & ~lo)):  # normal along +axis, -axis
            # Along `axis` the index in `faces` is the plane between the two voxels in corner
            # coordinates (corner g lies at voxel position g - 0.5); along b and c it is padded.
            corner = np.argwhere(faces)
            corner[:, [b, c]] -= 1
            eb, ec = np.eye(3, dtype=int)[b], np.eye(3, dtype=int)[c]
            ring = [corner, corner + eb, corner + eb + ec, corner + ec]
            quads.append(np.stack(ring if sign > 0 else ring[::-1], axis=1))
    quads = np.concatenate(quads)
    corners, index = np.unique(quads.reshape(-1, 3), axis=0, return_inverse=True)
    index = index.reshape(-1, 4)
    triangles = np.concatenate([index[:, [0, 1, 2]], index[:, [0, 2, 3]]]).astype(np.int32)
    # corner (i, j, k) of voxel (i, j, k) lies half a voxel before its centre
    vertices = nib.affines.apply_affine(affine, corners - 0.5).astype(np.float32)
    return vertices, triangles


def write_gifti(path: str | os.PathLike, vertices: np.ndarray, triangles: np.ndarray) -> None:
    image = nib.gifti.GiftiImage(darrays=[
        nib.gifti.GiftiDataArray(vertices, intent="NIFTI_INTENT_POINTSET", datatype="NIFTI_TYPE_FLOAT32"),
        nib.gifti.GiftiDataArray(triangles, intent="NIFTI_INTENT_TRIANGLE", datatype="NIFTI_TYPE_INT32")])
    nib.save(image, str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--mask", help="a mask volume [default: nilearn's MNI152 brain mask]")
    args = parser.parse_args()
    if args.mask:
        image = nib.load(args.mask)
    else:
        from nilearn.datasets import load_mni152_brain_mask
        image = load_mni152_brain_mask()
    vertices, triangles = surface_of_mask(np.asarray(image.dataobj) > 0, image.affine)
    write_gifti(args.out, vertices, triangles)
    print(f"{args.out}: {len(vertices)} vertices, {len(triangles)} triangles")


if __name__ == "__main__":
    main()
