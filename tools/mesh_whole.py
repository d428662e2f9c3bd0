"""Igneous-style meshing for comparison: the whole label volume in memory, zmesh on all of it in
one process, each label simplified as streamconv's finest level and written as one Draco mesh.

    python tools/mesh_whole.py LABELS.nii OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import DracoPy
import nibabel as nib
import numpy as np
import zmesh


def mesh_whole(volume: str, out: str) -> int:
    image = nib.load(volume)
    labels = np.pad(np.asarray(image.dataobj), 1)  # closed surfaces, as streamconv's
    resolution = tuple(float(z) * 1e6 for z in image.header.get_zooms()[:3])
    mesher = zmesh.Mesher(resolution)
    mesher.mesh(labels)
    del labels
    Path(out).mkdir(parents=True, exist_ok=True)
    ids = [int(i) for i in mesher.ids() if i != 0]
    for label in ids:
        mesh = mesher.get(label, normals=False, reduction_factor=2, max_error=0.5 * min(resolution))
        mesher.erase(label)
        (Path(out) / str(label)).write_bytes(DracoPy.encode(mesh.vertices, mesh.faces, quantization_bits=16))
    return len(ids)


if __name__ == "__main__":
    print(mesh_whole(sys.argv[1], sys.argv[2]), "labels")
