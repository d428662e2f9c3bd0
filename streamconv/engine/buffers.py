"""Slab buffers shared between the main process and workers, as files in /dev/shm.

A worker maps a buffer for the length of one task and unmaps it when the task's arrays die, so
its resident memory holds only what that task touched. Files are named after the owning pid, so
buffers left by a killed run are found and removed by the next one.
"""

from __future__ import annotations

import ctypes
import math
import mmap
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from ..sources.base import MemoryOrder

_PREFIX = "streamconv-"
_MADV_POPULATE_READ, _MADV_POPULATE_WRITE = 22, 23  # Linux 5.14
_PAGE = mmap.PAGESIZE


def _shm_dir() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


@dataclass(frozen=True)
class SlabRef:
    """A picklable handle on a buffer: what a task needs to map it."""

    path: str
    shape: tuple[int, int, int, int]  # (c, z, y, x)
    dtype: str
    order: MemoryOrder = MemoryOrder()

    def array(self) -> np.ndarray:
        """The buffer as a (c, z, y, x) array (a view, in `order`); the mapping lasts as long as
        the array or a view of it."""
        fd = os.open(self.path, os.O_RDWR)
        try:
            size = math.prod(self.shape) * np.dtype(self.dtype).itemsize
            mm = mmap.mmap(fd, max(size, 1))
        finally:
            os.close(fd)
        return arranged(np.ndarray(stored_shape(self.shape, self.order), self.dtype, buffer=mm), self.order)

    def missing(self) -> str | None:
        """Never: a buffer is ours, nobody cuts it short (a `MappedSlab`'s file may be)."""
        return None


@dataclass(frozen=True)
class PrivateSlab:
    """A slab in the task's own memory (a Dask task on another host shares nothing): it offers
    the same `array()` as a `SlabRef`, so the task functions serve both."""

    data: np.ndarray

    @classmethod
    def zeros(cls, shape: tuple[int, int, int, int], dtype: np.dtype | str,
              order: MemoryOrder = MemoryOrder()) -> PrivateSlab:
        return cls(arranged(np.zeros(stored_shape(shape, order), dtype), order))

    def array(self) -> np.ndarray:
        return self.data


def populate(view: np.ndarray, write: bool) -> None:
    """Map the pages under `view` (part of a slab) before a task touches them, one system call
    per contiguous run of pages: a task maps its slab afresh and would otherwise take a page
    fault per 4 KiB page on first touch, which here costs as much as the read into it
    (docs/benchmarks.md). Only advice: on a kernel older than 5.14, or memory that is not a
    mapping, nothing happens."""
    if _libc is None:
        return
    for start, stop in _pages(_runs(view)):
        if _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(stop - start),
                         _MADV_POPULATE_WRITE if write else _MADV_POPULATE_READ):
            return


def _runs(a: np.ndarray) -> np.ndarray:
    """Address ranges (n x 2: start, stop) that hold `a` with little in between: `a` whole if
    it is dense enough, else each slice along its widest-strided axis, and so on. The slices
    lie alike, so the runs of one are shifted to the others (no call per slice: a tile's
    downsampled rows are thousands of short runs per band)."""
    if a.size == 0:
        return np.empty((0, 2), np.int64)
    lo = hi = a.__array_interface__["data"][0]
    for n, stride in zip(a.shape, a.strides):
        lo, hi = lo + min(0, (n - 1) * stride), hi + max(0, (n - 1) * stride)
    hi += a.itemsize
    if hi - lo <= 2 * max(a.nbytes, _PAGE):
        return np.array([[lo, hi]], np.int64)
    axis = max(range(a.ndim), key=lambda k: abs(a.strides[k]) if a.shape[k] > 1 else 0)
    first = _runs(np.moveaxis(a, axis, 0)[0])
    shifts = np.arange(a.shape[axis], dtype=np.int64) * a.strides[axis]
    return (shifts[:, None, None] + first[None]).reshape(-1, 2)


def _pages(runs: np.ndarray) -> list[tuple[int, int]]:
    """The runs widened to whole pages, those that touch or overlap merged: short rows a few
    hundred bytes apart are one range of pages, one system call."""
    if len(runs) == 0:
        return []
    runs = runs[np.argsort(runs[:, 0], kind="stable")]
    start = runs[:, 0] - runs[:, 0] % _PAGE
    stop = -(-runs[:, 1] // _PAGE) * _PAGE
    reach = np.maximum.accumulate(stop)
    new = np.ones(len(runs), bool)
    new[1:] = start[1:] > reach[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:], len(runs)) - 1
    return list(zip(start[first].tolist(), reach[last].tolist()))


def _load_libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


_libc = _load_libc()


def stored_shape(shape: tuple[int, int, int, int], order: MemoryOrder) -> tuple[int, ...]:
    """How a (c, z, y, x) slab lies in memory in `order`."""
    return tuple(shape[a] for a in order.axes)


def arranged(stored: np.ndarray, order: MemoryOrder) -> np.ndarray:
    """Memory laid out in `order` seen as a (c, z, y, x) array."""
    view = stored.transpose(np.argsort(order.axes))
    return view[tuple(slice(None, None, -1) if a in order.reversed else slice(None) for a in range(4))]


class SlabBuffer:
    """A buffer owned by the main process; `close` removes it."""

    def __init__(self, shape: tuple[int, int, int, int], dtype: np.dtype,
                 order: MemoryOrder = MemoryOrder()) -> None:
        fd, path = tempfile.mkstemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=_shm_dir())
        try:
            os.ftruncate(fd, max(math.prod(shape) * np.dtype(dtype).itemsize, 1))
        finally:
            os.close(fd)
        c, z, y, x = shape
        self.ref = SlabRef(path, (c, z, y, x), np.dtype(dtype).str, order)

    def close(self) -> None:
        Path(self.ref.path).unlink(missing_ok=True)


def remove_stale_buffers() -> None:
    """Remove buffers whose owning process is gone (a run that was killed)."""
    for path in _shm_dir().glob(f"{_PREFIX}*"):
        try:
            pid = int(path.name[len(_PREFIX):].split("-")[0])
        except ValueError:
            continue
        if not psutil.pid_exists(pid):
            path.unlink(missing_ok=True)
