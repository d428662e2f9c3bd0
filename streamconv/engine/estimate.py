"""What a run will cost, known before it starts: `convert --dry-run`.

A conversion of a large stack runs for days; its pyramid, its memory, its disk space and
roughly its time follow from the job before any chunk is written. Counts come from the scales
(one file per chunk, `--skip-empty` aside); the bytes of raw chunks from the sizes, exactly;
those of compressed encodings from a sample. The time comes from a quick measurement on this
machine: one full-resolution slab window read, and a band of it encoded, written into a scratch
directory beside the output and downsampled, as the workers would; scaled to the whole pyramid.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..encodings import NO_COMPRESSION
from ..errors import OutputError
from ..format.geometry import Box, Scale, triple
from ..format.sharding import shard_files
from ..kernels.downsampling import downsample
from ..sources import Source
from ..stores import Location
from ..units import format_size
from .job import Job
from .slabgrid import SlabGrid, along

SAMPLE_BYTES = 16 << 20  # the band of the sampled slab that is encoded, written and downsampled


@dataclass(frozen=True)
class ScaleCost:
    key: str
    size: tuple[int, int, int]
    chunk_size: tuple[int, int, int]
    chunks: int
    files: int   # at most this many with --skip-empty
    bytes: int   # exact when the estimate says so
    disk: int    # bytes on disk: every file rounded up to the filesystem's block


@dataclass(frozen=True)
class Estimate:
    output: str
    scales: list[ScaleCost]
    exact: bool              # whether the bytes are exact (raw chunks, not compressed)
    workers: int
    memory_budget: int
    memory_planned: int      # what the slab plan uses of the budget
    slab_planes: tuple[int, ...]
    buffers: tuple[int, ...]
    tiles: str               # the tile plan in one line (`SlabPlan.summary`)
    disk_needed: int
    disk_free: int | None    # None: not a local path
    seconds: float           # estimated wall time
    sample_bytes: int        # measured: bytes of input read and of chunks encoded
    sample_seconds: float

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """The plan for a person, one scale per line."""
        lines = [f"{'scale':<28} {'size':>16} {'chunk':>12} {'chunks':>9} {'files':>9} {'bytes':>11}"]
        for s in self.scales:
            lines.append(f"{s.key:<28} {'x'.join(map(str, s.size)):>16} {'x'.join(map(str, s.chunk_size)):>12} "
                         f"{s.chunks:>9} {s.files:>9} {format_size(s.bytes):>11}")
        approx = "" if self.exact else "about "
        free = "unknown" if self.disk_free is None else format_size(self.disk_free)
        total = sum(s.bytes for s in self.scales)
        lines += [
            f"total: {sum(s.files for s in self.scales)} files, {approx}{format_size(total)}",
            f"slabs: {'/'.join(map(str, self.slab_planes))} planes per scale, "
            f"{'/'.join(map(str, self.buffers))} buffers; {self.tiles}",
            f"workers: {self.workers}; memory: {format_size(self.memory_planned)} of "
            f"{format_size(self.memory_budget)}",
            f"disk: needs {approx}{format_size(self.disk_needed)}, {free} free at the output",
            f"time: about {_duration(self.seconds)} (measured {format_size(self.sample_bytes)} in "
            f"{self.sample_seconds:.2f} s on this machine)",
        ]
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def free_space(output: str | os.PathLike) -> tuple[int, int] | None:
    """Free bytes and block size of the filesystem the output is (or will be) on; None for a
    location that is not a local path."""
    location = Location.of(output)
    if not location.is_local:
        return None
    path = Path(location.path).absolute()
    while not path.exists():
        path = path.parent
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize, stat.f_frsize or 4096


def scale_costs(job: Job, block: int, ratio: float) -> list[ScaleCost]:
    """Chunks, files and bytes of each scale written; `ratio`: encoded bytes per raw byte. A
    sharded scale has its shard files, each its chunks' bytes and a shard index (the minishard
    indexes, a few bytes per chunk, are not counted)."""
    item = job.info.num_channels * job.info.dtype.itemsize
    costs = []
    for level in range(job.first, len(job.scales)):
        scale, spec = job.scales[level], job.info.scales[level].sharding
        sizes = [_raw_sizes(scale, axis) for axis in range(3)]  # chunk extents along each axis
        raw = math.prod(scale.size) * item
        exact = ratio == 1.0
        nbytes = raw if exact else round(raw * ratio)
        if exact:
            disk = sum(_rounded(x * y * z * item, block) * nx * ny * nz
                       for x, nx in sizes[0] for y, ny in sizes[1] for z, nz in sizes[2])
        else:
            disk = nbytes + scale.num_chunks * block // 2  # half a block lost per file, on average
        files = scale.num_chunks
        if spec is not None:
            files = shard_files(scale, spec)
            nbytes += files * 16 * spec.minishards
            disk = _rounded(nbytes, block) + files * block
        costs.append(ScaleCost(scale.key, scale.size, scale.chunk_size, scale.num_chunks, files, nbytes, disk))
    return costs


def _raw_sizes(scale: Scale, axis: int) -> list[tuple[int, int]]:
    """(extent, count) of the chunks along an axis: whole ones, and a clipped last one."""
    size, chunk = scale.size[axis], scale.chunk_size[axis]
    whole, rest = divmod(size, chunk)
    return [(chunk, whole)] + ([(rest, 1)] if rest else [])


def _rounded(n: int, block: int) -> int:
    return -(-n // block) * block


def sized(job: Job) -> bool:
    """Every chunk's bytes follow from its size (raw, not gzip: the codec says so)."""
    return (job.fmt.codec.voxel_bytes(job.info.dtype, job.info.num_channels) is not None
            and job.fmt.compression == NO_COMPRESSION)


def is_exact(job: Job) -> bool:
    """The estimate's bytes are exact: chunks of known sizes in chunk files (a shard's minishard
    indexes are gzip, their size unknown before they are written)."""
    return sized(job) and all(s.sharding is None for s in job.info.scales)


def estimate_job(source: Source, job: Job, output: str | os.PathLike) -> Estimate:
    """Measure a sample of the job on this machine and scale it to the whole job."""
    found = free_space(output)
    free, block = found if found is not None else (None, 4096)
    read_bytes, read_seconds, band_bytes, band_seconds, ratio = _measure(source, job, output)
    if sized(job):
        ratio = 1.0
    costs = scale_costs(job, block, ratio)
    item = job.info.num_channels * job.info.dtype.itemsize
    total_in = math.prod(job.scales[0].size) * item
    total_processed = sum(math.prod(s.size) * item for s in job.scales[job.first:])
    workers = max(1, min(job.plan.workers, os.cpu_count() or 1))
    readers = workers if source.parallel_reads else 1
    seconds = (read_seconds / max(read_bytes, 1) * total_in / readers
               + band_seconds / max(band_bytes, 1) * total_processed / workers)
    tiles, local = job.plan.summary(), job.plan.task_scratch_bytes(job.scales[0], item)
    tiles += f" ({format_size(local)} a task)" if local else ""
    return Estimate(str(output), costs, is_exact(job), job.plan.workers, job.plan.budget,
                    job.plan.estimate, job.plan.slab_planes, job.plan.buffers, tiles,
                    sum(c.disk for c in costs) + job.plan.scratch_bytes(job.scales[0], item), free,
                    seconds, read_bytes + band_bytes,
                    read_seconds + band_seconds)


def _measure(source: Source, job: Job, output: str | os.PathLike) -> tuple[int, float, int, float, float]:
    """Read one slab window from the middle of the input; encode, write and downsample a band
    of it of about SAMPLE_BYTES. Returns bytes and seconds of each, and encoded/raw bytes."""
    scale, plan = job.scales[0], job.plan
    axis = plan.stream_axis
    planes = min(plan.slab_planes[0], scale.size[axis])
    p0 = (scale.size[axis] // 2 // planes) * planes
    p1 = min(p0 + planes, scale.size[axis])
    # The middle slab, or a tile of it in the middle of the section: what a run holds at once;
    # of a tile, only the planes of about SAMPLE_BYTES of whole sections (a section too large
    # for memory is decoded once here, not a slab of them).
    middle = triple(n // 2 for n in scale.size)
    grid = SlabGrid(job.scales, plan)
    block = grid.box(0, grid.index_at(0, along(axis, p0, middle)))
    if plan.nest is not None or plan.decode_per_slab:  # each section decoded once per slab: whole ones
        block = Box(along(axis, p0, (0, 0, 0)), along(axis, p1, scale.size))
    if plan.tiled:
        item = job.info.num_channels * job.info.dtype.itemsize
        p1 = min(p1, p0 + max(1, SAMPLE_BYTES * scale.size[axis] // (math.prod(scale.size) * item)))
        block = Box(block.start, along(axis, p1, block.stop))
    shape = list(block.shape)
    slab = np.zeros((job.info.num_channels, shape[2], shape[1], shape[0]), dtype=source.dtype)
    started = time.perf_counter()
    source.window(p0, p1).read_region(block, slab)
    read_seconds = time.perf_counter() - started
    # A band: whole chunk rows along the band axis, about SAMPLE_BYTES.
    band_axis = 2 if axis == 1 else 1
    row = slab.nbytes // max(shape[band_axis], 1)
    rows = max(scale.chunk_size[band_axis], SAMPLE_BYTES // max(row, 1))
    rows = min(shape[band_axis], -(-rows // scale.chunk_size[band_axis]) * scale.chunk_size[band_axis])
    stop = list(shape)
    stop[band_axis] = rows
    region = Box((0, 0, 0), triple(stop))
    band = slab[region.index()]
    encoded = 0
    parent = _scratch_parent(output)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".streamconv-estimate-", dir=parent) as scratch:
        for box in scale.chunks_in(region.start, region.stop):
            data = job.fmt.encode(band[box.index()])
            with open(os.path.join(scratch, box.name), "wb") as f:
                f.write(data)
            encoded += len(data)
        if len(job.scales) > 1:
            downsample(band, job.scales[1].factor, job.method, outside=job.outside_value)
    band_seconds = time.perf_counter() - started
    return slab.nbytes, read_seconds, band.nbytes, band_seconds, encoded / max(band.nbytes, 1)


def _scratch_parent(output: str | os.PathLike) -> str | None:
    """A directory on the output's filesystem (writes cost what they will cost there), or the
    system's temporary directory."""
    location = Location.of(output)
    if not location.is_local:
        return None
    path = Path(location.path).absolute().parent  # beside the output, never inside it
    while not path.exists():
        path = path.parent
    return str(path) if os.access(path, os.W_OK) else None


def check_free_space(job: Job, output: str | os.PathLike) -> None:
    """Refuse a run whose output clearly cannot hold it: raw chunks, whose size is exact, that
    need more than the free space. (Compressed sizes are only known from a sample, and with
    --skip-empty the need is an upper bound: neither is refused.)"""
    found = free_space(output)
    if found is None or not sized(job) or job.skip_empty:
        return
    free, block = found
    item = job.info.num_channels * job.info.dtype.itemsize
    need = sum(c.disk for c in scale_costs(job, block, 1.0)) + job.plan.scratch_bytes(job.scales[0], item)
    if need > free:
        raise OutputError(f"{output} needs {format_size(need)} and its filesystem has "
                           f"{format_size(free)} free; free space or write elsewhere")
