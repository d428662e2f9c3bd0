"""Synthetic NIfTI volumes for benchmarks: smooth tissue, or blocky labels, written slab by slab.

    python tools/make_volume.py OUT.nii --shape 1024,1024,1024 --dtype uint8 [--labels 1000]
    python tools/make_volume.py OUT.nii --shape 512,512,512 --dtype uint32 --labels 24 --label-shape curved

Images are sums of a few slow sinusoids plus mild noise (so they behave like anatomy, not like
random bytes); labels are nearest-seed regions on a coarse grid, upsampled, with ids spread over
the type's range (`blocky`: every 8^3 block holds one label), or (`curved`, as in atlases)
background 0 outside a wavy ellipsoid and `labels - 1` regions inside it, nearest-seed cells of
smoothly warped coordinates, so their boundaries are smooth curves and every block they cross
holds two or three labels. Only one z slab is in memory at a time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np

SLAB = 32
LABEL_SHAPES = ("blocky", "curved")


def _image_slab(shape: tuple[int, int, int], z0: int, z1: int, dtype: np.dtype, rng) -> np.ndarray:
    x, y, z = (np.linspace(0, 6, n, dtype=np.float32) for n in shape)
    xs, ys, zs = x[:, None, None], y[None, :, None], z[None, None, z0:z1]
    field = np.sin(xs) * np.cos(ys * 1.3) + 0.5 * np.sin(zs * 0.7 + xs * 0.4) + 0.3 * np.cos(ys * 3 + zs * 2)
    field = (field + 1.8) / 3.6 + rng.normal(0, 0.02, (shape[0], shape[1], z1 - z0)).astype(np.float32)
    top = np.iinfo(dtype).max if dtype.kind in "iu" else 1.0
    return np.clip(field, 0, 1) * top


def _label_slab(shape: tuple[int, int, int], z0: int, z1: int, dtype: np.dtype, labels: int,
                seed: int) -> np.ndarray:
    cell = 16
    grid = tuple(-(-n // cell) for n in shape)
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, labels, grid)  # the same for every slab: drawn from the seed
    ids = np.sort(rng.choice(np.iinfo(dtype).max, labels, replace=False)).astype(dtype) + 1
    planes = np.arange(z0, z1) // cell
    block = coarse[:, :, planes].repeat(cell, 0).repeat(cell, 1)[:shape[0], :shape[1]]
    return ids[block]


def _curved_slab(shape: tuple[int, int, int], z0: int, z1: int, dtype: np.dtype, labels: int,
                 seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    seeds = rng.uniform(0.2, 0.8, (labels - 1, 3)).astype(np.float32)  # in the unit cube
    ids = np.sort(rng.choice(np.iinfo(dtype).max, labels - 1, replace=False)).astype(dtype) + 1
    phase = rng.uniform(0, 2 * np.pi, 6).astype(np.float32)
    x, y, z = (np.linspace(0, 1, n, dtype=np.float32) for n in shape)
    x, y, z = x[:, None, None], y[None, :, None], z[None, None, z0:z1]
    # slow warps, a few cells across: curved boundaries, smooth at the scale of a block
    u = x + 0.07 * np.sin(7 * y + phase[0]) * np.cos(5 * z + phase[1])
    v = y + 0.07 * np.sin(6 * z + phase[2]) * np.cos(7 * x + phase[3])
    w = z + 0.07 * np.sin(5 * x + phase[4]) * np.cos(6 * y + phase[5])
    best = np.full(np.broadcast_shapes(u.shape, v.shape, w.shape), np.inf, np.float32)
    label = np.zeros(best.shape, np.intp)
    for k, (a, b, c) in enumerate(seeds):
        d = (u - a) ** 2 + (v - b) ** 2 + (w - c) ** 2
        closer = d < best
        best[closer], label[closer] = d[closer], k
    brain = ((u - 0.5) / 0.42) ** 2 + ((v - 0.5) / 0.46) ** 2 + ((w - 0.5) / 0.4) ** 2 <= 1
    return np.where(brain, ids[label], 0).astype(dtype)


def make_volume(path: str | Path, shape: tuple[int, int, int], dtype: str = "uint8",
                labels: int | None = None, voxel_size: tuple[float, float, float] = (1, 1, 1),
                seed: int = 0, label_shape: str = "blocky") -> Path:
    """Write the volume (uncompressed NIfTI-1) unless it is there already; return its path."""
    path = Path(path)
    if path.exists():
        return path
    dt = np.dtype(dtype)
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dt)
    header.set_zooms(voxel_size)
    header.set_xyzt_units("mm")
    header.set_qform(np.diag(list(voxel_size) + [1]), code=1)
    header.set_sform(np.diag(list(voxel_size) + [1]), code=1)
    rng = np.random.default_rng(seed)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        header.write_to(f)
        f.write(b"\0" * (int(header.get_data_offset()) - f.tell()))
        for z0 in range(0, shape[2], SLAB):
            z1 = min(z0 + SLAB, shape[2])
            slab = (_image_slab(shape, z0, z1, dt, rng) if not labels
                    else _curved_slab(shape, z0, z1, dt, labels, seed) if label_shape == "curved"
                    else _label_slab(shape, z0, z1, dt, labels, seed))
            f.write(np.asarray(slab, dt).tobytes(order="F"))
    tmp.rename(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path")
    parser.add_argument("--shape", default="256,256,256")
    parser.add_argument("--dtype", default="uint8")
    parser.add_argument("--labels", type=int)
    parser.add_argument("--label-shape", choices=LABEL_SHAPES, default="blocky")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    shape = tuple(int(n) for n in args.shape.split(","))
    print(make_volume(args.path, shape, args.dtype, args.labels, seed=args.seed,  # type: ignore[arg-type]
                      label_shape=args.label_shape))


if __name__ == "__main__":
    main()
