"""Value statistics of a volume, gathered by the band tasks during the pass.

A viewer needs a value range to show an image: a float volume opens black or white without
one. We see every voxel once while converting, so each band task measures its band (`measure`)
and the main process merges what the tasks return (`VolumeStats`): per scale and channel the
exact minimum and maximum of the finite values, NaN and infinity counts, and a histogram from
which robust limits (the 0.5 and 99.5 percentiles) are read. No extra pass over the data.

Each band task measures the chunks it encodes, on the contiguous copy of the chunk that the
encoder takes anyway (`engine/tasks.py`): the chunk is in the cache, and no strided pass over the
band (larger than the cache) is added. Per chunk and channel, the minimum and maximum:
`min()`/`max()`, one vectorised reduction each (SIMD, ~0.02-0.2 ns a voxel in the cache; numpy
has no fused min/max). NaN and infinities are counted only when the minimum or maximum is not
finite (a float chunk with some); integers need no NaN work at all, and none at all once the
band's channel holds its type's lowest and highest values (an 8-bit image with black and white
voxels: any further value lies between them).
The histogram counts a sample (`Sampling`): every voxel on scales of at most `EXACT_VOXELS`
(2^21) voxels, counted chunk by chunk with the minimum and maximum; on larger ones, per band
once its chunks are done (one strided copy of the band's sampled rows, not a Python call per
chunk, which in a band task costs ~10-30 us, as much as the reductions), the
voxels whose y is a multiple of 8 and z a multiple of 1, 2, 4 or (from 2^24 voxels) 8: at least
262144 values on any sampled scale, enough for display limits, at 1/8 to 1/64 of the cost
(docs/benchmarks.md), the same voxels whatever the bands and chunks. The sample's bin patterns
are counted once `BLOCK` of them wait, into bins over their own range only: 8-bit types one bin
per value (Pillow's C histogram); 16-bit types one bin per value (`np.bincount`); wider types
(float32 and the rest, cast to float32 first) the top 16 bits of the float32 (sign, exponent, 7
mantissa bits), put in value order afterwards: a bin spans a relative width of at most 2**-7
(0.8%). 8-bit values counted whole (on their chunks) give their minimum and maximum from the
histogram.
Minimum, maximum, NaN and infinity counts are exact on every voxel of every scale. `stats.json`
says what the histogram counted (`rows_step`, `planes_step`, `histogram.sampled`).

The main process's merge and the file `stats.json` are in `statsfile.py`.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..format.geometry import Scale

log = logging.getLogger("streamconv")

EXACT_VOXELS = 1 << 21      # scales up to this many voxels: every voxel in the histogram
SAMPLED_ROWS = 8            # larger scales: every 8th row of each plane, of every 2nd, 4th or
SAMPLED_PLANES = 8          # at most 8th plane: EXACT_VOXELS / 8 (262144) values at least
BLOCK = 1 << 19             # values per histogram call: a call's fixed cost (zeroing 65536 bins) stays small
_HIGH = 1 if sys.byteorder == "little" else 0  # the half-word holding a float32's top bits


@dataclass(frozen=True)
class Sampling:
    """Which voxels of a scale the histogram counts: those whose y is a multiple of `rows` and
    z a multiple of `planes` (the same voxels whatever the bands and chunks)."""

    rows: int = 1
    planes: int = 1

    @property
    def exact(self) -> bool:
        return self.rows == 1 and self.planes == 1


EXACT = Sampling()


def bins_of(dtype: np.dtype) -> int:
    """Histogram bins of a data type: one per value for 8 and 16 bits, else 65536 float32 bins."""
    return 256 if dtype.itemsize == 1 else 1 << 16


def sampling(scale: Scale) -> Sampling:
    """The voxels a scale's histogram counts: all of a small scale's; of a larger one, every 8th
    row of planes spaced so that about `EXACT_VOXELS / 8` values at least are counted."""
    voxels = scale.size[0] * scale.size[1] * scale.size[2]
    if voxels <= EXACT_VOXELS:
        return EXACT
    planes = 1
    while planes < SAMPLED_PLANES and voxels >= 2 * planes * EXACT_VOXELS:
        planes *= 2
    return Sampling(SAMPLED_ROWS, planes)


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


def measure(view: np.ndarray, sample: Sampling) -> list[ChannelStats]:
    """Statistics of a band `(c, z, y, x)`, one per channel, its histogram counting `sample`."""
    meter = Meter(view.dtype, sample)
    meter.add(np.ascontiguousarray(view))
    meter.sample(view, (0, 0, 0))
    return meter.result() or []


class _Channel:
    """One channel's running statistics in a `Meter`."""

    def __init__(self, dtype: np.dtype) -> None:
        self.pending: list[np.ndarray] = []  # bin patterns not counted yet
        self.waiting = 0
        self.first = 0  # the pattern of `hist[0]`
        self.hist: np.ndarray | None = None  # counts of the patterns first.. (the range seen only)
        self.voxels = self.nan = self.inf = 0
        self.low: float | None = None
        self.high: float | None = None
        # an integer type's own limits: once the data reach both, no value can change them
        self.full = (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)) if dtype.kind in "iu" else None
        self.settled = False

    def limits(self, data: np.ndarray) -> None:
        """Minimum and maximum of the finite values of a contiguous piece (one vectorised
        reduction each, over values in the cache); NaN and infinities counted only when the
        minimum or maximum says there are some (integers never have any). Nothing once an
        integer channel holds its type's lowest and highest value (8-bit images often do)."""
        if not data.size or self.settled:
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
        self.settled = self.full == (self.low, self.high)

    def count(self, patterns: np.ndarray) -> None:
        """Bin patterns (a copy), counted once `BLOCK` of them are waiting: a call has a fixed
        cost (a bincount, Pillow wrapping an image), which a small sample alone would not repay."""
        self.pending.append(patterns)
        self.waiting += patterns.size
        if self.waiting >= BLOCK:
            self.flush()

    def flush(self) -> None:
        """Count the waiting patterns over their own range: a bincount of all 65536 bins (512 KiB
        allocated and zeroed, then added) costs as much as counting 250000 values."""
        values = np.concatenate(self.pending) if len(self.pending) > 1 else \
            self.pending[0] if self.pending else np.zeros(0, np.uint8)
        self.pending, self.waiting = [], 0
        if not values.size:
            return
        if values.dtype == np.uint8:  # a sample of 8-bit values
            self.add(0, _count8(values.reshape(1, -1)))
        else:
            low = int(values.min())
            self.add(low, np.bincount(values - np.uint16(low)))

    def count8(self, part: np.ndarray) -> None:
        """8-bit values counted whole: at once by Pillow on the contiguous piece, not copied."""
        if part.size:
            self.add(0, _count8(np.ascontiguousarray(part.view(np.uint8)).reshape(-1, part.shape[-1])))

    def add(self, first: int, counts: np.ndarray) -> None:
        """Counts of the patterns `first`, `first + 1`..., into the histogram (widened to hold them)."""
        if self.hist is None:
            self.first, self.hist = first, counts.astype(np.int64)
            return
        low, high = min(first, self.first), max(first + counts.size, self.first + self.hist.size)
        if (low, high) != (self.first, self.first + self.hist.size):
            wider = np.zeros(high - low, np.int64)
            wider[self.first - low: self.first - low + self.hist.size] = self.hist
            self.first, self.hist = low, wider
        self.hist[first - self.first: first - self.first + counts.size] += counts

    def present(self, special: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The patterns of the bins that hold values, and their counts; those in `special`
        (NaN and infinities of float32) left out."""
        if self.hist is None:
            return np.zeros(0, np.intp), np.zeros(0, np.int64)
        if special is not None:
            inside = special[(special >= self.first) & (special < self.first + self.hist.size)]
            self.hist[inside - self.first] = 0
        index = np.flatnonzero(self.hist != 0)  # on booleans: 10 times faster than on int64
        return index + self.first, self.hist[index]


def _count8(rows: np.ndarray) -> np.ndarray:
    """One bin per byte value of contiguous rows `(n, x)`, by Pillow's histogram (C, no
    temporary, faster than bincount)."""
    from PIL import Image

    image = Image.frombuffer("L", (rows.shape[1], rows.shape[0]), rows, "raw", "L", 0, 1)
    return np.asarray(image.histogram(), np.int64)


def _patterns(part: np.ndarray) -> np.ndarray:
    """A copy of the bin pattern of each value: its 8 or 16 bits, or the top 16 bits of its float32."""
    size = part.dtype.itemsize
    if size <= 2:
        return part.view(np.uint8 if size == 1 else np.uint16).flatten()
    single = np.ascontiguousarray(part, dtype=np.float32)
    high = single.view(np.uint16)[..., _HIGH::2].flatten()
    if part.dtype != np.float32:  # rounded to nearest: a value just under a bin's edge (33554431
        edge = single.view(np.uint16)[..., 1 - _HIGH::2] == 0  # of int32) belongs to the bin below
        away = np.where(part >= 0, single > part, single < part) & edge
        high[away.reshape(-1)] -= 1
    return high


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
        held = [p.bins.astype(np.intp) for p in parts if p.bins.size]
        low = min((int(b.min()) for b in held), default=0)  # the bins of their range only
        dense = np.zeros(max((int(b.max()) for b in held), default=0) - low + 1, np.int64)
        for bins, part in zip(held, (p for p in parts if p.bins.size)):
            dense[bins - low] += part.counts
        nonzero = np.flatnonzero(dense != 0) + low  # on booleans: 10 times faster than on int64
        lows = [p.minimum for p in parts if p.minimum is not None]
        highs = [p.maximum for p in parts if p.maximum is not None]
        out.append(ChannelStats(sum(p.voxels for p in parts), sum(p.nan for p in parts),
                                sum(p.inf for p in parts), min(lows) if lows else None,
                                max(highs) if highs else None, nonzero.astype(np.uint16), dense[nonzero - low],
                                sum(p.sampled for p in parts)))
    return out


class Meter:
    """A band's statistics: its minimum and maximum measured chunk by chunk on the contiguous copy
    the encoder takes (`process_band`: while the chunk is in the cache, with no strided pass over
    the band), and so is the histogram of a scale counted whole; a sampled histogram is taken once
    on the band (a strided read of a few rows)."""

    def __init__(self, dtype: np.dtype, sample: Sampling) -> None:
        self.dtype, self.sample_of = dtype, sample
        self.channels: list[_Channel] = []
        # 8-bit values counted whole: the minimum and maximum are read from the histogram
        self.from_histogram = dtype.itemsize == 1 and sample.exact
        self.settled = False  # every channel holds its type's limits: chunks have nothing more to say

    def add(self, piece: np.ndarray) -> None:
        """A contiguous chunk `(c, z, y, x)` of the scale's chunk grid (its voxels are counted
        by `sample`, once per band): returns at once when settled, a Python call in a loop
        that evicted it from the caches costs ~10-30 us, 0.05-0.1 ns a voxel of a 64^3 chunk."""
        if self.settled:
            return
        if not self.channels:
            self.channels = [_Channel(self.dtype) for _ in range(piece.shape[0])]
        whole = self.sample_of.exact  # a small scale's histogram counts every voxel: while in the cache
        for data, channel in zip(piece, self.channels):
            if self.from_histogram:
                channel.count8(data)
            else:
                channel.limits(data)
                if whole:
                    channel.count(_patterns(data))
        self.settled = not (self.from_histogram or whole) and all(c.settled for c in self.channels)

    def sample(self, band: np.ndarray, start: tuple[int, int, int]) -> None:
        """The histogram's sample of a band `(c, z, y, x)` whose first voxel is `start` (x, y, z)
        of the scale, once its chunks were added: one strided copy of its sampled rows. Counts
        the band's voxels."""
        if not self.channels:
            self.channels = [_Channel(self.dtype) for _ in range(band.shape[0])]
        for channel in self.channels:
            channel.voxels += band[0].size
        if self.sample_of.exact or not band.size:  # counted chunk by chunk
            return
        rows, planes = self.sample_of.rows, self.sample_of.planes
        part = band[:, -start[2] % planes::planes, -start[1] % rows::rows]
        for data, channel in zip(part, self.channels):
            channel.count(_patterns(data))

    def result(self) -> list[ChannelStats] | None:
        if not self.channels:
            return None
        out = []
        special = _special(self.dtype)
        for c in self.channels:
            c.flush()
            if self.from_histogram and c.hist is not None:
                order = _order(self.dtype)
                present = order[c.hist[order] > 0]
                if present.size:
                    c.low, c.high = _value(int(present[0]), self.dtype), _value(int(present[-1]), self.dtype)
            nonzero, counts = c.present(special)
            out.append(ChannelStats(c.voxels, c.nan, c.inf, c.low, c.high, nonzero.astype(np.uint16),
                                    counts, int(counts.sum())))
        return out
