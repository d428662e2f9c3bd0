"""The one place that decides the output data type and converts every slab to it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import DataError

#: Data types the precomputed format stores (little-endian on disk).
SUPPORTED = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "float32")


def output_dtype(input_dtype: np.dtype, value_range: Callable[[], tuple[int, int]]) -> np.dtype:
    """The stored type for an input type; `value_range` is only called for int64 input.

    float64 and float16 become float32; int64 becomes the narrowest of uint32, int32 or uint64
    that holds every value, which costs one extra read of the input.
    """
    dt = np.dtype(input_dtype)
    if dt.kind == "f" and dt.itemsize in (2, 4, 8):
        return np.dtype("float32")
    if dt.kind in "iu" and dt.newbyteorder("=").name in SUPPORTED:
        return dt.newbyteorder("=")
    if dt.kind == "i" and dt.itemsize == 8:
        lo, hi = value_range()
        for candidate in ("uint32", "int32", "uint64"):
            info = np.iinfo(candidate)
            if info.min <= lo and hi <= info.max:
                return np.dtype(candidate)
        raise DataError(f"int64 values from {lo} to {hi} fit no type the format stores "
                        f"({', '.join(SUPPORTED)})")
    raise DataError(f"data type {dt} is not supported; the format stores {', '.join(SUPPORTED)}")


def cast_into(values: np.ndarray, out: np.ndarray, slope: float = 1.0, inter: float = 0.0) -> None:
    """Write `values * slope + inter` into `out`, cast to its type (in float64 when scaled).

    float values beyond float32's range become infinite, as documented (docs/cli.md, "Values"):
    numpy's overflow warning, a line of our source per slab, is not repeated to the user."""
    if slope != 1.0 or inter != 0.0:
        with np.errstate(over="ignore"):
            np.copyto(out, values.astype(np.float64) * slope + inter, casting="unsafe")
        return
    if out.dtype.kind == "f" and values.dtype.kind == "f":
        with np.errstate(over="ignore"):
            np.copyto(out, values, casting="unsafe")
        return
    if out.dtype.kind in "iu" and values.dtype.kind in "iu" and not np.can_cast(values.dtype, out.dtype):
        lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
        info = np.iinfo(out.dtype)
        if lo < info.min or hi > info.max:
            raise DataError(f"value range {lo}..{hi} does not fit the output type {out.dtype}")
    np.copyto(out, values, casting="unsafe")
