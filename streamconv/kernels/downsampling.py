"""Downsampling kernels: one pyramid step by a factor of 1 or 2 per axis.

Arrays are (channel, z, y, x). Semantics (docs/downsampling.md), over the in-bounds voxels of
each block only, so edge blocks of odd-sized axes are smaller:
- average: mean in float64, rounded half to even for integer types;
- majority: most frequent value, ties to the smallest;
- stride: the first voxel of the block.
Integer averages are exact: integer sums and shifts, which for types up to 32 bits give exactly
the float64 result, and for 64-bit integers the exact mean that float64 cannot hold.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..errors import UsageError
from ..format.geometry import Vec3, ceil_div

METHODS = ("average", "majority", "stride")

_WIDER = {np.dtype(a): np.dtype(b) for a, b in [
    ("uint8", "uint16"), ("int8", "int16"), ("uint16", "uint32"), ("int16", "int32"),
    ("uint32", "uint64"), ("int32", "int64")]}


def default_method(volume_type: str) -> str:
    return "majority" if volume_type == "segmentation" else "average"


def check_method(method: str) -> None:
    if method not in METHODS:
        raise UsageError(f"--downsampling must be one of {', '.join(METHODS)}, got {method!r}")


def output_shape(shape: tuple[int, ...], factor: Vec3) -> tuple[int, int, int, int]:
    """Shape of the downsampled (c, z, y, x) array."""
    c, z, y, x = shape
    fx, fy, fz = factor
    return (c, ceil_div(z, fz), ceil_div(y, fy), ceil_div(x, fx))


def downsample(src: np.ndarray, factor: Vec3, method: str, out: np.ndarray | None = None,
               outside: float | None = None) -> np.ndarray:
    """Downsample `src` (c, z, y, x) by `factor` (x, y, z) into `out` (allocated if None).

    `outside`: for average, the value of the voxels past an odd edge, which then count in the
    edge blocks (neuroglancer-scripts' --outside-value, e.g. 255 for a white background)."""
    if out is None:
        out = np.empty(output_shape(src.shape, factor), src.dtype)
    if method == "average" and outside is not None:
        pad = [(0, 0)] + [(0, f - 1 if f == 2 and n % 2 else 0)
                          for n, f in zip(src.shape[1:], factor[::-1])]
        if any(p[1] for p in pad):
            src = np.pad(src, pad, constant_values=src.dtype.type(outside))
    if method == "stride":
        fx, fy, fz = factor
        out[...] = src[:, ::fz, ::fy, ::fx]
        return out
    kernel = _average if method == "average" else _majority
    # Split every odd axis with factor 2 into its even part and its last plane, which is
    # reduced with factor 1 along that axis: blocks then hold exactly their in-bounds voxels.
    parts = []
    for axis, f in zip((3, 2, 1), factor):  # x, y, z
        n = src.shape[axis]
        if f == 2 and n % 2:
            parts.append([(slice(0, n - 1), slice(0, n // 2), 2), (slice(n - 1, n), slice(n // 2, n // 2 + 1), 1)])
        else:
            parts.append([(slice(0, n), slice(0, out.shape[axis]), f)])
    for (sx, ox, fx), (sy, oy, fy), (sz, oz, fz) in itertools.product(*parts):
        piece = src[:, sz, sy, sx]
        if piece.size:
            kernel(piece, (fx, fy, fz), out[:, oz, oy, ox])
    return out


def _views(plane_pair: list[np.ndarray], fx: int, fy: int) -> list[np.ndarray]:
    """The (c, y, x) views holding each position of a block, from the block's z planes."""
    return [p[:, j::fy, i::fx] for p in plane_pair for j in range(fy) for i in range(fx)]


def _planes(a: np.ndarray, fz: int, k: int) -> list[np.ndarray]:
    return [a[:, fz * k + i] for i in range(fz)]


# The kernels work one output plane at a time: small temporaries that stay in cache and are
# reused, instead of whole-slab intermediates (fresh pages cost more than the arithmetic).

def _average(a: np.ndarray, factor: Vec3, out: np.ndarray) -> None:
    fx, fy, fz = factor
    count = fx * fy * fz
    if count == 1:
        out[...] = a
        return
    wide = _WIDER.get(a.dtype)
    if wide is None:
        _average_other(a, factor, out)
        return
    c, _, y, x = a.shape
    zsum = np.empty((c, y, x), wide)
    ysum = np.empty((c, y // fy, x), wide) if fy == 2 else zsum
    xsum = np.empty(out.shape[:1] + out.shape[2:], wide) if fx == 2 else ysum
    odd = np.empty_like(xsum)
    shift = count.bit_length() - 1
    for k in range(out.shape[1]):
        planes = _planes(a, fz, k)
        if fz == 2:
            np.add(planes[0], planes[1], out=zsum, dtype=wide)
        else:
            np.copyto(zsum, planes[0])
        if fy == 2:
            np.add(zsum[:, 0::2], zsum[:, 1::2], out=ysum)
        if fx == 2:
            np.add(ysum[:, :, 0::2], ysum[:, :, 1::2], out=xsum)
        # Round half to even: (s + count/2 - 1 + (q & 1)) >> shift, with q = s >> shift.
        np.right_shift(xsum, shift, out=odd)
        np.bitwise_and(odd, 1, out=odd)
        odd += count // 2 - 1
        odd += xsum
        np.right_shift(odd, shift, out=odd)
        out[:, k] = odd


def _average_other(a: np.ndarray, factor: Vec3, out: np.ndarray) -> None:
    """float32 in float64; 64-bit integers exactly (float64 cannot hold them), half to even."""
    fx, fy, fz = factor
    count = fx * fy * fz
    shift = count.bit_length() - 1
    for k in range(out.shape[1]):
        views = _views(_planes(a, fz, k), fx, fy)
        if a.dtype.kind == "f":
            total = views[0].astype(np.float64)
            for v in views[1:]:
                total += v
            total /= count
            out[:, k] = total
            continue
        # sum(v) = count * sum(v >> shift) + sum(v & (count - 1)), each part without overflow
        high = sum((v >> shift for v in views[1:]), views[0] >> shift)
        low = sum((v & (count - 1) for v in views[1:]), views[0] & (count - 1))
        q = high + (low >> shift)
        r = low & (count - 1)
        half = count // 2
        q += ((r > half) | ((r == half) & (q & 1 == 1))).astype(q.dtype)
        out[:, k] = q


def _majority(a: np.ndarray, factor: Vec3, out: np.ndarray) -> None:
    fx, fy, fz = factor
    if fx * fy * fz == 1:
        out[...] = a
        return
    if a.dtype.kind == "f":
        for k in range(out.shape[1]):
            _mode_by_sort(_views(_planes(a, fz, k), fx, fy), out[:, k])
        return
    for k in range(out.shape[1]):
        planes = _planes(a, fz, k)
        _mode_by_counts(_views(planes, fx, fy), _mixed(planes, fx, fy), out[:, k])


#: the unsigned type of twice the width: a pair of neighbours along x seen as one value
_PAIRED: dict[int, np.dtype] = {1: np.dtype(np.uint16), 2: np.dtype(np.uint32), 4: np.dtype(np.uint64)}


def _mixed(planes: list[np.ndarray], fx: int, fy: int) -> np.ndarray:
    """Which blocks hold more than one value, as a (c, y, x) mask of the output plane.

    With pairs along x (and labels of at most 32 bits whose rows lie contiguous), each pair is
    read as one value of twice the width: a block is uniform when those values are all equal
    and the first pair's two halves are too. That is fy * fz - 1 comparisons of contiguous
    values per output voxel, plus the halves, where comparing the block's voxels one by one
    takes fx * fy * fz - 1 strided ones."""
    wide = _PAIRED.get(planes[0].dtype.itemsize)
    if fx == 2 and wide is not None and all(_pairs_contiguous(p) for p in planes):
        first_row = planes[0][:, ::fy]
        mixed = np.not_equal(first_row[..., 0::2], first_row[..., 1::2])  # the first pair's halves
        views = [p.view(wide)[:, j::fy] for p in planes for j in range(fy)]
    else:
        views = _views(planes, fx, fy)
        mixed = np.zeros(views[0].shape, bool)
    first = views[0]
    different = np.empty(first.shape, bool)
    for v in views[1:]:
        np.not_equal(v, first, out=different)
        mixed |= different
    return mixed


def _pairs_contiguous(plane: np.ndarray) -> bool:
    """Whether each row's pairs along x can be read as single values of twice the width."""
    item = plane.dtype.itemsize
    return (plane.strides[-1] == item and plane.shape[-1] % 2 == 0
            and plane.__array_interface__["data"][0] % (2 * item) == 0
            and all(s % (2 * item) == 0 for s in plane.strides[:-1]))


def _mode_by_counts(views: list[np.ndarray], mixed_blocks: np.ndarray, out: np.ndarray) -> None:
    """Most frequent value of each position across `views`, ties to the smallest: exact for
    integers. Labels are mostly uniform blocks (`mixed_blocks` False), which take the first
    value; only mixed blocks are gathered and voted on, by counting equal pairs (no per-block
    sort, which numpy runs as one call per 8-value row). A plane of mostly mixed blocks
    (noise-like labels) is voted on by sorting, which is then cheaper than gathering
    (measured in docs/benchmarks.md)."""
    first = views[0]
    np.copyto(out, first)
    if 2 * np.count_nonzero(mixed_blocks) > mixed_blocks.size:
        _mode_by_sort(views, out)
        return
    mixed = np.nonzero(mixed_blocks)
    if not mixed[0].size:
        return
    values = [v[mixed] for v in views]
    counts = [np.zeros(values[0].shape, np.uint8) for _ in values]
    for i, j in itertools.combinations(range(len(values)), 2):
        same = (values[i] == values[j]).view(np.uint8)
        counts[i] += same
        counts[j] += same
    best, top = values[0], counts[0]
    for value, count in zip(values[1:], counts[1:]):
        # every copy of a value has its count, so comparing (count, -value) is the vote
        better = (count > top) | ((count == top) & (value < best))
        np.copyto(best, value, where=better)
        np.copyto(top, count, where=better)
    out[mixed] = best


def _mode_by_sort(views: list[np.ndarray], out: np.ndarray) -> None:
    """The vote for floats, whose NaNs and signed zeros the counts would order differently: the
    block's values sorted, and the first longest run of equal values."""
    blocks = np.stack(views, axis=-1)
    blocks.sort(axis=-1)
    # Length of the run of equal values ending at each sorted position; the first maximum
    # is the most frequent value, and the smallest of those tied, since values are sorted.
    run = np.ones(blocks.shape, np.uint8)
    for i in range(1, blocks.shape[-1]):
        same = blocks[..., i] == blocks[..., i - 1]
        run[..., i] = np.where(same, run[..., i - 1] + 1, 1)
    best = run.argmax(axis=-1)
    out[...] = np.take_along_axis(blocks, best[..., None], axis=-1)[..., 0]
