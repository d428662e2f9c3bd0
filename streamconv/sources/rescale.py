"""Values mapped to another stored type, as neuroglancer-scripts' volume-to-precomputed does
when the info asks for another `data_type` or `--input-min/--input-max` are given."""

from __future__ import annotations

import copy
import logging

import numpy as np

from ..errors import UsageError
from ..format.geometry import Box
from .base import MemoryOrder, Source

log = logging.getLogger("streamconv")


class Rescaled:
    """A source whose values become `dtype`: [input_min, input_max] is mapped linearly onto the
    type's range (0..1 for float32), then integers are rounded half to even and clipped."""

    def __init__(self, inner: Source, dtype: np.dtype,
                 input_range: tuple[float, float] | None = None) -> None:
        self.inner, self.dtype, self.input_range = inner, np.dtype(dtype), input_range
        self.shape, self.num_channels = inner.shape, inner.num_channels
        self.resolution, self.stream_axis = inner.resolution, inner.stream_axis
        self.parallel_reads, self.reads_regions = inner.parallel_reads, inner.reads_regions
        self.placement = inner.placement
        self.memory_order = MemoryOrder()  # the inner source reads into a C-order temporary
        if input_range is not None and input_range[0] == input_range[1]:
            raise UsageError("--input-min and --input-max must differ")
        if input_range is None and not np.can_cast(inner.dtype, self.dtype, "safe"):
            log.warning("values of %s are rounded and clipped to %s", inner.dtype, self.dtype)

    def read(self, p0: int, p1: int, out: np.ndarray) -> None:
        values = np.empty(out.shape, self.inner.dtype)
        self.inner.read(p0, p1, values)
        self._convert(values, out)

    def read_region(self, region: Box, out: np.ndarray) -> None:
        values = np.empty(out.shape, self.inner.dtype)
        self.inner.read_region(region, values)
        self._convert(values, out)

    def _convert(self, values: np.ndarray, out: np.ndarray) -> None:
        if self.input_range is None and np.can_cast(values.dtype, out.dtype, "safe"):
            out[...] = values
            return
        work = values.astype(np.float64)
        kind = out.dtype.kind
        lo, hi = (np.iinfo(out.dtype).min, np.iinfo(out.dtype).max) if kind in "iu" else (0.0, 1.0)
        if self.input_range is not None:
            a, b = self.input_range
            work -= a
            work *= (hi - lo) / (b - a)
            work += lo
        if kind in "iu":
            np.rint(work, out=work)
            np.clip(work, lo, hi, out=work)
        np.copyto(out, work, casting="unsafe")

    def mapped(self, p0: int, p1: int) -> None:
        return None  # values are changed on the way

    def window(self, p0: int, p1: int) -> Source:
        part = copy.copy(self)
        part.inner = self.inner.window(p0, p1)
        return part

    def fingerprint(self) -> dict:
        return {**self.inner.fingerprint(), "as": self.dtype.name,
                "input_range": list(self.input_range) if self.input_range else None}

    def close(self) -> None:
        self.inner.close()
