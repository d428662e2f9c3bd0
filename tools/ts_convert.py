"""The tensorstore script a strong engineer would write instead of streamconv (issue 18's contestant).

    python tools/ts_convert.py INPUT OUT --info LAYOUT.json [--orientation RIA]

INPUT is a NIfTI volume (written as its voxel array lies: x, y, z) or a directory of sections
(decoded with imagecodecs, written into scale 0 slab by slab; `--orientation` as streamconv's
`--input-orientation`). LAYOUT is an `info` whose scales (keys, sizes, resolutions, chunk sizes,
encoding, JPEG quality) are the pyramid to write: tools/bench.py passes streamconv's own, so both
contestants write the same scales. Each coarser scale is `ts.downsample` of the scale below,
read back from disk: "mode" for segmentations, "mean" for images. No memory bound, no resume.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import imagecodecs
import numpy as np
import tensorstore as ts


def open_scale(out: str, info: dict, scale: dict) -> ts.TensorStore:
    members = {k: scale[k] for k in ("key", "size", "voxel_offset", "chunk_sizes", "resolution", "encoding",
                                     "compressed_segmentation_block_size") if k in scale}
    if scale["encoding"] == "jpeg":
        members["jpeg_quality"] = scale["jpeg_quality"]
    members["chunk_size"] = members.pop("chunk_sizes")[0]
    return ts.open({"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": out},
                    "multiscale_metadata": {k: info[k] for k in ("type", "data_type", "num_channels")},
                    "scale_metadata": members}, create=True, open=True).result()


def write_sections(scale0: ts.TensorStore, folder: Path, orientation: str) -> None:
    """Section i is plane i along the slice axis; columns, rows and slices go to the axes the
    orientation letters name (R/L: x, A/P: y, S/I: z), reversed for L, P and I."""
    axes = ["RLAPSI".index(c) // 2 for c in orientation]
    flips = [c in "LPI" for c in orientation]
    files = sorted(p for p in folder.iterdir() if p.is_file())
    depth = scale0.chunk_layout.read_chunk.shape[axes[2]]
    for s0 in range(0, len(files), depth):
        slab = np.stack([imagecodecs.imread(p) for p in files[s0:s0 + depth]])  # (slice, row, column)
        slab = np.moveaxis(slab, (2, 1, 0), axes)[..., None]  # (x, y, z, channel)
        index: list[slice] = [slice(None)] * 4
        for k, (axis, flip) in enumerate(zip(axes, flips)):
            n = scale0.shape[axis]
            if k == 2:
                span = (s0, s0 + slab.shape[axis])
                index[axis] = slice(n - span[1], n - span[0]) if flip else slice(*span)
            if flip:
                slab = np.flip(slab, axis)
        scale0[tuple(index)].write(slab).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("out")
    parser.add_argument("--info", type=Path, required=True)
    parser.add_argument("--orientation", default="RAS")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="streamconv's default")
    args = parser.parse_args()
    info = json.loads(args.info.read_text())
    scales = [open_scale(args.out, info, {"jpeg_quality": args.jpeg_quality, **s}) for s in info["scales"]]
    if args.input.is_dir():
        write_sections(scales[0], args.input, args.orientation)
    else:
        import nibabel

        data = np.asanyarray(nibabel.load(args.input).dataobj)
        scales[0].write(data.reshape(data.shape[:3] + (-1,))).result()
    method = "mode" if info["type"] == "segmentation" else "mean"
    for k in range(1, len(scales)):
        fine, coarse = info["scales"][k - 1]["resolution"], info["scales"][k]["resolution"]
        factors = [round(c / f) for c, f in zip(coarse, fine)] + [1]
        scales[k].write(ts.downsample(scales[k - 1], factors, method)).result()


if __name__ == "__main__":
    main()
