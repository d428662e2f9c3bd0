"""A plain-numpy reference for the pyramid, written independently of streamconv's kernels,
straight from the definitions in docs/downsampling.md: a NaN-padded float64 mean rounded half
to even (np.rint), a per-block np.unique mode, and plain striding."""

from __future__ import annotations

import itertools

import numpy as np
import tensorstore as ts


def read_scale(out, level: int) -> np.ndarray:
    """Scale `level` of a precomputed volume as tensorstore reads it: (x, y, z, channel)."""
    spec = {"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": f"{out}/"},
            "scale_index": level}
    return ts.open(spec).result().read().result()


def mode(values: np.ndarray):
    """Most frequent value; np.unique sorts, so the first maximum is the smallest of a tie."""
    uniques, counts = np.unique(values.ravel(), return_counts=True)
    return uniques[np.argmax(counts)]


def downsample(a: np.ndarray, factor: tuple[int, int, int], method: str) -> np.ndarray:
    """Downsample an (x, y, z, channel) array by `factor` (x, y, z): blocks aligned at 0, the
    last block of an odd axis holding only its in-bounds voxels."""
    fx, fy, fz = factor
    if method == "stride":
        return a[::fx, ::fy, ::fz]
    shape = tuple(-(-n // f) for n, f in zip(a.shape[:3], factor)) + a.shape[3:]
    if method == "majority":  # block by block: labels in tests are small
        out = np.empty(shape, a.dtype)
        for i, j, k in itertools.product(*(range(n) for n in shape[:3])):
            block = a[i * fx:(i + 1) * fx, j * fy:(j + 1) * fy, k * fz:(k + 1) * fz]
            for c in range(a.shape[3]):
                out[i, j, k, c] = mode(block[..., c])
        return out
    # average: pad with NaN to whole blocks, take the NaN-ignoring mean in float64
    padded = np.full(tuple(n * f for n, f in zip(shape[:3], factor)) + a.shape[3:], np.nan)
    padded[:a.shape[0], :a.shape[1], :a.shape[2]] = a
    blocks = padded.reshape(shape[0], fx, shape[1], fy, shape[2], fz, a.shape[3])
    mean = np.nanmean(blocks, axis=(1, 3, 5))
    return mean.astype(a.dtype) if a.dtype.kind == "f" else np.rint(mean).astype(a.dtype)


def factors(info: dict, level: int) -> tuple[int, int, int]:
    """The factor from scale `level - 1` to `level`, from the resolutions in the info."""
    prev, cur = info["scales"][level - 1]["resolution"], info["scales"][level]["resolution"]
    return tuple(round(c / p) for c, p in zip(cur, prev))  # type: ignore[return-value]


def check_pyramid(out, expected_scale0: np.ndarray, method: str, info: dict) -> None:
    """Scale 0 equals the input; every lower scale equals the reference applied to the scale
    above as read back (floats within float32 rounding)."""
    above = read_scale(out, 0)
    assert above.shape == expected_scale0.shape
    np.testing.assert_array_equal(above, expected_scale0)
    for level in range(1, len(info["scales"])):
        got = read_scale(out, level)
        want = downsample(above, factors(info, level), method)
        if got.dtype.kind == "f":
            np.testing.assert_allclose(got, want, rtol=1e-6)
        else:
            np.testing.assert_array_equal(got, want)
        above = got


DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "float32"]


def values(rng: np.random.Generator, shape: tuple, dtype: str, distinct: int | None) -> np.ndarray:
    if distinct:  # labels: few distinct values, so majority has real ties
        info = np.iinfo(dtype)
        pool = rng.integers(info.min, info.max, distinct, dtype=dtype, endpoint=True)
        return pool[rng.integers(0, distinct, shape)]
    if dtype == "float32":
        return rng.normal(0, 100, shape).astype(dtype)
    info = np.iinfo(dtype)
    high = min(info.max, 2 ** 50)  # the float64 reference cannot hold larger uint64 means
    return rng.integers(info.min, high, shape, dtype=dtype, endpoint=True)
