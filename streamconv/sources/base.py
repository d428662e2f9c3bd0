"""What the engine needs from an input: a `Source` fills (channel, z, y, x) slabs on request.

A source says whether its reads may run in worker processes at the same time (`parallel_reads`);
one that must read in order (a gzip stream) is read by one thread of the main process instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..geometry import Vec3


@dataclass(frozen=True)
class MemoryOrder:
    """How a (c, z, y, x) slab lies in memory: its axes from outermost to innermost, and those
    stored back to front. A source asks for the order it produces so that it can decode straight
    into the slab (a slice stack: each section whole, its rows and columns as in the file)."""

    axes: tuple[int, int, int, int] = (0, 1, 2, 3)
    reversed: tuple[int, ...] = ()


class Source(Protocol):
    """What the engine needs from an input."""

    shape: Vec3                       # (x, y, z) voxels
    num_channels: int
    dtype: np.dtype                   # output type, native byte order
    resolution: tuple[float, float, float]  # nm
    parallel_reads: bool
    stream_axis: int                  # the axis read in planes: 2 (z) for volumes
    memory_order: MemoryOrder         # of the full-resolution slabs that `read` fills

    def read(self, p0: int, p1: int, out: np.ndarray) -> None:
        """Fill `out`, a (channel, z, y, x) array, with planes [p0, p1) along `stream_axis`."""

    def window(self, p0: int, p1: int) -> Source:
        """A source that reads planes [p0, p1) at least: what a read task is sent, so keep it
        small to pickle (most sources are, and return themselves)."""

    def fingerprint(self) -> dict:
        """What identifies this input, for the journal."""

    def close(self) -> None: ...


def one_line(exc: BaseException) -> str:
    """An exception's message on one line, for error messages."""
    return " ".join(str(exc).split()) or type(exc).__name__
