"""Readers: every input becomes a `Source` that fills (channel, z, y, x) slabs on request."""

from __future__ import annotations

import os

import numpy as np

from ..errors import UsageError
from .base import Source
from .reorient import Reoriented
from .rescale import Rescaled
from .stack import SliceStack, is_stack
from .volume import NibabelSource

__all__ = ["Source", "NibabelSource", "SliceStack", "open_source", "VOXEL_ORDERS"]

#: how `convert` stores a volume's voxels: `ras`, the closest RAS order of its affine (lossless:
#: axes permuted and flipped), or `file`, the file's own order (neuroglancer-scripts')
VOXEL_ORDERS = ("ras", "file")


def open_source(path: str | os.PathLike, *, ignore_scaling: bool = False,
                resolution: tuple[float, float, float] | None = None,
                orientation: str | None = None, fill_missing: float | None = None,
                input_range: tuple[float, float] | None = None, voxel_order: str = "file") -> Source:
    """The source for an input: a slice stack (directory, glob, list file, image or multi-page
    TIFF) or a volume file that nibabel reads. `input_range` maps those values onto 0..1 in
    float32, as neuroglancer-scripts' --input-min/--input-max do. `voxel_order` `ras` stores a
    volume's voxels in the RAS order closest to its affine (a stack's order is
    `orientation`'s)."""
    if voxel_order not in VOXEL_ORDERS:
        raise UsageError(f"--voxel-order is one of {', '.join(VOXEL_ORDERS)}, got {voxel_order!r}")
    spec = os.fspath(path)
    source: Source
    if is_stack(spec):
        source = SliceStack(spec, orientation or "RAS", resolution, fill_missing)
    elif orientation is not None or fill_missing is not None:
        raise UsageError("--input-orientation and --fill-missing apply to slice stacks only")
    else:
        source = NibabelSource(spec, ignore_scaling=ignore_scaling, resolution=resolution)
        placement = source.placement
        if voxel_order == "ras" and placement is not None and placement.order != "RAS":
            source = Reoriented(source, placement.order)
    return source if input_range is None else Rescaled(source, np.dtype("float32"), input_range)
