"""The spatial index (format notes 9.6): the grids of its levels, which cells an annotation
lies in, and which level holds it.

Levels: level 0 is one cell over the bounds; each finer level halves every side whose
physical length is at least the longest over the square root of two (cells stay as isotropic
as the bounds allow), until a level has more than `MAX_CELLS` cells.

Placement: every annotation gets one draw u in [0, 1) (a seeded hash of its id, so reruns
and resumed runs are byte-identical) and sits at the level L whose interval
[T_L, T_L+1) holds u, in every cell of that level it intersects. T_0 = 0 and
T_L+1 = T_L + p_L (1 - T_L) with p_L = min(1, limit / ((1 - T_L) M_L)), M_L the largest number
of annotations that meet one cell of level L: the annotations not placed above L are a
uniform (1 - T_L) share of each cell, so level L holds about `limit` in its fullest cell and
the same share p_L of every other cell (the density between cells is kept, GH #227). The
first level where p_L = 1 takes the rest; if the finest level is reached first it takes the
rest anyway (clustered data) and says so by its `limit`, the real largest count of its
cells. Each level's `limit` in the info is the largest count of its cells, as written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .schema import AnnotationType

MAX_CELLS = 1 << 20  # cells of the finest level at most (its histogram is a dense array)
MAX_LEVELS = 24


@dataclass(frozen=True)
class Level:
    """One level's grid: `grid` cells of `chunk` (coordinate units) from the lower bound."""

    grid: tuple[int, int, int]
    chunk: tuple[float, float, float]

    @property
    def cells(self) -> int:
        return math.prod(self.grid)

    def bits(self) -> tuple[int, int, int]:
        x, y, z = ((g - 1).bit_length() for g in self.grid)
        return x, y, z

    def morton(self, cells: np.ndarray) -> np.ndarray:
        """Compressed Morton codes of (n, 3) cells against this grid (format notes 9.6)."""
        bits = self.bits()
        code = np.zeros(len(cells), np.uint64)
        c = cells.astype(np.uint64)
        j = 0
        for i in range(max(bits, default=0)):
            for d in range(3):
                if i < bits[d]:
                    code |= ((c[:, d] >> np.uint64(i)) & np.uint64(1)) << np.uint64(j)
                    j += 1
        return code

    def unmorton(self, codes: np.ndarray) -> np.ndarray:
        """The (n, 3) cells of compressed Morton codes."""
        bits = self.bits()
        cells = np.zeros((len(codes), 3), np.uint64)
        c = codes.astype(np.uint64)
        j = 0
        for i in range(max(bits, default=0)):
            for d in range(3):
                if i < bits[d]:
                    cells[:, d] |= ((c >> np.uint64(j)) & np.uint64(1)) << np.uint64(i)
                    j += 1
        return cells.astype(np.int64)


def plan_levels(lower: np.ndarray, upper: np.ndarray, scale: np.ndarray, max_cells: int = MAX_CELLS) -> list[Level]:
    """The grids, coarse to fine (format notes 9.6.1)."""
    grid = np.ones(3, np.int64)
    extent = (upper - lower).astype(np.float64)
    levels = [Level((1, 1, 1), tuple(float(e) for e in extent))]  # type: ignore[arg-type]
    while len(levels) < MAX_LEVELS:
        physical = extent / grid * scale
        halve = physical >= physical.max() / math.sqrt(2)
        grid = grid * np.where(halve, 2, 1)
        if int(np.prod(grid)) > max_cells:
            break
        gx, gy, gz = (int(g) for g in grid)
        cx, cy, cz = (float(e / g) for e, g in zip(extent, grid))
        levels.append(Level((gx, gy, gz), (cx, cy, cz)))
    return levels


def cell_range(level: Level, lower: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per annotation, the first and last cell its extent touches (clamped to the grid: a
    point on the upper bound belongs to the last cell)."""
    chunk, top = np.asarray(level.chunk), np.asarray(level.grid) - 1
    first = np.clip(np.floor((low - lower) / chunk), 0, top).astype(np.int64)
    last = np.clip(np.floor((high - lower) / chunk), 0, top).astype(np.int64)
    return first, last


def histogram(level: Level, lower: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """How many extents meet each cell, a dense (x, y, z)-flat int64 array: the corners of
    each extent's cell range added to a difference array, summed along each axis (bounding
    boxes: an upper estimate for lines and ellipsoids, which is all planning needs)."""
    first, last = cell_range(level, lower, low, high)
    g = np.asarray(level.grid) + 1
    diff = np.zeros(int(np.prod(g)), np.int64)
    for corner in range(8):
        pick = [(corner >> d) & 1 for d in range(3)]
        at = np.stack([last[:, d] + 1 if pick[d] else first[:, d] for d in range(3)], axis=1)
        flat = at[:, 0] + g[0] * (at[:, 1] + g[1] * at[:, 2])
        sign = -1 if sum(pick) % 2 else 1
        diff += sign * np.bincount(flat, minlength=len(diff))
    counts = diff.reshape(g[::-1]).cumsum(0).cumsum(1).cumsum(2)
    return counts[:-1, :-1, :-1].reshape(-1)


def thresholds(maxima: list[int], limit: int) -> list[float]:
    """T_0 ... T_k-1 for the levels used: the draw u goes to the last level whose T_L <= u."""
    starts, t = [], 0.0
    for m in maxima:
        starts.append(t)
        remaining = (1.0 - t) * m
        p = 1.0 if remaining <= limit else limit / remaining
        if p >= 1.0:
            break
        t = t + p * (1.0 - t)
    return starts


def levels_of(u: np.ndarray, starts: list[float]) -> np.ndarray:
    return np.searchsorted(np.asarray(starts), u, side="right") - 1


def cells_of(kind: AnnotationType, level: Level, lower: np.ndarray,
             geometry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(annotation index, cell (n, 3)) pairs: every cell of `level` each annotation meets
    (format notes 9.6.2: boxes by their extent, lines by clipping, ellipsoids by the nearest
    point of the cell)."""
    low, high = kind.extent(geometry)
    first, last = cell_range(level, lower, low, high)
    span = last - first + 1
    counts = span.prod(axis=1)
    which = np.repeat(np.arange(len(geometry)), counts)
    local = np.arange(len(which)) - np.repeat(np.cumsum(counts) - counts, counts)
    sx, sy = span[which, 0], span[which, 1]
    cells = first[which] + np.stack([local % sx, (local // sx) % sy, local // (sx * sy)], axis=1)
    if kind.option in ("point", "box") or not len(which):
        return which, cells
    chunk = np.asarray(level.chunk)
    lo = lower + cells * chunk
    hi = lo + chunk
    if kind.option == "line":
        a, b = geometry[which, 0], geometry[which, 1]
        d = b - a
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (lo - a) / d, (hi - a) / d
        flat = d == 0
        inside = (a >= lo) & (a <= hi)
        tmin = np.where(flat, np.where(inside, -np.inf, np.inf), np.minimum(t1, t2)).max(axis=1)
        tmax = np.where(flat, np.where(inside, np.inf, -np.inf), np.maximum(t1, t2)).min(axis=1)
        keep = np.maximum(tmin, 0.0) <= np.minimum(tmax, 1.0)
    else:
        centre, radii = geometry[which, 0], np.abs(geometry[which, 1])
        near = np.clip(centre, lo, hi) - centre
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(radii > 0, (near / np.where(radii > 0, radii, 1)) ** 2,
                             np.where(near == 0, 0.0, np.inf))
        keep = terms.sum(axis=1) <= 1.0
    return which[keep], cells[keep]
