"""Task functions that run in worker processes. Module-level and picklable by reference."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..encodings import Codec
from ..format.geometry import Box, Scale, Vec3, ceil_div
from ..kernels.downsampling import downsample
from ..kernels.stats import ChannelStats, Meter, Sampling
from ..layout.dataset import Dataset
from ..layout.sink import ChunkSink
from ..sources import Source
from ..sources.base import MappedSlab, spans_planes
from .buffers import PrivateSlab, SlabRef, populate
from .worklog import take

#: where a task finds a slab: shared memory on this host, its own, or the input file mapped
Slab = SlabRef | PrivateSlab | MappedSlab


def prepare(ref: Slab, view: np.ndarray, write: bool) -> None:
    """Map the pages under `view` before the task touches them (`buffers.populate`), where the
    slab is mapped anew by each task. A task's own buffer needs none: a kept one is mapped
    already (populating it again walked its page tables for nothing, 40 ms a GiB), numpy's
    faults once per 2 MiB huge page."""
    if not ref.resident:
        populate(view, write)


def fill(source: Source, region: Box, ref: Slab, origin: Vec3) -> list[logging.LogRecord]:
    """Read a region of the source (planes along its stream axis, whole or a tile of them) into
    a slab whose first voxel is `origin`; what a worker logged meanwhile (a section filled
    instead of decoded) goes back with the result, for the main process to log and count
    (`worklog`)."""
    target = ref.array()[region.index(origin)]
    prepare(ref, target, write=True)
    axis = source.stream_axis
    if spans_planes(region, source.shape, axis):
        source.read(region.start[axis], region.stop[axis], target)
    else:
        source.read_region(region, target)
    return take()


def fill_from_store(volume: Dataset, level: int, region: Box, ref: Slab, origin: Vec3) -> None:
    """Read back a region of a scale already on disk: to rebuild what a lost slab held, or to
    compute the scales above chunks another step (or tool) wrote."""
    slab = ref.array()
    for box in volume.scales[level].chunks_in(region.start, region.stop):
        out = slab[box.index(origin)]
        chunk = volume.read_chunk(level, box)
        out[...] = 0 if chunk is None else chunk  # absent: skipped as empty


@dataclass(frozen=True)
class Downsample:
    """Where a band's downsampled voxels go: a slab of the next scale."""

    target: Slab
    origin: Vec3  # voxel of the next scale at the target slab's first element
    factor: Vec3
    method: str
    outside: float | None = None  # average: the value past an odd edge


@dataclass(frozen=True)
class Band:
    """A chunk-aligned region of one scale's slab: write its chunks, downsample it."""

    source: Slab
    origin: Vec3  # voxel of the scale at the slab's first element
    level: int
    scale: Scale
    region: Box
    codec: Codec
    sink: ChunkSink  # where the encoded chunks go: files, or a shard spool
    skip_empty: bool
    down: Downsample | None
    write: bool = True  # False when replaying a slab whose chunks are already written
    labels: bool = False  # also return the band's distinct values (a segmentation's labels)
    stats: Sampling | None = None  # also return its value statistics, the histogram of this sample


@dataclass(frozen=True)
class BandDone:
    """What a band task did."""

    visited: int  # chunks
    written: int  # chunk files
    nbytes: int
    labels: np.ndarray | None = None  # the distinct values of the band, when asked
    stats: list[ChannelStats] | None = None  # its value statistics per channel, when asked


def process_band(band: Band) -> BandDone:
    """Chunks are encoded as the store takes them (several requests in flight on an object
    store)."""
    view = band.source.array()[band.region.index(band.origin)]
    prepare(band.source, view, write=False)
    visited = written = nbytes = 0
    meter = Meter(view.dtype, band.stats) if band.stats is not None else None
    chunks = band.sink.open(band.level, band.scale, band.region) if band.write else None
    if chunks is not None or meter is not None:
        for box in band.scale.chunks_in(band.region.start, band.region.stop):
            chunk = view[box.index(band.region.start)]
            if meter is not None:  # the copy the encoder would take, measured while in the cache
                chunk = np.ascontiguousarray(chunk)
                meter.add(chunk)
            if chunks is None:
                continue
            visited += 1
            if band.skip_empty and not chunk.any():
                continue
            nbytes += chunks.put(box, band.codec.encode(chunk))
            written += 1
    if chunks is not None:
        chunks.close()
    if meter is not None:
        meter.sample(view, band.region.start)
    if band.down is not None:
        d = band.down
        out = d.target.array()[downsampled(band.region, d.factor).index(d.origin)]
        prepare(d.target, out, write=True)
        downsample(view, d.factor, d.method, out=out, outside=d.outside)
    return BandDone(visited, written, nbytes, np.unique(view) if band.labels else None,
                    meter.result() if meter is not None else None)


def downsampled(region: Box, factor: Vec3) -> Box:
    """The voxels of the next scale that a region produces (a partial pair at an odd edge
    makes one voxel)."""
    (x0, y0, z0), (x1, y1, z1), (fx, fy, fz) = region.start, region.stop, factor
    return Box((x0 // fx, y0 // fy, z0 // fz), (ceil_div(x1, fx), ceil_div(y1, fy), ceil_div(z1, fz)))
