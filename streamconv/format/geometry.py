"""Frozen value types for the pyramid: scales, chunk grids and chunk names.

Axes are always given as (x, y, z), as in the precomputed `info` file. In-memory arrays are
(channel, z, y, x) in C order, whose bytes are exactly the format's Fortran-order [x, y, z, c] layout.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

Vec3 = tuple[int, int, int]
T = TypeVar("T")


def triple(values: Iterable[T]) -> tuple[T, T, T]:
    """Three values as a typed (x, y, z) tuple; ValueError for any other count."""
    x, y, z = values
    return x, y, z


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def array_axis(axis: int) -> int:
    """The axis of a (c, z, y, x) array that holds spatial axis `axis` (0 x, 1 y, 2 z)."""
    return 3 - axis


@dataclass(frozen=True)
class Box:
    """A half-open box of voxels [start, stop) in (x, y, z)."""

    start: Vec3
    stop: Vec3

    @property
    def shape(self) -> Vec3:
        return triple(b - a for a, b in zip(self.start, self.stop))

    @property
    def name(self) -> str:
        """Unsharded chunk file name: `x0-x1_y0-y1_z0-z1` in absolute voxels."""
        return "_".join(f"{a}-{b}" for a, b in zip(self.start, self.stop))

    def index(self, origin: Vec3 = (0, 0, 0)) -> tuple[slice, slice, slice, slice]:
        """Index that cuts this box out of a (c, z, y, x) array whose first voxel is `origin`."""
        x, y, z = (slice(a - o, b - o) for a, b, o in zip(self.start, self.stop, origin))
        return slice(None), z, y, x


@dataclass(frozen=True)
class Scale:
    """One level of the pyramid, with the factor that derives it from the previous level."""

    key: str
    size: Vec3
    resolution: tuple[float, float, float]
    chunk_size: Vec3
    factor: Vec3  # from the previous scale; (1, 1, 1) for scale 0
    voxel_offset: Vec3 = (0, 0, 0)

    def __post_init__(self) -> None:
        if min(self.size) < 1 or min(self.chunk_size) < 1 or min(self.factor) < 1:
            raise ValueError(f"invalid scale {self}")

    @property
    def grid(self) -> Vec3:
        return triple(ceil_div(s, c) for s, c in zip(self.size, self.chunk_size))

    @property
    def num_chunks(self) -> int:
        gx, gy, gz = self.grid
        return gx * gy * gz

    def chunk(self, gx: int, gy: int, gz: int) -> Box:
        """Grid cell (gx, gy, gz), clipped at the upper edge of the volume."""
        start = triple(o + g * c for o, g, c in zip(self.voxel_offset, (gx, gy, gz), self.chunk_size))
        stop = triple(min(a + c, o + s) for a, c, o, s in
                      zip(start, self.chunk_size, self.voxel_offset, self.size))
        return Box(start, stop)

    def chunks_in(self, start: Vec3, stop: Vec3) -> Iterator[Box]:
        """Chunks whose extent lies within the chunk-aligned region [start, stop)."""
        ranges = [range((a - o) // c, ceil_div(b - o, c))
                  for a, b, c, o in zip(start, stop, self.chunk_size, self.voxel_offset)]
        for gz in ranges[2]:
            for gy in ranges[1]:
                for gx in ranges[0]:
                    yield self.chunk(gx, gy, gz)

    def info(self) -> dict:
        return {
            "key": self.key,
            "size": list(self.size),
            "voxel_offset": list(self.voxel_offset),
            "resolution": [_json_number(r) for r in self.resolution],
            "chunk_sizes": [list(self.chunk_size)],
        }


def _json_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


def format_key(resolution: tuple[float, float, float]) -> str:
    """Scale key `<rx>_<ry>_<rz>` in nm, integers without a decimal point."""
    return "_".join(str(_json_number(r)) for r in resolution)


LENGTH_NM = {"": 1.0, "nm": 1.0, "um": 1e3, "µm": 1e3, "micron": 1e3, "mm": 1e6, "cm": 1e7, "m": 1e9}


def parse_resolution(text: str) -> tuple[float, float, float]:
    """'21166.67,20000,21166.67' (nm), '20um' (isotropic) or '0.02mm,0.02mm,0.04mm' -> nm (x, y, z)."""
    from ..errors import UsageError

    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 1:
        parts *= 3
    values = []
    for part in parts:
        number = part.rstrip("abcdefghijklmnopqrstuvwxyzµ")
        unit = part[len(number):].strip()
        try:
            value = float(number) * LENGTH_NM[unit]
        except (ValueError, KeyError):
            value = float("nan")
        if not value > 0 or value == float("inf"):
            raise UsageError(f"cannot read the resolution {text!r}: give X,Y,Z in nm, or with a unit "
                             "(20um, 0.02mm)")
        values.append(value)
    if len(values) != 3:
        raise UsageError(f"the resolution {text!r} needs one value or three (X,Y,Z)")
    return triple(values)
