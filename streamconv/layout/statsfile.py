"""`stats.json`: the value statistics of an output, merged in the main process and stored.

The band tasks measure (`stats.py`); `VolumeStats` merges what they return per scale and channel,
keeps each complete slab's beside the journal (a resumed run counts the slabs it skips), and
writes `stats.json` beside `info` at the end of a job with the scales seen whole. The format is
documented in docs/guide.md ("Value statistics"); its `version` says which it is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..format.geometry import Scale
from ..kernels.stats import ChannelStats, _order, merge, sampling
from ..stores.base import Store

log = logging.getLogger("streamconv")

FILE = "stats.json"
SLAB_DIR = "stats"  # each complete slab's statistics, beside the journal (synced with its checkpoints)
VERSION = 1
PERCENTILES = (0.5, 99.5)   # the robust limits a viewer's range is taken from


def _edges(patterns: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The lowest and highest value of each bin (float32 values for the float32 bins)."""
    if dtype.itemsize <= 2:
        values = patterns.astype(np.uint8 if dtype.itemsize == 1 else np.uint16).view(dtype).astype(np.float64)
        return values, values
    low_bits = (patterns.astype(np.uint32) << 16)
    a = low_bits.view(np.float32).astype(np.float64)
    # float32 values: the bin's largest float32; wider values (int32, float64), cast toward zero
    # into a bin, can lie up to the next bin's edge (33554431 of int32, above float32's 33554430)
    far = low_bits | 0xFFFF if np.dtype(dtype) == np.float32 else low_bits + (1 << 16)
    b = far.view(np.float32).astype(np.float64)
    negative = (patterns & 0x8000) != 0
    return np.where(negative, b, a), np.where(negative, a, b)


@dataclass
class VolumeStats:
    """The merge, in the main process, of what band tasks returned, per scale and channel."""

    scales: list[Scale]
    dtype: np.dtype
    parts: dict[int, list[ChannelStats]] = field(default_factory=dict)

    def add(self, level: int, stats: list[ChannelStats]) -> None:
        held = self.parts.get(level)
        self.parts[level] = stats if held is None else merge([held, stats], self.dtype)

    def slab_done(self, store: Store, state: str, level: int, index: int, stats: list[ChannelStats]) -> None:
        """A slab complete: its statistics counted, and kept beside the journal (`state`) so
        that a resumed run, which skips the slab, still counts them."""
        store.write(_slab_key(state, level, index), json.dumps([_part_json(c) for c in stats]).encode())
        self.add(level, stats)

    def resume(self, store: Store, state: str, done: Iterable[tuple[int, int]]) -> None:
        """Count the slabs complete before this run, from what their runs kept."""
        for level, index in sorted(done):
            raw = store.read(_slab_key(state, level, index))
            if raw is not None:
                self.add(level, [_part_from_json(c) for c in json.loads(raw)])

    def complete(self, level: int) -> bool:
        """This run saw every voxel of the scale (a resumed run skips slabs done before)."""
        s = self.scales[level].size
        return level in self.parts and self.parts[level][0].voxels == s[0] * s[1] * s[2]

    def to_json(self) -> dict:
        """The scales seen whole, as `stats.json` holds them."""
        scales = []
        for k in sorted(self.parts):
            if self.complete(k):
                sample = sampling(self.scales[k])
                scales.append({"key": self.scales[k].key, "rows_step": sample.rows, "planes_step": sample.planes,
                               "channels": [channel_json(c, self.dtype) for c in self.parts[k]]})
        return {"version": VERSION, "data_type": self.dtype.name, "scales": scales}


def _slab_key(state: str, level: int, index: int) -> str:
    return f"{state}/{SLAB_DIR}/{level}-{index}.json"


def _part_json(c: ChannelStats) -> dict:
    return {"voxels": c.voxels, "nan": c.nan, "inf": c.inf, "min": c.minimum, "max": c.maximum,
            "bins": c.bins.tolist(), "counts": c.counts.tolist(), "sampled": c.sampled}


def _part_from_json(d: dict) -> ChannelStats:
    return ChannelStats(d["voxels"], d["nan"], d["inf"], d["min"], d["max"], np.array(d["bins"], np.uint16),
                        np.array(d["counts"], np.int64), d["sampled"])


def channel_json(c: ChannelStats, dtype: np.dtype) -> dict:
    """One channel of one scale in `stats.json`: bins in increasing value order."""
    order = _order(dtype)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    sort = np.argsort(rank[c.bins.astype(np.int64)], kind="stable")
    bins, counts = c.bins.astype(np.int64)[sort], c.counts[sort]
    lower, upper = _edges(bins, dtype)
    hist = Histogram(lower, upper, counts)
    return {"voxels": c.voxels, "nan": c.nan, "inf": c.inf, "min": c.minimum, "max": c.maximum,
            "percentiles": {_name(p): _within(hist.percentile(p), c) for p in PERCENTILES},
            "histogram": {"exact": dtype.itemsize <= 2, "sampled": c.sampled, "lower": lower.tolist(),
                          "upper": upper.tolist(), "count": counts.tolist()}}


def _within(value: float | None, c: ChannelStats) -> float | None:
    """A percentile read from a bin, kept within the exact minimum and maximum."""
    if value is None or c.minimum is None or c.maximum is None:
        return value
    return min(max(value, float(c.minimum)), float(c.maximum))


def _name(p: float) -> str:
    return f"{p:g}"


@dataclass(frozen=True)
class Histogram:
    """Bins in increasing value order: each holds `count` values in [lower, upper]."""

    lower: np.ndarray
    upper: np.ndarray
    count: np.ndarray

    def percentile(self, p: float) -> float | None:
        """numpy's (linear) percentile, read from the bins: exact where a bin is one value,
        else interpolated within the bin that holds the rank, so within one bin of numpy's."""
        total = int(self.count.sum())
        if total == 0:
            return None
        rank = p / 100 * (total - 1)
        cumulative = np.cumsum(self.count)
        i = int(np.searchsorted(cumulative, rank, side="right"))
        below = cumulative[i - 1] if i else 0
        if self.lower[i] == self.upper[i]:
            if rank > cumulative[i] - 1 and i + 1 < len(self.count):  # between this value and the next
                return float(self.lower[i] + (rank - cumulative[i] + 1) * (self.lower[i + 1] - self.lower[i]))
            return float(self.lower[i])
        fraction = (rank - below + 0.5) / self.count[i]
        return float(self.lower[i] + min(1.0, fraction) * (self.upper[i] - self.lower[i]))


def write_stats(store: Store, stats: VolumeStats, replace: bool) -> None:
    """`stats.json` with the scales seen whole; `replace`: a new conversion's file, else the
    scales of an earlier file that this job did not see are kept (a step of the workflow)."""
    data = stats.to_json()
    missing = [s.key for k, s in enumerate(stats.scales) if not stats.complete(k) and k in stats.parts]
    if missing:
        log.info("value statistics of %s not stored: this run did not see them whole", ", ".join(missing))
    if not replace:
        old = read_stats_json(store.read(FILE))
        if old is not None:
            seen = {s["key"] for s in data["scales"]}
            data["scales"] = [s for s in old["scales"] if s.get("key") not in seen] + data["scales"]
    if data["scales"] or replace:
        store.write(FILE, json.dumps(data, separators=(",", ":")).encode())



def read_stats_json(raw: bytes | None) -> dict | None:
    """A `stats.json` of a version we read, or None (absent, unreadable, or a later version)."""
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("scales"), list):
        return None
    return data


def describe(stats: VolumeStats | None) -> str:
    """For the run's summary: the values of the finest scale seen whole, and NaN/infinities."""
    if stats is None:
        return ""
    level = next((k for k in sorted(stats.parts) if stats.complete(k)), None)
    if level is None:
        return ""
    channels = stats.parts[level]
    lows = [c.minimum for c in channels if c.minimum is not None]
    highs = [c.maximum for c in channels if c.maximum is not None]
    text = f", values {min(lows):.6g} to {max(highs):.6g}" if lows else ", no finite value"
    if len(channels) == 1 and lows:
        limits = channel_json(channels[0], stats.dtype)["percentiles"]
        text += f" ({PERCENTILES[0]:g}-{PERCENTILES[1]:g}%: {limits[_name(PERCENTILES[0])]:.6g} to " \
                f"{limits[_name(PERCENTILES[1])]:.6g})"
    nan, inf = sum(c.nan for c in channels), sum(c.inf for c in channels)
    return text + (f", {nan} NaN" if nan else "") + (f", {inf} infinite" if inf else "")
