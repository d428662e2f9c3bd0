"""Value statistics of a volume, gathered by the band tasks during the pass.

A viewer needs a value range to show an image: a float volume opens black or white without
one. We see every voxel once while converting, so each band task measures its band (`measure`)
and the main process merges what the tasks return (`VolumeStats`): per scale and channel the
exact minimum and maximum of the finite values, NaN and infinity counts, and a histogram from
which robust limits (the 0.5 and 99.5 percentiles) are read. No extra pass over the data.

The histogram is cheap by construction:
* 8-bit types: every value has its own bin, counted by Pillow's C histogram (one pass, no
  temporary); when it counts every voxel, the minimum and maximum are read from it.
* 16-bit types: every value has its own bin too (`np.bincount` of the values).
* wider types (float32 and the rest, cast to float32 first): the bin of a value is the top 16
  bits of its float32 (sign, exponent, 7 mantissa bits), counted by `np.bincount` over a strided
  view of the high half-words, and put in value order afterwards, on the 65536 bins only. A
  bin spans a relative width of at most 2**-7 (0.8%), whatever the range of the data.
Otherwise the minimum and maximum are `np.min`/`np.max` (vectorised, ~0.1-0.4 ns a voxel); NaN
and infinities are counted only when there are some (the histogram shows them, or the minimum or
maximum is not finite).

On scales of more than `EXACT_VOXELS` voxels, the histogram counts every `SAMPLED_ROWS`-th row
of each plane (the same rows whatever the band): millions of values still, for limits as good,
at an eighth of the cost (docs/benchmarks.md). Minimum, maximum, NaN and infinity counts stay
exact on every voxel. The file says which (`rows_step`, `histogram.sampled`).

The main process's merge and the file `stats.json` are in `statsfile.py`.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..format.geometry import Scale

log = logging.getLogger("streamconv")

EXACT_VOXELS = 1 << 24      # scales up to this many voxels: every row in the histogram
SAMPLED_ROWS = 8            # larger scales: every 8th row (still millions of values)
BLOCK = 1 << 19             # values per bincount call: its intp temporary stays small (4 MiB)
_HIGH = 1 if sys.byteorder == "little" else 0  # the half-word holding a float32's top bits


def bins_of(dtype: np.dtype) -> int:
    """Histogram bins of a data type: one per value for 8 and 16 bits, else 65536 float32 bins."""
    return 256 if dtype.itemsize == 1 else 1 << 16


def rows_step(scale: Scale, dtype: np.dtype) -> int:
    """Every how many rows a band's histogram counts on this scale (1: every voxel)."""
    voxels = scale.size[0] * scale.size[1] * scale.size[2]
    return 1 if voxels <= EXACT_VOXELS else SAMPLED_ROWS


@dataclass
class ChannelStats:
    """What one band (or the merge of several) holds about one channel. `bins`/`counts`: the
    histogram, sparse, indexed by raw pattern (the value's bits for 8/16-bit types, the top 16
    bits of its float32 otherwise); NaN and infinities are not in it."""

    voxels: int
    nan: int
    inf: int
    minimum: float | None  # of the finite values; None: there are none
    maximum: float | None
    bins: np.ndarray
    counts: np.ndarray
    sampled: int  # voxels counted in the histogram (all finite ones, or every n-th row's)


def measure(view: np.ndarray, every: int) -> list[ChannelStats]:
    """Statistics of a band `(c, z, y, x)`, one per channel; the histogram counts every
    `every`-th row of each plane (1: all)."""
    meter = Meter(view.dtype, every)
    meter.add(view)
    return meter.result() or []


class _Channel:
    """One channel's running statistics in a `Meter`."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dense = np.zeros(bins_of(dtype), np.int64)
        self.pending: list[np.ndarray] = []  # bin patterns not counted yet
        self.waiting = 0
        self.voxels = self.nan = self.inf = 0
        self.low: float | None = None
        self.high: float | None = None

    def limits(self, data: np.ndarray) -> None:
        """Minimum and maximum of the finite values; NaN and infinities counted if any."""
        if not data.size:
            return
        lo, hi = data.min().item(), data.max().item()
        if not (math.isfinite(lo) and math.isfinite(hi)):
            self.nan += int(np.isnan(data).sum())
            self.inf += int(np.isinf(data).sum())
            finite = data[np.isfinite(data)]
            if not finite.size:
                return
            lo, hi = finite.min().item(), finite.max().item()
        self.low = lo if self.low is None else min(self.low, lo)
        self.high = hi if self.high is None else max(self.high, hi)

    def count(self, patterns: np.ndarray) -> None:
        """Bin patterns, counted by one bincount per `BLOCK` of them: a call zeroes its 65536
        bins, which costs as much as counting a chunk's sampled rows."""
        self.pending.append(patterns)
        self.waiting += patterns.size
        if self.waiting >= BLOCK:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.dense += np.bincount(np.concatenate(self.pending), minlength=self.dense.size)
            self.pending, self.waiting = [], 0


def _blocks(rows: np.ndarray) -> Iterator[np.ndarray]:
    """`rows` (z, y, x) in pieces of about `BLOCK` values: several whole planes (copied together
    if they are apart in memory), or runs of rows of one plane. Each call has a fixed cost (a
    bincount zeroes its 65536 bins, Pillow wraps an image), so it must count many more values."""
    z, r, x = rows.shape
    if r * x >= BLOCK:
        step = max(1, BLOCK // max(1, x))
        for plane in rows:
            for i in range(0, r, step):
                yield plane[i: i + step]
    else:
        step = BLOCK // max(1, r * x)
        for i in range(0, z, step):
            yield rows[i: i + step]


def _count8(block: np.ndarray) -> np.ndarray:
    """One bin per byte value, by Pillow's histogram (C, no temporary)."""
    from PIL import Image

    block = np.ascontiguousarray(block.view(np.uint8)).reshape(-1, block.shape[-1])
    if block.size == 0:
        return np.zeros(256, np.int64)
    image = Image.frombuffer("L", (block.shape[1], block.shape[0]), block, "raw", "L", 0, 1)
    return np.asarray(image.histogram(), np.int64)


def _patterns(block: np.ndarray) -> np.ndarray:
    """The bin pattern of each value: the value's 16 bits, or the top 16 bits of its float32."""
    if block.dtype.itemsize == 2:
        return block.view(np.uint16)
    single = np.ascontiguousarray(block, dtype=np.float32)
    return single.view(np.uint16)[..., _HIGH::2]


@functools.cache
def _special(dtype: np.dtype) -> np.ndarray | None:
    """The float32 bins of NaN and infinities (exponent bits all ones), for float types."""
    if dtype.kind != "f":
        return None
    p = np.arange(1 << 16)
    return np.flatnonzero((p & 0x7F80) == 0x7F80)


@functools.cache
def _order(dtype: np.dtype) -> np.ndarray:
    """The patterns of a type's bins in increasing value order."""
    p = np.arange(bins_of(dtype), dtype=np.int64)
    if dtype.itemsize > 2:  # float32 bits: positives ascend, negatives descend
        key = np.where(p & 0x8000, 0xFFFF - p, p | 0x8000)
    elif dtype.kind == "i":
        key = p ^ (1 << (8 * dtype.itemsize - 1))
    else:
        key = p
    return np.argsort(key, kind="stable")


def _value(pattern: int, dtype: np.dtype) -> int:
    """The value of an 8/16-bit pattern."""
    bits = np.array([pattern], dtype=np.uint8 if dtype.itemsize == 1 else np.uint16)
    return int(bits.view(dtype)[0])



def merge(items: Sequence[list[ChannelStats]], dtype: np.dtype) -> list[ChannelStats]:
    """Several bands' statistics as one (a Dask slab task returns its bands' merged)."""
    out = []
    for parts in zip(*items):
        dense = np.zeros(bins_of(dtype), np.int64)
        for part in parts:
            dense[part.bins] += part.counts
        nonzero = np.flatnonzero(dense)
        lows = [p.minimum for p in parts if p.minimum is not None]
        highs = [p.maximum for p in parts if p.maximum is not None]
        out.append(ChannelStats(sum(p.voxels for p in parts), sum(p.nan for p in parts),
                                sum(p.inf for p in parts), min(lows) if lows else None,
                                max(highs) if highs else None, nonzero.astype(np.uint16), dense[nonzero],
                                sum(p.sampled for p in parts)))
    return out


class Meter:
    """A band's statistics, measured piece by piece: each chunk while the encoder has just read
    it into the cache, not the whole band again afterwards (a band is larger than the cache: a
    pass over it costs memory bandwidth)."""

    def __init__(self, dtype: np.dtype, every: int) -> None:
        self.dtype, self.every = dtype, every
        self.channels: list[_Channel] = []

    def add(self, piece: np.ndarray, limits: bool = True) -> None:
        """A piece `(c, z, y, x)` whose first row is a multiple of `every` in the volume; its
        minimum and maximum too, unless `limits` is False (then `add_limits` of the whole band:
        one reduction over long rows costs less than one per chunk, whose rows are short)."""
        if not self.channels:
            self.channels = [_Channel(self.dtype) for _ in range(piece.shape[0])]
        for data, channel in zip(piece, self.channels):
            channel.voxels += data.size
            if limits:
                self._limits(data, channel)
            for block in _blocks(data[:, ::self.every]):
                if self.dtype.itemsize == 1:
                    channel.dense += _count8(block)
                else:
                    channel.count(_patterns(block).reshape(-1).copy())

    def add_limits(self, band: np.ndarray) -> None:
        """The minimum and maximum of a band whose pieces were added without them."""
        for data, channel in zip(band, self.channels):
            self._limits(data, channel)

    def _limits(self, data: np.ndarray, channel: _Channel) -> None:
        if not (self.dtype.itemsize == 1 and self.every == 1):  # else read from the histogram
            channel.limits(data)

    def result(self) -> list[ChannelStats] | None:
        if not self.channels:
            return None
        out = []
        special = _special(self.dtype)
        for c in self.channels:
            c.flush()
            if special is not None:
                c.dense[special] = 0
            if self.dtype.itemsize == 1 and self.every == 1:
                order = _order(self.dtype)
                present = order[c.dense[order] > 0]
                if present.size:
                    c.low, c.high = _value(int(present[0]), self.dtype), _value(int(present[-1]), self.dtype)
            nonzero = np.flatnonzero(c.dense)
            out.append(ChannelStats(c.voxels, c.nan, c.inf, c.low, c.high, nonzero.astype(np.uint16),
                                    c.dense[nonzero], int(c.dense.sum())))
        return out
