"""`verify`: read an output back and hold it against its input.

Scale 0 must equal the input voxel for voxel (lossy encodings: at least `min_psnr` dB);
every chunk of every scale must decode to its clipped shape. A lower scale is only as right as
the rule that made it: each chunk sampled (`full`: every chunk) is derived again from the
scale below by the pyramid's own rule (`downsampling.downsample`) and must equal the stored one
(lossy: the PSNR floor), so that one flipped byte in any scale is found. Absent chunks are
counted and read as zeros, since `--skip-empty` and other writers leave all-zero chunks out.
The placement is checked too (`placement_problems`): a transform.json (and our placement.json)
must say what the input's header says, for the voxel order the output was written in. Works
on any precomputed volume on disk, whoever wrote it (one without a transform.json: not checked).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import StreamconvError
from ..format.geometry import Box, parse_resolution, triple
from ..kernels.downsampling import default_method, downsample
from ..layout.dataset import Dataset, open_dataset
from ..sources import open_source
from ..sources.placement import placement_problems, stored_voxel_order
from ..stores import Where

LOSSY = ("jpeg",)


@dataclass
class VerifyReport:
    scales: int = 0
    chunks: int = 0
    absent: int = 0
    min_psnr: float = math.inf  # over scale 0 slabs, for lossy encodings
    placed: bool = False  # the output has a transform.json (checked against the input)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(input: str | os.PathLike, output: Where, *, ignore_scaling: bool = False,
           resolution: str | None = None, input_orientation: str | None = None,
           fill_missing: float | None = None, min_psnr: float = 30.0, full: bool = False,
           downsampling_method: str | None = None,
           outside_value: float | None = None) -> VerifyReport:
    """Compare `output` with `input`; the report lists every problem found (none: ok).
    Lower scales are derived again from the scale below with `downsampling_method` (default:
    that of the volume's type) for a sample of `SAMPLE` chunks per scale, or all (`full`)."""
    volume = open_dataset(output)
    source = open_source(input, ignore_scaling=ignore_scaling,
                         resolution=parse_resolution(resolution) if resolution else None,
                         orientation=input_orientation, fill_missing=fill_missing,
                         voxel_order=stored_voxel_order(volume.store.read))
    report = VerifyReport(scales=len(volume.scales))
    try:
        scale0 = volume.scales[0]
        if (tuple(scale0.size), volume.num_channels) != (tuple(source.shape), source.num_channels):
            report.problems.append(f"scale 0 is {scale0.size} with {volume.num_channels} channels, "
                                   f"the input {source.shape} with {source.num_channels}")
            return report
        report.placed, problems = placement_problems(source.placement, scale0.resolution, volume.store.read)
        report.problems.extend(problems)
        _compare_scale0(source, volume, report, min_psnr)
        method = downsampling_method or default_method(volume.info.type)
        for level in range(1, len(volume.scales)):
            _check_chunks(volume, level, report, Rederive(method, outside_value, full, min_psnr))
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
            elif not _same(want, chunk.astype(want.dtype, copy=False)):
                report.problems.append(f"scale 0 chunk {scale.key}/{box.name} differs from the input")
    if lossy and report.min_psnr < min_psnr:
        report.problems.append(f"scale 0 PSNR {report.min_psnr:.1f} dB is below {min_psnr} dB")


@dataclass(frozen=True)
class Rederive:
    """How lower scales are checked: the pyramid's rule, and how many chunks."""

    method: str
    outside: float | None
    full: bool
    min_psnr: float


SAMPLE = 64  # chunks per scale derived again unless `full`, spread over the grid


def _check_chunks(volume: Dataset, level: int, report: VerifyReport, rule: Rederive) -> None:
    scale = volume.scales[level]
    gx, gy, gz = scale.grid
    stride = 1 if rule.full else max(1, scale.num_chunks // SAMPLE)
    lossy = volume.encoding(level) in LOSSY
    for n in range(scale.num_chunks):
        box = scale.chunk(n % gx, n // gx % gy, n // (gx * gy))
        report.chunks += 1
        chunk = volume.read_chunk(level, box)
        if chunk is None:
            report.absent += 1
        if n % stride and n != scale.num_chunks - 1:
            continue
        stored = np.zeros((volume.num_channels, *box.shape[::-1]), volume.dtype) if chunk is None \
            else chunk
        derived = _derive(volume, level, box, rule)
        if lossy:
            if _psnr(derived, stored) < rule.min_psnr:
                report.problems.append(f"scale {level} chunk {scale.key}/{box.name} is not the "
                                       f"scale below downsampled (PSNR under {rule.min_psnr} dB)")
        elif not _same(derived, stored):
            report.problems.append(f"scale {level} chunk {scale.key}/{box.name} differs from the "
                                   f"scale below downsampled ({rule.method})")
            return  # the first chunk that differs: the rest of the scale is likely off too


def _derive(volume: Dataset, level: int, box: Box, rule: Rederive) -> np.ndarray:
    """Chunk `box` of scale `level` as the pyramid makes it from scale `level - 1`."""
    scale, finer = volume.scales[level], volume.scales[level - 1]
    f = scale.factor
    start = triple((a - o) * k + p for a, o, k, p in zip(box.start, scale.voxel_offset, f,
                                                         finer.voxel_offset))
    stop = triple(min((b - o) * k + p, p + n) for b, o, k, p, n in
                  zip(box.stop, scale.voxel_offset, f, finer.voxel_offset, finer.size))
    aligned = Box(triple(p + (a - p) // c * c for a, p, c in zip(start, finer.voxel_offset, finer.chunk_size)),
                  triple(min(p + -(-(b - p) // c) * c, p + n) for b, p, c, n in
                         zip(stop, finer.voxel_offset, finer.chunk_size, finer.size)))
    region = volume.read(level - 1, aligned)[Box(start, stop).index(aligned.start)]
    return downsample(region, f, rule.method, outside=rule.outside)


def _same(expected: np.ndarray, got: np.ndarray) -> bool:
    """Equal voxel for voxel, NaN equal to NaN: a NaN of the input is stored as NaN, and the
    average of a block that holds one is NaN (docs/cli.md, "Values")."""
    return np.array_equal(expected, got, equal_nan=expected.dtype.kind == "f")


def _psnr(expected: np.ndarray, got: np.ndarray) -> float:
    mse = float(np.mean((expected.astype(np.float64) - got) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


__all__ = ["verify", "VerifyReport"]
