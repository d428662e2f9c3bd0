"""A volume stored in another voxel order (RAS by default for `convert`), in the same pass.

The volume's own (column, row, slice) axes become output axes as an `Orientation` says, the
machinery slice stacks use for `--input-orientation`: the stream axis is where the file's slice
axis goes, and full-resolution slabs lie in memory in the file's order (`MemoryOrder`, flipped
in-plane axes stored back to front), so a plane of the file is still read straight into shared
memory; band tasks see the slab as (c, z, y, x) through that order. A flipped slice axis is read
plane by plane from the end of the file; an uncompressed file's planes are mapped as they lie
(`mapped`: the file's strides permuted, negative where flipped). Nothing is lost: only the order of the voxels changes,
and the placement follows it (`Placement.reoriented`), so every voxel keeps its world position.
"""

from __future__ import annotations

import copy

import numpy as np

from ..format.geometry import Box, Vec3, array_axis, triple
from .base import MappedSlab, MemoryOrder, Source
from .orientation import Orientation
from .placement import Placement


class Reoriented:
    """`inner` (a source streamed along its slice axis, z, in C order) with its axes permuted
    and flipped by `orientation`; `code` names the orientation (the input's axis codes)."""

    def __init__(self, inner: Source, code: str) -> None:
        if inner.stream_axis != 2 or inner.memory_order != MemoryOrder():
            raise ValueError("only a source read in z planes in C order can be reoriented")
        self.inner, self.code = inner, code
        self.orientation = orientation = Orientation.parse(code)
        self.shape: Vec3 = orientation.output_shape(*inner.shape)
        resolution = [0.0, 0.0, 0.0]
        for axis, size in zip(orientation.axes, inner.resolution):
            resolution[axis] = size
        self.resolution = triple(resolution)
        self.num_channels, self.dtype = inner.num_channels, inner.dtype
        self.parallel_reads, self.reads_regions = inner.parallel_reads, inner.reads_regions
        self.stream_axis = orientation.axes[2]
        columns, rows, slices = (array_axis(a) for a in orientation.axes)
        fc, fr, _ = orientation.flips
        self.memory_order = MemoryOrder((0, slices, rows, columns),
                                        tuple(a for a, f in ((rows, fr), (columns, fc)) if f))
        self.placement: Placement | None = (None if inner.placement is None else
                                            inner.placement.reoriented(orientation, inner.shape))

    def _file_planes(self, p0: int, p1: int) -> tuple[int, int]:
        n = self.inner.shape[2]
        return (n - p1, n - p0) if self.orientation.flips[2] else (p0, p1)

    def _as_file(self, out: np.ndarray) -> np.ndarray:
        """A (c, z, y, x) array of output voxels seen as the file's (c, slice, row, column),
        every axis running as in the file."""
        axes = [array_axis(a) for a in self.orientation.axes]  # column, row, slice
        view = out.transpose(0, axes[2], axes[1], axes[0])
        flips = self.orientation.flips
        return view[:, ::-1 if flips[2] else 1, ::-1 if flips[1] else 1, ::-1 if flips[0] else 1]

    def read(self, p0: int, p1: int, out: np.ndarray) -> None:
        view = self._as_file(out)
        f0, f1 = self._file_planes(p0, p1)
        if not self.orientation.flips[2]:
            self.inner.read(f0, f1, view)
            return
        for k in range(f0, f1):  # one plane at a time: each is contiguous in the slab
            self.inner.read(k, k + 1, view[:, k - f0:k - f0 + 1])

    def read_region(self, region: Box, out: np.ndarray) -> None:
        """The region of the file's voxels that holds `region`, read into `out` seen as the file."""
        start, stop = [0, 0, 0], [0, 0, 0]
        for a, (axis, flip) in enumerate(zip(self.orientation.axes, self.orientation.flips)):
            lo, hi, n = region.start[axis], region.stop[axis], self.inner.shape[a]
            start[a], stop[a] = (n - hi, n - lo) if flip else (lo, hi)
        self.inner.read_region(Box(triple(start), triple(stop)), self._as_file(out))

    def mapped(self, p0: int, p1: int) -> MappedSlab | None:
        """The inner source's mapped planes, its axes permuted and flipped (negative strides)."""
        f0, f1 = self._file_planes(p0, p1)
        inner = self.inner.mapped(f0, f1)
        if inner is None:
            return None
        shape, strides, offset = [inner.shape[0], 0, 0, 0], [inner.strides[0], 0, 0, 0], inner.offset
        for a, (axis, flip) in enumerate(zip(self.orientation.axes, self.orientation.flips)):
            n, stride = inner.shape[3 - a], inner.strides[3 - a]  # file's (c, slice, row, column)
            if flip:
                offset, stride = offset + (n - 1) * stride, -stride
            shape[array_axis(axis)], strides[array_axis(axis)] = n, stride
        c, z, y, x = shape
        sc, sz, sy, sx = strides
        return MappedSlab(inner.path, offset, (c, z, y, x), (sc, sz, sy, sx), inner.dtype)

    def window(self, p0: int, p1: int) -> Source:
        part = copy.copy(self)
        part.inner = self.inner.window(*self._file_planes(p0, p1))
        return part

    def fingerprint(self) -> dict:
        return {**self.inner.fingerprint(), "voxel_order": self.code}

    def close(self) -> None:
        self.inner.close()
