"""`verify`: read an output back and hold it against its input.

Scale 0 must equal the input voxel for voxel (lossy encodings: at least `min_psnr` dB);
every chunk of every scale must decode to its clipped shape. Absent chunks are counted, since
`--skip-empty` and other writers leave all-zero chunks out. Works on any precomputed volume on
disk, whoever wrote it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from .dataset import open_dataset
from .errors import StreamconvError
from .geometry import Box, parse_resolution, triple
from .sources import open_source
from .stores import Where

LOSSY = ("jpeg",)


@dataclass
class VerifyReport:
    scales: int = 0
    chunks: int = 0
    absent: int = 0
    min_psnr: float = math.inf  # over scale 0 slabs, for lossy encodings
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(input: str | os.PathLike, output: Where, *, ignore_scaling: bool = False,
           resolution: str | None = None, input_orientation: str | None = None,
           fill_missing: float | None = None, min_psnr: float = 30.0) -> VerifyReport:
    """Compare `output` with `input`; the report lists every problem found (none: ok)."""
    volume = open_dataset(output)
    source = open_source(input, ignore_scaling=ignore_scaling,
                         resolution=parse_resolution(resolution) if resolution else None,
                         orientation=input_orientation, fill_missing=fill_missing)
    report = VerifyReport(scales=len(volume.scales))
    try:
        scale0 = volume.scales[0]
        if (tuple(scale0.size), volume.num_channels) != (tuple(source.shape), source.num_channels):
            report.problems.append(f"scale 0 is {scale0.size} with {volume.num_channels} channels, "
                                   f"the input {source.shape} with {source.num_channels}")
            return report
        _compare_scale0(source, volume, report, min_psnr)
        for level in range(1, len(volume.scales)):
            _check_chunks(volume, level, report)
    except StreamconvError as exc:
        report.problems.append(str(exc))
    finally:
        source.close()
    return report


def _compare_scale0(source, volume, report: VerifyReport, min_psnr: float) -> None:
    scale = volume.scales[0]
    axis = source.stream_axis
    lossy = volume.encoding(0) in LOSSY
    step = scale.chunk_size[axis]
    for p0 in range(0, scale.size[axis], step):
        p1 = min(p0 + step, scale.size[axis])
        start, stop = list(scale.voxel_offset), [o + s for o, s in zip(scale.voxel_offset, scale.size)]
        start[axis], stop[axis] = start[axis] + p0, start[axis] + p1
        region = Box(triple(start), triple(stop))
        x, y, z = region.shape
        expected = np.empty((source.num_channels, z, y, x), source.dtype)
        source.read(p0, p1, expected)
        for box in scale.chunks_in(region.start, region.stop):
            report.chunks += 1
            chunk = volume.read_chunk(0, box)
            if chunk is None:
                report.absent += 1
                chunk = np.zeros(expected[box.index(region.start)].shape, volume.dtype)
            want = expected[box.index(region.start)]
            if lossy:
                report.min_psnr = min(report.min_psnr, _psnr(want, chunk))
            elif not np.array_equal(want, chunk.astype(want.dtype, copy=False)):
                report.problems.append(f"scale 0 chunk {box.name} differs from the input")
    if lossy and report.min_psnr < min_psnr:
        report.problems.append(f"scale 0 PSNR {report.min_psnr:.1f} dB is below {min_psnr} dB")


def _check_chunks(volume, level: int, report: VerifyReport) -> None:
    scale = volume.scales[level]
    grid = scale.grid
    for gz in range(grid[2]):
        for gy in range(grid[1]):
            for gx in range(grid[0]):
                report.chunks += 1
                if volume.read_chunk(level, scale.chunk(gx, gy, gz)) is None:
                    report.absent += 1


def _psnr(expected: np.ndarray, got: np.ndarray) -> float:
    mse = float(np.mean((expected.astype(np.float64) - got) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


__all__ = ["verify", "VerifyReport"]
