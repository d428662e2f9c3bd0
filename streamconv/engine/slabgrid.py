"""Where the slabs of each scale lie along the stream axis: the geometry the local pipeline,
the Dask path and resuming share."""

from __future__ import annotations

from dataclasses import dataclass

from ..format.geometry import Box, Scale, Vec3, ceil_div
from .budget import SlabPlan, band_axis


@dataclass(frozen=True)
class SlabGrid:
    """Where the slabs of each scale lie along the stream axis, which slab feeds which, and
    how a slab is cut into bands: the geometry the coordinator and resuming share.

    The planner makes a slab a whole number of chunk rows and of downsampling pairs, and the
    next scale's slab at least as thick as what one slab produces, so a slab downsamples into
    exactly one slab of the next scale (`target`)."""

    scales: list[Scale]
    plan: SlabPlan

    @property
    def axis(self) -> int:
        return self.plan.stream_axis

    def count(self, level: int) -> int:
        """Slabs of a scale."""
        return ceil_div(self.scales[level].size[self.axis], self.plan.slab_planes[level])

    def planes(self, level: int, index: int) -> tuple[int, int]:
        """Planes [p0, p1) of slab `index`: the last slab of a scale may be thinner."""
        p0 = index * self.plan.slab_planes[level]
        return p0, min(p0 + self.plan.slab_planes[level], self.scales[level].size[self.axis])

    def target(self, level: int, index: int) -> int:
        """Index of the slab of scale `level + 1` that slab `index` of `level` downsamples into."""
        f = self.scales[level + 1].factor[self.axis]
        return (index * self.plan.slab_planes[level] // f) // self.plan.slab_planes[level + 1]

    def chain(self, index: int) -> list[int]:
        """The slab index on every scale that full-resolution slab `index` feeds, directly or
        through the scales between."""
        indices = [index]
        for level in range(len(self.scales) - 1):
            indices.append(self.target(level, indices[-1]))
        return indices

    def downsampled_planes(self, level: int, p0: int, p1: int) -> int:
        """Planes of scale `level + 1` that planes [p0, p1) of `level` produce."""
        f = self.scales[level + 1].factor[self.axis]
        return ceil_div(p1, f) - p0 // f

    def origin(self, p0: int) -> Vec3:
        """Voxel at the first element of a slab that starts at plane p0."""
        return along(self.axis, p0, (0, 0, 0))

    def bands(self, level: int, p0: int, p1: int) -> list[Box]:
        """Planes [p0, p1) cut along the band axis into regions of whole chunks, one per task."""
        size, b_ax, rows = self.scales[level].size, band_axis(self.axis), self.plan.band_rows[level]
        start, stop = along(self.axis, p0, (0, 0, 0)), along(self.axis, p1, size)
        return [Box(along(b_ax, r0, start), along(b_ax, min(r0 + rows, size[b_ax]), stop))
                for r0 in range(0, size[b_ax], rows)]


def along(axis: int, value: int, v: Vec3) -> Vec3:
    """`v` with its component along `axis` set to `value`."""
    x, y, z = v
    return (value if axis == 0 else x, value if axis == 1 else y, value if axis == 2 else z)
