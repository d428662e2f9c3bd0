"""Where the slabs of each scale lie, and their tiles across the section: the geometry the local
pipeline, the Dask path and resuming share."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from ..format.geometry import Box, Scale, Vec3, ceil_div, triple
from .budget import SlabPlan, band_axis, in_plane


@dataclass(frozen=True)
class SlabGrid:
    """Where the slabs of each scale lie along the stream axis, which slab feeds which, and
    how a slab is cut into bands: the geometry the coordinator and resuming share.

    The planner makes a slab a whole number of chunk rows and of downsampling pairs, and the
    next scale's slab at least as thick as what one slab produces, so a slab downsamples into
    exactly one slab of the next scale (`target`).

    A tiled plan cuts each slab into tiles across the section (`SlabPlan.tiles`); a *block* is
    one tile of one slab, and everything here that says slab means block: block `index` of a
    scale is `(slab * tiles_b + tile_b) * tiles_r + tile_r` (b: the band axis, r: the third),
    which is the slab's index when slabs span whole planes, so journals of untiled runs are
    unchanged. Tiles nest through the scales (`budget.tile_extents`), so a block feeds exactly
    one block of the next scale, and `order` visits the full-resolution blocks so that those
    feeding one block of any scale come one after the other: each scale has one block filling
    at a time, whatever the section's size."""

    scales: list[Scale]
    plan: SlabPlan

    @property
    def axis(self) -> int:
        return self.plan.stream_axis

    def _extent(self, level: int) -> Vec3:
        return self.plan.slab_shape(self.scales[level], level)

    def _tiles(self, level: int) -> tuple[int, int]:
        """Tiles of a slab along the band axis and the third axis."""
        size, ext = self.scales[level].size, self._extent(level)
        b_ax, r_ax = in_plane(self.axis)
        return ceil_div(size[b_ax], ext[b_ax]), ceil_div(size[r_ax], ext[r_ax])

    def slabs(self, level: int) -> int:
        """Slabs of a scale along the stream axis."""
        return ceil_div(self.scales[level].size[self.axis], self.plan.slab_planes[level])

    def tiles_per_slab(self, level: int) -> int:
        """Blocks per slab of a scale (1 where slabs span whole planes): the slab's block `index`
        is `slab * tiles_per_slab + tile`."""
        nb, nr = self._tiles(level)
        return nb * nr

    def count(self, level: int) -> int:
        """Blocks (slabs, times their tiles) of a scale."""
        return self.slabs(level) * self.tiles_per_slab(level)

    def planes(self, level: int, index: int) -> tuple[int, int]:
        """Planes [p0, p1) of block `index`: the last slab of a scale may be thinner."""
        box = self.box(level, index)
        return box.start[self.axis], box.stop[self.axis]

    def box(self, level: int, index: int) -> Box:
        """The voxels of block `index` of a scale."""
        nb, nr = self._tiles(level)
        slab, rest = divmod(index, nb * nr)
        tb, tr = divmod(rest, nr)
        b_ax, r_ax = in_plane(self.axis)
        ext, size = self._extent(level), self.scales[level].size
        start = [0, 0, 0]
        start[self.axis], start[b_ax], start[r_ax] = slab * self.plan.slab_planes[level], tb * ext[b_ax], tr * ext[r_ax]
        return Box(triple(start), triple(min(a + e, n) for a, e, n in zip(start, ext, size)))

    def index_at(self, level: int, voxel: Vec3) -> int:
        """The block of a scale that holds `voxel`."""
        nb, nr = self._tiles(level)
        b_ax, r_ax = in_plane(self.axis)
        ext = self._extent(level)
        slab = voxel[self.axis] // self.plan.slab_planes[level]
        return (slab * nb + voxel[b_ax] // ext[b_ax]) * nr + voxel[r_ax] // ext[r_ax]

    def describe(self, level: int, index: int) -> str:
        """Block `index` of a scale as a message names it: `slab 3` where slabs span whole planes
        (the journal's index is then the slab's), else the slab, which of its tiles, and the
        block's voxels, e.g. `slab 3, tile 2 of 42 (planes 96 to 127, y 32 to 63, x 0 to 31)`."""
        tiles = self.tiles_per_slab(level)
        slab, tile = divmod(index, tiles)
        if tiles == 1:
            return f"slab {slab}"
        box = self.box(level, index)
        spans = [f"{'planes' if a == self.axis else 'xyz'[a]} {box.start[a]} to {box.stop[a] - 1}"
                 for a in (self.axis, *in_plane(self.axis))]
        return f"slab {slab}, tile {tile + 1} of {tiles} ({', '.join(spans)})"

    def count_done(self, blocks: Iterable[tuple[int, int]]) -> str:
        """How many of the (scale, block index) pairs there are, as a message says it: `5 slabs`,
        or for a tiled plan `5 slab tiles (scale 0: 4 of 150, scale 1: 1 of 24)`."""
        blocks = list(blocks)
        if not self.plan.tiled:
            return f"{len(blocks)} slab{'' if len(blocks) == 1 else 's'}"
        per_scale = Counter(level for level, _ in blocks)
        scales = ", ".join(f"scale {k}: {n} of {self.count(k)}" for k, n in sorted(per_scale.items()))
        return f"{len(blocks)} slab tile{'' if len(blocks) == 1 else 's'} ({scales})"

    def target(self, level: int, index: int) -> int:
        """Index of the block of scale `level + 1` that block `index` of `level` downsamples into."""
        f = self.scales[level + 1].factor
        return self.index_at(level + 1, triple(a // k for a, k in zip(self.box(level, index).start, f)))

    def chain(self, index: int) -> list[int]:
        """The block index on every scale that full-resolution block `index` feeds, directly or
        through the scales between."""
        indices = [index]
        for level in range(len(self.scales) - 1):
            indices.append(self.target(level, indices[-1]))
        return indices

    @cached_property
    def order(self) -> list[int]:
        """The full-resolution blocks in the order they are read: by the block they feed on the
        coarsest scale, then on the next finer one, down to their own index. Untiled, that is
        slab after slab."""
        return sorted(range(self.count(0)), key=lambda i: self.chain(i)[::-1])

    def voxels(self, level: int, index: int) -> int:
        return math.prod(self.box(level, index).shape)

    def downsampled_voxels(self, level: int, box: Box) -> int:
        """Voxels of scale `level + 1` that a block's `box` of `level` produces."""
        f = self.scales[level + 1].factor
        return math.prod(ceil_div(b, k) - a // k for a, b, k in zip(box.start, box.stop, f))

    def downsampled_planes(self, level: int, p0: int, p1: int) -> int:
        """Planes of scale `level + 1` that planes [p0, p1) of `level` produce."""
        f = self.scales[level + 1].factor[self.axis]
        return ceil_div(p1, f) - p0 // f

    def origin(self, p0: int) -> Vec3:
        """Voxel at the first element of a slab that starts at plane p0 (untiled)."""
        return along(self.axis, p0, (0, 0, 0))

    def bands(self, level: int, p0: int, p1: int) -> list[Box]:
        """Planes [p0, p1) cut along the band axis into regions of whole chunks, one per task."""
        size = self.scales[level].size
        return self.bands_of(level, Box(along(self.axis, p0, (0, 0, 0)), along(self.axis, p1, size)))

    def bands_of(self, level: int, box: Box) -> list[Box]:
        """A block cut along the band axis into regions of whole chunks, one per task."""
        b_ax, rows = band_axis(self.axis), self.plan.band_rows[level]
        lo, hi = box.start[b_ax], box.stop[b_ax]
        return [Box(along(b_ax, r0, box.start), along(b_ax, min(r0 + rows, hi), box.stop))
                for r0 in range(lo, hi, rows)]


def along(axis: int, value: int, v: Vec3) -> Vec3:
    """`v` with its component along `axis` set to `value`."""
    x, y, z = v
    return (value if axis == 0 else x, value if axis == 1 else y, value if axis == 2 else z)
