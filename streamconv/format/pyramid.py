"""The pyramid plan and the `info` file, with neuroglancer-scripts' rules for anisotropic data.

On anisotropic data only the finer axes are halved until voxels are near isotropic, then all axes;
chunk shapes keep a roughly isotropic physical extent with about `chunk_size**3` voxels; scales are
added until the whole volume fits in one chunk.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from ..encodings import Codec
from ..errors import DataError, UsageError
from .geometry import Scale, Vec3, ceil_div, format_key, triple
from .info import VOLUME_TYPES, VolumeInfo

log = logging.getLogger("streamconv")

__all__ = ["VOLUME_TYPES", "check_chunk_size", "plan_scales", "plan_pyramid"]


def check_chunk_size(chunk_size: int) -> None:
    if chunk_size < 1 or chunk_size & (chunk_size - 1):
        raise UsageError(f"--chunk-size must be a power of two, got {chunk_size}")


MAX_ANISOTROPY = 4096  # largest ratio of voxel sizes planned: BigBrain's is 1, thick sections ~100


def plan_scales(size: Sequence[int], resolution: Sequence[float], chunk_size: int = 64,
                max_scales: int | None = None) -> list[Scale]:
    """Scales from full resolution down to one chunk; `resolution` in nm, (x, y, z)."""
    check_chunk_size(chunk_size)
    if max_scales is not None and max_scales < 1:
        raise UsageError(f"--max-scales must be at least 1, got {max_scales}")
    if min(size) < 1:
        raise UsageError(f"every axis needs at least one voxel, got size {tuple(size)}")
    finest = min(resolution)
    if not all(math.isfinite(r) and r > 0 for r in resolution) or max(resolution) / finest > MAX_ANISOTROPY:
        raise DataError(f"voxel sizes {', '.join(f'{r:g}' for r in resolution)} nm differ by more "
                        f"than {MAX_ANISOTROPY}x (a damaged header?); give --resolution X,Y,Z")
    delays = [round(math.log2(r / finest)) for r in resolution]
    exponent = chunk_size.bit_length() - 1

    scales: list[Scale] = []
    sizes, factors, res = list(size), [1, 1, 1], [float(r) for r in resolution]
    level = 0
    while True:
        chunk = _chunk_shape(level, delays, exponent)
        scales.append(Scale(format_key(triple(res)), triple(sizes), triple(res), chunk, triple(factors)))
        fits = all(s <= c for s, c in zip(sizes, chunk))
        if fits or len(scales) == max_scales:
            return scales
        level += 1
        # An axis is halved once its delay has passed, unless it is already one voxel thick.
        factors = [2 if level > d and s > 1 else 1 for d, s in zip(delays, sizes)]
        if factors == [1, 1, 1]:  # nothing left to halve: another scale would repeat this one
            return scales
        sizes = [ceil_div(s, f) for s, f in zip(sizes, factors)]
        res = [r * f for r, f in zip(res, factors)]


def _chunk_shape(level: int, delays: list[int], exponent: int) -> Vec3:
    """Chunk shape of a level: longer along the finer axes while they are not yet downsampled."""
    aniso = [max(0, max(delays) - d - level) for d in delays]
    excess = sum(aniso) - 3 * exponent
    if excess > 0:
        reduce_by = ceil_div(excess, sum(1 for a in aniso if a))
        aniso = [max(a - reduce_by, 0) for a in aniso]
    base = exponent - (sum(aniso) + 1) // 3
    return triple(2 ** max(0, base + a) for a in aniso)


def plan_pyramid(size: Sequence[int], resolution: Sequence[float], dtype: np.dtype,
                 num_channels: int, volume_type: str, chunk_size: int, max_scales: int | None,
                 codec: Codec) -> tuple[list[Scale], VolumeInfo]:
    """The scales and the info for data of `dtype`, checked against the encoding's rules: the
    one decision shared by `convert` and `generate-scales-info`."""
    dtype = np.dtype(dtype)
    if volume_type == "segmentation" and dtype.kind == "f":
        raise UsageError(f"a segmentation needs integer labels, the input holds {dtype}")
    stored = type(codec).stored_dtype(dtype, volume_type)
    if stored != dtype:
        log.warning("%s labels are stored as %s for %s", dtype, stored, codec.name)
    type(codec).check(stored, num_channels, volume_type)
    scales = plan_scales(size, resolution, chunk_size, max_scales)
    for s in scales:
        codec.check_chunk_size(s.chunk_size)
    return scales, VolumeInfo.build(scales, stored.name, num_channels, volume_type, codec)
