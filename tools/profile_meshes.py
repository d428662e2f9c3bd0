"""CPU seconds of each step of a mesh block task (tools for docs/benchmarks.md): the first block
of a segmentation on disk, meshed as `meshing.blocks.mesh_block` does, step by step, plus the
Draco encoding the label tasks do.

    python tools/make_volume.py lab.nii --shape 256,256,256 --dtype uint32 --labels 200
    streamconv convert lab.nii lab --type segmentation -q
    python tools/profile_meshes.py lab --edge 129
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import zmesh

from streamconv.layout.dataset import open_dataset
from streamconv.meshing.blocks import LEVELS, BlockGrid, read_padded
from streamconv.meshing.multilod import encode_fragment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("--edge", type=int, default=128)
    args = parser.parse_args()
    spent: dict[str, float] = {}
    clock = time.process_time()

    def tick(step: str) -> None:
        nonlocal clock
        now = time.process_time()
        spent[step] = spent.get(step, 0.0) + now - clock
        clock = now

    volume = open_dataset(args.dataset)
    grid = BlockGrid(volume.scales[0], args.edge)
    labels = read_padded(volume, grid.scale, grid.voxels((0, 0, 0)))
    tick("read the block (read_padded)")
    resolution = np.asarray(grid.scale.resolution, np.float64)
    mesher = zmesh.Mesher(tuple(resolution))
    mesher.mesh(labels.T)
    tick("marching cubes (Mesher.mesh)")
    ids = [int(i) for i in mesher.ids() if i != 0]
    for label in ids:
        raw = mesher.get(label, normals=False, reduction_factor=0)
        mesher.erase(label)
        tick("raw meshes (Mesher.get)")
        arrays = {}
        for lod, level in enumerate(LEVELS):
            mesh = mesher.simplify(raw, reduction_factor=level.reduction, max_error=level.max_error * resolution.min(),
                                   compute_normals=False)
            tick(f"simplification, level {lod}")
            arrays[f"v{lod}"] = (np.asarray(mesh.vertices, np.float64) / resolution).astype(np.float32)
            arrays[f"f{lod}"] = np.asarray(mesh.faces, np.uint32)
            encode_fragment(arrays[f"v{lod}"].astype(np.float64), arrays[f"f{lod}"], (grid.edge,) * 3)
            tick("Draco encoding (label tasks)")
        np.savez(io.BytesIO(), allow_pickle=False, **arrays)
        tick("pieces as npz")
    print(f"{len(ids)} labels in a block of {args.edge}^3 cells")
    for step, seconds in spent.items():
        print(f"{step:32s} {seconds:8.2f} s")
    print(f"{'total':32s} {sum(spent.values()):8.2f} s")


if __name__ == "__main__":
    main()
