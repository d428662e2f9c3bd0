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
    """Each block's first voxel, then a vote on the blocks that hold more than one value. Output
    planes are taken in groups of about `_GROUP` voxels (small temporaries that stay in cache;
    on small pieces, few numpy calls), the mixed blocks gathered group by group and voted on in
    batches of about `_BATCH`: a vote is some hundred numpy calls, which on the few mixed blocks
    of a plane of labels cost more than the arithmetic (docs/benchmarks.md, curved labels)."""
    fx, fy, fz = factor
    if fx * fy * fz == 1:
        out[...] = a
        return
    if a.dtype.kind == "f":
        for k in range(out.shape[1]):
            _mode_by_sort(_views(_planes(a, fz, k), fx, fy), out[:, k])
        return
    wide = _PAIRED.get(a.dtype.itemsize) if fx == 2 and _pairs_contiguous(a) else None
    batch = _Batch()
    step = max(1, _GROUP // max(1, out[:, 0].size))
    for k in range(0, out.shape[1], step):
        group, into = a[:, fz * k:fz * (k + step)], out[:, k:k + step]
        blocks = _blocks(group, factor)
        np.copyto(into, blocks[0])  # the vote of a uniform block
        if wide:
            views = [group.view(wide)[:, z::fz, y::fy] for z in range(fz) for y in range(fy)]
            mixed = _mixed(views, group[:, ::fz, ::fy])
        else:
            views = blocks
            mixed = _mixed(views, None)
        found = np.count_nonzero(mixed)
        if 2 * found > mixed.size:  # noise-like labels: sorting is then cheaper than gathering
            _mode_by_sort(blocks, into)
        elif found:
            values = [v[mixed] for v in views]
            if wide:  # each value is a pair of voxels: its halves
                values = [half for v in values for half in v.view(a.dtype).reshape(-1, 2).T]
            batch.add(into, mixed, values)
    batch.vote()


def _blocks(a: np.ndarray, factor: Vec3) -> list[np.ndarray]:
    """The (c, z, y, x) views of `a` holding each position of a block, the first first."""
    fx, fy, fz = factor
    return [a[:, z::fz, y::fy, x::fx] for z in range(fz) for y in range(fy) for x in range(fx)]


#: output voxels whose blocks are looked at together
_GROUP = 1 << 15

#: mixed blocks voted on at once: their values take 8 * _BATCH words at most
_BATCH = 1 << 16

#: the unsigned type of twice the width: a pair of neighbours along x seen as one value
_PAIRED: dict[int, np.dtype] = {1: np.dtype(np.uint16), 2: np.dtype(np.uint32), 4: np.dtype(np.uint64)}


class _Batch:
    """The mixed blocks of several groups of output planes, voted on together."""

    def __init__(self) -> None:
        self.planes: list[tuple[np.ndarray, np.ndarray, int]] = []  # (part of out, mask, blocks)
        self.values: list[list[np.ndarray]] = []  # per group, the blocks' values by position
        self.size = 0

    def add(self, into: np.ndarray, mixed: np.ndarray, values: list[np.ndarray]) -> None:
        self.planes.append((into, mixed, len(values[0])))
        self.values.append(values)
        self.size += len(values[0])
        if self.size >= _BATCH:
            self.vote()

    def vote(self) -> None:
        if not self.planes:
            return
        best = _mode_by_counts([np.concatenate(v) for v in zip(*self.values)])
        at = 0
        for into, mixed, n in self.planes:
            into[mixed] = best[at:at + n]
            at += n
        self.planes, self.values, self.size = [], [], 0


def _mixed(views: list[np.ndarray], first_row: np.ndarray | None) -> np.ndarray:
    """Which blocks hold more than one value, as a (c, y, x) mask of the output plane, from
    `views`, the values of each position of the blocks.

    With pairs along x (labels of at most 32 bits whose rows lie contiguous), each pair is
    read as one value of twice the width (`first_row`: the blocks' first rows, whose pairs'
    halves are compared too): a block is uniform when those values are all equal and the first
    pair's two halves are too. That is fy * fz - 1 comparisons of contiguous values per output
    voxel, plus the halves, where comparing the block's voxels one by one takes
    fx * fy * fz - 1 strided ones."""
    first = views[0]
    if first_row is not None:
        mixed = np.not_equal(first_row[..., 0::2], first_row[..., 1::2])  # the first pair's halves
    else:
        mixed = np.zeros(first.shape, bool)
    different = np.empty(first.shape, bool)
    for v in views[1:]:
        np.not_equal(v, first, out=different)
        mixed |= different
    return mixed


def _pairs_contiguous(a: np.ndarray) -> bool:
    """Whether each row's pairs along x can be read as single values of twice the width."""
    item = a.dtype.itemsize
    return (a.strides[-1] == item and a.shape[-1] % 2 == 0
            and a.__array_interface__["data"][0] % (2 * item) == 0
            and all(s % (2 * item) == 0 for s in a.strides[:-1]))


def _mode_by_counts(values: list[np.ndarray]) -> np.ndarray:
    """Most frequent of the values at each position across `values`, ties to the smallest:
    exact for integers. By counting equal pairs (no per-block sort, which numpy runs as one
    call per 8-value row)."""
    counts = [np.zeros(values[0].shape, np.uint8) for _ in values]
    for i, j in itertools.combinations(range(len(values)), 2):
        same = (values[i] == values[j]).view(np.uint8)
        counts[i] += same
        counts[j] += same
    best, top = values[0].copy(), counts[0]
    for value, count in zip(values[1:], counts[1:]):
        # every copy of a value has its count, so comparing (count, -value) is the vote
        better = (count > top) | ((count == top) & (value < best))
        np.copyto(best, value, where=better)
        np.copyto(top, count, where=better)
    return best


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
