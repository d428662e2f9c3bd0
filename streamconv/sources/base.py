"""What the engine needs from an input: a `Source` fills (channel, z, y, x) slabs on request.

A source says whether its reads may run in worker processes at the same time (`parallel_reads`);
one that must read in order (a gzip stream) is read by one thread of the main process instead.
A source whose planes lie in a local file exactly as a slab holds them (an uncompressed NIfTI of
the stored type) hands out `mapped` slabs: the file itself, mapped by each task, so that no read
task copies it into a buffer first.

Regions (issue 25): when whole planes do not fit the memory budget the engine cuts a slab into
*tiles* across the section, and asks for one (channel, z, y, x) box at a time (`read_region`).
A source says whether it can read a box for the price of the box (`reads_regions`: a volume
read by pread, a precomputed scale, a tiled or striped TIFF); one that can only decode
whole sections (PNG, JPEG, WebP) says False and implements `read_region` with
`read_region_by_planes`, which decodes each section once per call and copies the region out:
the planner then counts a decoded section per read task, and under tiles the engine decodes
each section once per slab with `read` and cuts it into its tiles itself (engine/scratch.py;
docs/design.md, "Tiles")."""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

from ..errors import DataError
from ..format.geometry import Box, Vec3, array_axis

if TYPE_CHECKING:
    from .placement import Placement


@dataclass(frozen=True)
class MemoryOrder:
    """How a (c, z, y, x) slab lies in memory: its axes from outermost to innermost, and those
    stored back to front. A source asks for the order it produces so that it can decode straight
    into the slab (a slice stack: each section whole, its rows and columns as in the file)."""

    axes: tuple[int, int, int, int] = (0, 1, 2, 3)
    reversed: tuple[int, ...] = ()


@dataclass(frozen=True)
class MappedSlab:
    """Planes of a local file seen as a (c, z, y, x) slab, mapped read-only by the task that
    uses it (the same `array()` as a shared buffer's `SlabRef`): `offset` is the byte of its
    first voxel, `strides` those of its four axes (negative along an axis stored back to
    front: a volume reoriented to RAS)."""

    resident: ClassVar[bool] = False  # mapped anew by each task that uses it

    path: str
    offset: int
    shape: tuple[int, int, int, int]
    strides: tuple[int, int, int, int]
    dtype: str

    @property
    def end(self) -> int:
        """The byte after its last voxel."""
        return self.offset + sum(max(0, (n - 1) * s) for n, s in zip(self.shape, self.strides)) \
            + np.dtype(self.dtype).itemsize

    @property
    def start(self) -> int:
        """The byte of its voxel first in the file."""
        return self.offset + sum(min(0, (n - 1) * s) for n, s in zip(self.shape, self.strides))

    def array(self) -> np.ndarray:
        """The slab as a read-only array; the mapping lasts as long as the array or a view of it."""
        start = self.start - self.start % mmap.ALLOCATIONGRANULARITY
        fd = os.open(self.path, os.O_RDONLY)
        try:
            mm = mmap.mmap(fd, self.end - start, access=mmap.ACCESS_READ, offset=start)
        except ValueError:  # the file is shorter now than when the conversion started
            raise DataError(self.missing() or f"{self.path}: cannot map planes of the input file") from None
        finally:
            os.close(fd)
        return np.ndarray(self.shape, self.dtype, buffer=mm, offset=self.offset - start, strides=self.strides)

    def missing(self) -> str | None:
        """Why the file no longer holds these planes (cut short while mapped: a task touching the
        lost part died of SIGBUS), or None."""
        try:
            have = os.stat(self.path).st_size
        except OSError as exc:
            return f"{self.path}: the input file went away during the conversion ({exc.strerror})"
        if have < self.end:
            return f"{self.path}: the input file was cut short during the conversion ({have} bytes, {self.end} needed)"
        return None


class Source(Protocol):
    """What the engine needs from an input."""

    shape: Vec3                       # (x, y, z) voxels
    num_channels: int
    dtype: np.dtype                   # output type, native byte order
    resolution: tuple[float, float, float]  # nm
    parallel_reads: bool
    stream_axis: int                  # the axis read in planes: 2 (z) for volumes
    memory_order: MemoryOrder         # of the full-resolution slabs that `read` fills
    placement: Placement | None       # where the voxels lie in the world (None: not known)
    #: `read_region` reads only the region (True), or decodes whole sections and crops (False)
    reads_regions: bool

    def read(self, p0: int, p1: int, out: np.ndarray) -> None:
        """Fill `out`, a (channel, z, y, x) array, with planes [p0, p1) along `stream_axis`."""

    def read_region(self, region: Box, out: np.ndarray) -> None:
        """Fill `out`, a (channel, z, y, x) array of `region`'s shape, with the voxels of
        `region` (x, y, z voxel box; its range along `stream_axis` is the planes [p0, p1)). A
        region that spans whole planes reads as `read` does. Sources that can only decode whole
        sections use `read_region_by_planes` (and declare `reads_regions = False`)."""

    def mapped(self, p0: int, p1: int) -> MappedSlab | None:
        """Planes [p0, p1) as they lie in the input file, if they lie there as a slab in
        `memory_order` holds them, of the output type; else None (they are read)."""

    def window(self, p0: int, p1: int) -> Source:
        """A source that reads planes [p0, p1) at least: what a read task is sent, so keep it
        small to pickle (most sources are, and return themselves)."""

    def fingerprint(self) -> dict:
        """What identifies this input, for the journal."""

    def close(self) -> None: ...


def plane_range(region: Box, axis: int) -> tuple[int, int]:
    """The planes [p0, p1) a region spans along `axis`."""
    return region.start[axis], region.stop[axis]


def spans_planes(region: Box, shape: Vec3, axis: int) -> bool:
    """Whether a region holds whole planes along `axis` (the full extent of the other two)."""
    return all(region.start[a] == 0 and region.stop[a] == shape[a] for a in range(3) if a != axis)


def read_region_by_planes(source: Source, region: Box, out: np.ndarray, planes: int = 1) -> None:
    """`read_region` for a source that can only read whole planes (it decodes whole sections):
    `planes` planes at a time are read whole into a temporary and the region copied out, so each
    section is decoded once per call and the call holds one temporary of `planes` planes."""
    axis = source.stream_axis
    p0, p1 = plane_range(region, axis)
    if spans_planes(region, source.shape, axis):
        source.read(p0, p1, out)
        return
    ax = array_axis(axis)
    crop = list(region.index())
    for p in range(p0, p1, planes):
        q = min(p + planes, p1)
        shape = [source.num_channels, *reversed(source.shape)]
        shape[ax] = q - p
        whole = np.empty(shape, source.dtype)
        source.read(p, q, whole)
        crop[ax] = slice(None)
        part: list[slice] = [slice(None)] * 4
        part[ax] = slice(p - p0, q - p0)
        out[tuple(part)] = whole[tuple(crop)]
