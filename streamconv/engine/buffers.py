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
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

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

    resident: ClassVar[bool] = False  # mapped anew by each task that uses it

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

    resident: ClassVar[bool] = True  # mapped already, or in huge pages (`SpareBuffers.take`)

    data: np.ndarray

    @classmethod
    def new(cls, shape: tuple[int, int, int, int], dtype: np.dtype | str, order: MemoryOrder = MemoryOrder(),
            zeroed: bool = True) -> PrivateSlab:
        """A slab in a buffer of this process's own (`SPARE`): zeros, or unless `zeroed` what
        the buffer held (a slab whose fill covers it whole, as the local engine reuses its
        shared slabs)."""
        return cls(arranged(SPARE.take(stored_shape(shape, order), dtype, zeroed), order))

    def array(self) -> np.ndarray:
        return self.data


@dataclass(frozen=True)
class SpareRoom:
    """What a worker may keep between its tasks (`SpareBuffers`): the room the run was planned
    within per task (a thread's share of the worker), less what its largest task needs."""

    budget: int = 0
    need: int = 0

    def bytes(self, threads: int) -> int:
        """For a worker of `threads` threads: its room is at least `budget` (a stock worker's is
        `budget` for each thread, `rooms.py`), its threads' tasks take up to `need` each at
        once, and what is kept must fit in what they leave."""
        return max(0, self.budget - threads * self.need)


class SpareBuffers:
    """A process's private slab buffers, kept from one task to the next for a few seconds: a
    Dask worker's tasks each need a slab (and its downsampled target) of the same few sizes.

    Why not `np.zeros` per task: numpy asks the kernel for huge pages for every array of 4 MiB
    or more, and in a slab, whose planes lie a power of two apart, the rows of one chunk then
    share a few cache sets: cutting chunks out of a 1 GiB volume took 0.62 s in huge pages
    against 0.29 s in small ones. A fresh mapping in small pages costs a page fault per 4 KiB
    instead (more than that saving); one kept from the last task costs neither, as the local
    engine's shared slabs, which its pool reuses (docs/benchmarks.md, issue 26).

    A buffer comes back when the last view of its array dies. What is kept stays within
    `limit` (set by each task from its `SpareRoom`; others of another size make way), and all
    is dropped after `keep` seconds without a request, so that an idle worker holds no slab."""

    def __init__(self, keep: float = 2.0) -> None:
        self._keep = keep
        self._limit = 0
        self._free: dict[int, list[mmap.mmap]] = {}  # by size, the oldest first
        self._lock = threading.RLock()  # an array's finalizer may run inside `take`, on this thread
        self._timer: threading.Timer | None = None

    def limit(self, nbytes: int) -> None:
        """Keep at most this many bytes from now on."""
        with self._lock:
            self._limit = nbytes
            self._fit(0, -1)

    def take(self, shape: tuple[int, ...], dtype: np.dtype | str, zeroed: bool = True) -> np.ndarray:
        """A buffer of `shape`: zeros, or unless `zeroed` what a kept one held."""
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        if nbytes == 0 or nbytes > self._limit:  # never kept: numpy's, whose huge pages fault once per 2 MiB
            return np.zeros(shape, dtype)
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            kept = self._free.get(nbytes)
            mm = kept.pop() if kept else None
        if mm is None:
            a = np.ndarray(shape, dtype, buffer=mmap.mmap(-1, nbytes))
            populate(a, write=True)
        else:
            a = np.ndarray(shape, dtype, buffer=mm)
            if zeroed:
                a.fill(0)
        weakref.finalize(a, self._give_back, a.base)
        return a

    def _give_back(self, mm: mmap.mmap) -> None:
        with self._lock:
            if not self._fit(len(mm), len(mm)):
                return  # no room: unmapped as its last reference goes
            self._free.setdefault(len(mm), []).append(mm)
            if self._timer is None:
                self._timer = threading.Timer(self._keep, self.drop)
                self._timer.daemon = True
                self._timer.start()

    def _fit(self, more: int, size: int) -> bool:
        """Drop kept buffers of sizes other than `size` until `more` bytes fit; whether they do."""
        for other in [n for n in self._free if n != size]:
            if self.kept() + more <= self._limit:
                break
            del self._free[other]
        return self.kept() + more <= self._limit

    def drop(self) -> None:
        """Unmap every kept buffer (each is unmapped as its last reference goes)."""
        with self._lock:
            self._free.clear()
            self._timer = None

    def kept(self) -> int:
        """Bytes kept for the next task."""
        with self._lock:
            return sum(len(mm) for kept in self._free.values() for mm in kept)


SPARE = SpareBuffers()


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
