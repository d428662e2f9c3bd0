"""The memory planner: slab thickness, buffers and task sizes from a budget of bytes.

Model of the whole process tree (docs/design.md): the main process, one forkserver and the
workers each cost a base; slab buffers are counted once; each worker adds what one task touches
(its band of a slab, the downsampled rows it writes, and kernel temporaries).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import psutil

from ..errors import UsageError
from ..format.geometry import Scale, ceil_div, triple
from ..units import MiB, format_size

WORKER_BASE = 48 * MiB       # a forked worker with numpy and the task code loaded
BAND_TARGET = 16 * MiB       # bytes of slab a band task reads, when the budget allows
SLAB_TARGET = 64 * MiB       # thicker full-resolution slabs only while they stay this small
def default_budget() -> int:
    """Half of the memory available now: room for the page cache and everything else."""
    return psutil.virtual_memory().available // 2


def worker_share(workers: int, budget: int) -> int:
    """A worker's share of the budget once the processes themselves are counted (the main
    process as it is now, a base per worker and for the fork server): what a task of the passes
    after the pyramid (meshes, labels) may hold."""
    main = psutil.Process().memory_info().rss
    return max(0, budget - main - (workers + 1) * WORKER_BASE) // max(workers, 1)


def check_chunk_tasks(workers: int, budget: int, chunk_bytes: int, what: str) -> None:
    """Refuse a budget below what `workers` tasks that each hold a few chunks (`chunk_bytes` of
    the largest, decoded; a task holds six copies at most) and the processes need."""
    need = (workers + 1) * WORKER_BASE + max(workers, 1) * 6 * chunk_bytes
    if need > budget:
        raise UsageError(f"--memory {format_size(budget)} is below the {format_size(need)} "
                         f"{what} needs with {workers} workers")


def band_axis(stream_axis: int) -> int:
    """The axis bands are cut along: y, or z when slabs run along y."""
    return 2 if stream_axis == 1 else 1


@dataclass(frozen=True)
class SlabPlan:
    stream_axis: int               # slabs are planes along this axis (0 x, 1 y, 2 z)
    slab_planes: tuple[int, ...]   # planes per slab, per scale
    buffers: tuple[int, ...]       # slab buffers per scale (2 lets filling overlap processing)
    band_rows: tuple[int, ...]     # rows (along band_axis) per band task, per scale
    fill_planes: int               # planes per read task (parallel sources)
    workers: int
    budget: int
    estimate: int
    minimum: int
    #: per scale, a tile's extent along (band axis, third axis): slabs cut across the section
    #: when whole planes do not fit; () when every slab spans whole planes
    tiles: tuple[tuple[int, int], ...] = ()
    #: a source that decodes whole sections: tiles on the scales up to this one only, and each
    #: section decoded once per slab into a scratch file (`engine/scratch.py`); None: not so
    nest: int | None = None
    #: a source that decodes whole sections, tiled on the Dask path (whose workers may share no
    #: disk): one task per slab of scale 0 decodes each section once into a scratch file on its
    #: worker's local disk and then runs the slab's tiles (`slabtask.run_decoded`)
    decode_per_slab: bool = False

    @property
    def tiled(self) -> bool:
        return bool(self.tiles)

    def slab_shape(self, scale: Scale, level: int) -> tuple[int, int, int]:
        """(x, y, z) extent of a slab buffer of a scale (of one tile of a slab, when tiled)."""
        shape = list(scale.size)
        shape[self.stream_axis] = self.slab_planes[level]
        if self.tiles:
            b_ax, r_ax = in_plane(self.stream_axis)
            shape[b_ax] = min(shape[b_ax], self.tiles[level][0])
            shape[r_ax] = min(shape[r_ax], self.tiles[level][1])
        return triple(shape)

    def scratch_bytes(self, scale: Scale, item: int) -> int:
        """Disk the decoded sections of a plan with `nest` take at most (`engine/scratch.py`):
        2^nest slabs of scale 0 (`item`: bytes per voxel), and one being decoded."""
        return 0 if self.nest is None else (2 ** self.nest + 1) * self._decoded_slab(scale, item)

    def task_scratch_bytes(self, scale: Scale, item: int) -> int:
        """Local disk of a Dask worker that a task of a plan with `decode_per_slab` takes: one
        slab of scale 0's decoded sections (`item`: bytes per voxel)."""
        return self._decoded_slab(scale, item) if self.decode_per_slab else 0

    def _decoded_slab(self, scale: Scale, item: int) -> int:
        """Bytes of one slab of scale 0's sections, decoded whole."""
        return self.slab_planes[0] * math.prod(scale.size) // scale.size[self.stream_axis] * item

    def summary(self) -> str:
        """The tile plan in one line, for --dry-run."""
        if not self.tiles:
            return f"slabs of {self.slab_planes[0]} whole planes"
        b, r = self.tiles[0]
        once = "" if self.nest is None else (f" up to scale {self.nest}, each section decoded once per "
                                             "slab into a scratch file")
        once += (", each section decoded once per slab by one task into a scratch file on its worker's "
                 "local disk" if self.decode_per_slab else "")
        return f"slabs of {self.slab_planes[0]} planes cut into tiles of {b} x {r}{once}"

    def describe(self, scales: list[Scale]) -> str:
        axis = "xyz"
        b_ax, r_ax = in_plane(self.stream_axis)
        lines = [f"memory: budget {format_size(self.budget)}, planned {format_size(self.estimate)}, "
                 f"minimum {format_size(self.minimum)}; {self.workers} workers; slabs along "
                 f"{axis[self.stream_axis]}, bands along {axis[b_ax]}; {self.summary()}"]
        for k, s in enumerate(scales):
            tile = ""
            if self.tiles:
                shape = self.slab_shape(s, k)
                count = ceil_div(s.size[b_ax], shape[b_ax]) * ceil_div(s.size[r_ax], shape[r_ax])
                tile = f", {count} tiles of {shape[b_ax]} x {shape[r_ax]} ({axis[b_ax]} x {axis[r_ax]})"
            lines.append(f"scale {k} {s.key}: size {s.size}, chunks {s.chunk_size}, slab "
                         f"{self.slab_planes[k]} planes x {self.buffers[k]} buffers{tile}, bands of "
                         f"{self.band_rows[k]} rows")
        if self.nest is not None:
            lines.append(f"scratch: the decoded sections of up to {2 ** self.nest + 1} slabs of "
                         f"{self.slab_planes[0]} planes on the output's disk (or the temporary directory)")
        if self.decode_per_slab:
            lines.append(f"scratch: the decoded sections of one slab of {self.slab_planes[0]} planes per running "
                         "task of scale 0, on its worker's local directory")
        return "\n".join(lines)


def in_plane(stream_axis: int) -> tuple[int, int]:
    """The band axis and the third axis: the two axes across a section."""
    b_ax = band_axis(stream_axis)
    (r_ax,) = {0, 1, 2} - {stream_axis, b_ax}
    return b_ax, r_ax


def tile_extents(scales: list[Scale], stream_axis: int, tile: tuple[int, int],
                 nest: int | None = None) -> list[tuple[int, int]]:
    """Per scale, a tile's extent along (band axis, third axis) from scale 0's `tile`: whole chunks
    and downsampling pairs at every scale, and each a whole number of the finer scale's tiles
    downsampled, so that a tile of scale k feeds exactly one tile of scale k + 1. Scales above
    `nest` span whole planes."""
    axes = in_plane(stream_axis)
    out = [tile]
    for k in range(1, len(scales)):
        ext = []
        for j, ax in enumerate(axes):
            below = out[-1][j] // scales[k].factor[ax]
            unit = _unit(scales, k, ax)
            whole = ceil_div(scales[k].size[ax], unit) * unit
            if nest is not None and k > nest:
                ext.append(max(whole, below))
                continue
            ext.append(min(math.lcm(unit, below), max(whole, below)))
        out.append((ext[0], ext[1]))
    return out


def _unit(scales: list[Scale], k: int, axis: int) -> int:
    """Smallest slab or band extent along an axis: whole chunks and whole downsampling pairs."""
    nxt = scales[k + 1].factor[axis] if k + 1 < len(scales) else 1
    return math.lcm(scales[k].chunk_size[axis], nxt)


def plan_slabs(scales: list[Scale], channels: int, dtype: np.dtype, workers: int, budget: int,
              parallel_reads: bool, stream_axis: int = 2, main_base: int | None = None,
              writes_in_flight: int = 1, reads_regions: bool = True, tile: int | None = None) -> SlabPlan:
    """The most comfortable plan that fits `budget`, or a UsageError that states the minimum.
    `writes_in_flight`: encoded chunks a band task holds while the store writes them (the
    output's `can.parallel`). Slabs span whole planes when that fits; else each slab is cut into
    tiles across the section, whole chunks in both in-plane axes (docs/design.md, "Tiles").
    `reads_regions`: the source reads a tile for its size (else a read task holds a decoded
    section). `tile`: tiles of about that many voxels a side at scale 0, whatever the budget
    (tests and benchmarks: `STREAMCONV_TILE`)."""
    item = channels * np.dtype(dtype).itemsize
    s_ax, (b_ax, r_ax) = stream_axis, in_plane(stream_axis)
    sunit = [_unit(scales, k, s_ax) for k in range(len(scales))]
    bunit = [_unit(scales, k, b_ax) for k in range(len(scales))]
    base = (psutil.Process().memory_info().rss if main_base is None else main_base)
    base += (workers + 1) * WORKER_BASE if workers else 0
    size0 = scales[0].size
    plane = size0[b_ax] * size0[r_ax] * item

    def slabs(m: int) -> list[int]:
        out: list[int] = []
        for k, s in enumerate(scales):
            planes = sunit[k] * m if k == 0 else max(sunit[k], out[-1] // s.factor[s_ax])
            out.append(min(planes, ceil_div(s.size[s_ax], sunit[k]) * sunit[k]))
        return out

    def extents(n: int, nest: int | None = None) -> list[tuple[int, int]]:
        """Per scale, the in-plane extent of a slab buffer: whole planes (n = 0) or tiles of n
        units a side at scale 0 (up to scale `nest`)."""
        if n == 0:
            return [(s.size[b_ax], s.size[r_ax]) for s in scales]
        tiles = tile_extents(scales, s_ax, (bunit[0] * n, _unit(scales, 0, r_ax) * n), nest)
        return [(min(b, s.size[b_ax]), min(r, s.size[r_ax])) for (b, r), s in zip(tiles, scales)]

    def estimate(m: int, overlap: int, band_bytes: int, n: int = 0,
                 nest: int | None = None) -> tuple[int, list[int], list[int], list[int], int]:
        """Bytes for slab multiple `m`, `overlap` (0: one buffer per scale, 1: two above full
        resolution, 2: two everywhere), bands of about `band_bytes` and tiles of `n` units (up
        to scale `nest`)."""
        planes, ext = slabs(m), extents(n, nest)
        nbuf = [2 if overlap == 2 or (overlap == 1 and k > 0) else 1 for k in range(len(scales))]
        rows = [_band_rows(e[0], planes[k] * e[1] * item, bunit[k], band_bytes, workers)
                for k, e in enumerate(ext)]
        total = base + sum(n * p * e[0] * e[1] * item for n, p, e in zip(nbuf, planes, ext))
        # A band task maps its band of the slab and the part it downsamples into, and works one
        # output plane at a time (temporaries: a few wide copies of two input planes).
        touch = max(p * r * e[1] * item * 3 // 2 + 64 * r * e[1] * channels
                    + (1 + writes_in_flight) * item * math.prod(s.chunk_size)
                    for p, r, e, s in zip(planes, rows, ext, scales))
        # A read task fills a few planes (a decoded section and its reoriented copy besides); of
        # a tile: besides, a section decoded whole, or the tile's rows at full width (pread).
        part = ext[0][0] * ext[0][1] * item
        fill = max(1, min(ceil_div(planes[0], max(1, 2 * workers)), BAND_TARGET // max(part, 1)))
        whole = 0 if n == 0 else 2 * plane if not reads_regions else ext[0][0] * size0[r_ax] * item
        touch = max(touch, 3 * fill * part + whole)
        total += max(workers, 1) * touch
        return total, planes, nbuf, rows, fill

    candidates = [(1, 0, 0), (1, 1, 0), (1, 2, 0), (1, 2, BAND_TARGET)]
    if tile is None:
        minimum = estimate(1, 0, 0)[0]
        if minimum <= budget:
            m, overlap, band_bytes = [c for c in candidates if estimate(*c)[0] <= budget][-1]
            whole = ceil_div(size0[s_ax], sunit[0]) * sunit[0]
            # Thicker slabs mean fewer rounds, but keep at least four so that reading overlaps the rest.
            while (4 * 2 * m * sunit[0] <= whole and 2 * m * sunit[0] * plane <= SLAB_TARGET
                   and estimate(2 * m, overlap, band_bytes)[0] <= budget):
                m *= 2
            total, planes, nbuf, rows, fill = estimate(m, overlap, band_bytes)
            return SlabPlan(stream_axis, tuple(planes), tuple(nbuf), tuple(rows), fill, workers,
                            budget, total, minimum)
    # Tiles: n units a side, n a power of two (so tiles nest through the scales), as large as
    # fits up to SLAB_TARGET bytes of scale 0 per tile, or as asked. A source that decodes
    # whole sections decodes each once per tile: there the largest tiles that fit come first,
    # before two buffers per scale.
    runit = _unit(scales, 0, r_ax)
    largest = 1
    while (bunit[0] * largest < size0[b_ax] or runit * largest < size0[r_ax]) and (
            not reads_regions or sunit[0] * bunit[0] * runit * 4 * largest * largest * item <= SLAB_TARGET):
        largest *= 2
    if tile is not None:
        largest = 1
        while 2 * largest * max(bunit[0], runit) <= tile:
            largest *= 2
    sizes = [largest] if tile is not None else [largest >> j for j in range(largest.bit_length())]
    if not reads_regions:
        return _decode_once(scales, stream_axis, budget, workers, candidates, sizes, estimate,
                            (bunit[0], runit))
    minimum = estimate(1, 0, 0, 1)[0]
    if minimum > budget:
        raise UsageError(f"--memory {format_size(budget)} is below the {format_size(minimum)} this "
                         f"conversion needs with {workers} workers (tiles of one chunk)")
    pairs = [(c, n) for c in reversed(candidates) for n in sizes]
    (m, overlap, band_bytes), n = next((p for p in pairs if estimate(*p[0], p[1])[0] <= budget),
                                       (candidates[0], sizes[-1]))
    total, planes, nbuf, rows, fill = estimate(m, overlap, band_bytes, n)
    return SlabPlan(stream_axis, tuple(planes), tuple(nbuf), tuple(rows), fill, workers,
                    budget, total, minimum, tuple(tile_extents(scales, s_ax, (bunit[0] * n, runit * n))))


def _decode_once(scales: list[Scale], stream_axis: int, budget: int, workers: int,
                 candidates: list[tuple[int, int, int]], sizes: list[int], estimate: Callable[..., tuple],
                 units: tuple[int, int]) -> SlabPlan:
    """Tiles for a source that decodes whole sections: each section is decoded once per slab
    into a scratch file that the slab's tiles read. The tiles of a slab lie within 2^nest slabs
    of the reading order, so the scratch holds that many slabs: the smallest `nest` that fits
    comes first (scales above it span whole planes: their whole extent counts), then two
    buffers per scale, then the largest tiles."""
    options = [(nest, n, c) for nest in range(len(scales)) for c in reversed(candidates) for n in sizes]
    minimum = min(estimate(1, 0, 0, sizes[-1], nest)[0] for nest in range(len(scales)))
    if minimum > budget:
        raise UsageError(f"--memory {format_size(budget)} is below the {format_size(minimum)} this "
                         f"conversion needs with {workers} workers (tiles of one chunk)")
    nest, n, (m, overlap, band_bytes) = next(o for o in options if estimate(*o[2], o[1], o[0])[0] <= budget)
    total, planes, nbuf, rows, fill = estimate(m, overlap, band_bytes, n, nest)
    tiles = tile_extents(scales, stream_axis, (units[0] * n, units[1] * n), nest)
    return SlabPlan(stream_axis, tuple(planes), tuple(nbuf), tuple(rows), fill, workers,
                    budget, total, minimum, tuple(tiles), nest)


def plan_worker_slabs(scales: list[Scale], channels: int, dtype: np.dtype, budget: int,
                      stream_axis: int = 2, who: str = "", reads_regions: bool = True,
                      tile: int | None = None) -> SlabPlan:
    """A Dask cluster (engine/distributed.py): `budget` is one worker's, which runs one block's
    task at a time within it, in its own memory and from a source every worker reads. The same
    planner with one worker and no main process gives the slabs, thinner (then cut into tiles)
    until each task fits. `who` names the budget in a refusal (default: --memory); `reads_regions`
    and `tile` as for `plan_slabs`. A source that decodes whole sections keeps the tiles the local
    planner gives it (`_decode_once`), but without its nesting (`nest` None: a slab's tiles are
    not read far apart in time, they run in one task): one task per slab of scale 0 decodes its
    sections once into a scratch file on its worker's local disk, then runs the tiles one after
    the other (`decode_per_slab`; a decoded section counted by `task_memory`)."""
    item = channels * np.dtype(dtype).itemsize

    def plan(cap: int, smallest: int | None = tile) -> SlabPlan:
        found = plan_slabs(scales, channels, dtype, 1, cap, True, stream_axis, main_base=0,
                           reads_regions=reads_regions, tile=smallest)
        return replace(found, nest=None, decode_per_slab=found.tiled and not reads_regions)

    def need_of(found: SlabPlan) -> int:
        return max(task_memory(found, scales, k, item) for k in range(len(scales)))

    cap, need = budget, 0
    while True:
        try:
            found = plan(cap)
        except UsageError:
            break  # not even the smallest tiles: refused below with the need of the last tried
        need = need_of(found)
        if need <= budget:
            return found
        if found.estimate <= found.minimum:
            if found.tiled:
                break
            cap = found.minimum - 1  # whole planes at their thinnest: a task's copies need tiles
            continue
        cap = found.estimate - 1  # the next smaller plan
    if not need:
        smallest = plan(1 << 62, 1).minimum  # tiles of one chunk
        found = plan(smallest, 1)
        need = need_of(found)
    raise UsageError(f"{who or '--memory ' + format_size(budget)} is below the {format_size(need)} a task "
                     "of this conversion needs on a Dask worker (a slab of one chunk row, in tiles of one chunk)")


def task_memory(plan: SlabPlan, scales: list[Scale], level: int, item: int) -> int:
    """What a block's task on a Dask worker holds at its peak (`item`: bytes per voxel): the
    block, its piece of the next scale twice (the array and its serialized copy), the block again
    (a decoded block being copied in, or the pieces read back) and a chunk being encoded; for a
    tile of full resolution, what a read holds besides, as `plan_slabs` counts it: a section and
    its reoriented copy for a source that decodes whole sections (`decode_per_slab`: the slab's
    task decodes them one after the other, then runs its tiles one after the other; the sum is
    more than either phase holds), else the tile's rows of one plane at full width (pread)."""
    slab = item * math.prod(plan.slab_shape(scales[level], level))
    piece = item * math.prod(plan.slab_shape(scales[level + 1], level + 1)) if level + 1 < len(scales) else 0
    read = 0
    if level == 0 and plan.tiled:
        size, (b_ax, r_ax) = scales[0].size, in_plane(plan.stream_axis)
        rows = plan.slab_shape(scales[0], 0)[b_ax]
        read = item * (2 * size[b_ax] * size[r_ax] if plan.decode_per_slab else rows * size[r_ax])
    return 2 * slab + 2 * piece + 2 * item * math.prod(scales[level].chunk_size) + read


def _band_rows(extent: int, row_bytes: int, unit: int, band_bytes: int, workers: int) -> int:
    """Rows per band: whole units, about `band_bytes` of slab, and enough bands for the workers."""
    units = ceil_div(extent, unit)
    n = max(1, band_bytes // max(unit * row_bytes, 1))
    n = min(n, max(1, units // max(1, 2 * workers)))
    return unit * n
