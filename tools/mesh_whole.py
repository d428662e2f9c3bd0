"""Igneous-style meshing for comparison: the whole label volume in memory, zmesh on all of it in
one process, each label simplified exactly as streamconv simplifies its pieces (the same zmesh
calls with the same parameters, `streamconv.meshing.blocks.LEVELS`: every level of detail from
the raw marching-cubes mesh) and each level written as one Draco mesh.

    python tools/mesh_whole.py LABELS.nii OUT_DIR [--levels N]

So the two contestants differ only in what is being compared: one process on the whole volume
against blocks streamed through workers. (Until this was fixed the contestant made one level
with `Mesher.get(reduction_factor=2, max_error=...)`, which stops at the 2x target where
`Mesher.simplify` with the same numbers goes on to max_error: about 6 times the triangles of
streamconv's level 0 and a different amount of work.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import DracoPy
import nibabel as nib
import numpy as np
import zmesh

from streamconv.meshing.blocks import LEVELS


def mesh_whole(volume: str, out: str, levels: int = len(LEVELS)) -> int:
    image = nib.load(volume)
    labels = np.pad(np.asarray(image.dataobj), 1)  # closed surfaces, as streamconv's
    resolution = tuple(float(z) * 1e6 for z in image.header.get_zooms()[:3])
    unit = min(resolution)
    mesher = zmesh.Mesher(resolution)
    mesher.mesh(labels)
    del labels
    Path(out).mkdir(parents=True, exist_ok=True)
    ids = [int(i) for i in mesher.ids() if i != 0]
    for label in ids:
        raw = mesher.get(label, normals=False, reduction_factor=0)
        mesher.erase(label)
        for lod, level in enumerate(LEVELS[:levels]):
            mesh = mesher.simplify(raw, reduction_factor=level.reduction, max_error=level.max_error * unit,
                                   compute_normals=False) if level.reduction > 1 else raw
            data = DracoPy.encode(mesh.vertices, mesh.faces, quantization_bits=16)
            (Path(out) / f"{label}.{lod}").write_bytes(data)
    return len(ids)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("volume")
    parser.add_argument("out")
    parser.add_argument("--levels", type=int, default=len(LEVELS))
    args = parser.parse_args()
    print(mesh_whole(args.volume, args.out, args.levels), "labels")
