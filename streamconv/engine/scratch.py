"""Sections decoded once per slab for tiles (docs/design.md, "Tiles"): a source that can only
decode whole sections (PNG, JPEG, WebP) under a tiled plan would decode each section once per
tile. Instead, the first tile of a slab that needs filling has every section of the slab
decoded once (one task per section) into a scratch file on local disk, cut by tile: tile `t`'s
part of every plane lies in one run of the file. The slab's tiles are then filled from that
file (`fill_from_scratch`), and the file is deleted once the last of them is. A tile's part of a
plane that holds one value (background, often a quarter of a histology section) is not written:
its value goes to a small side file (`ScratchSlab.marks`), and the fill sets it.

The planner (`budget._decode_once`) nests tiles only up to a scale `nest`, so the tiles of one
slab lie within 2^nest slabs of the reading order, and the scratch holds at most that many
slabs (plus those in flight) of decoded sections: disk, and the page cache, not the budget.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ..format.geometry import Box, Vec3
from ..sources import Source
from ..sources.base import MemoryOrder
from ..stores import Location
from .buffers import arranged, stored_shape
from .slabgrid import SlabGrid, along
from .tasks import Slab, prepare
from .worklog import take


@dataclass(frozen=True)
class ScratchSlab:
    """Where a slab's decoded sections lie: `tiles` (their boxes, planes [p0, p1)) one after the
    other, each plane after plane, each plane of a tile laid out in `order` (the source's
    `memory_order`: the section is decoded straight into it, as the slab's tile holds it, so a
    plane is read straight into its tile)."""

    path: str
    axis: int
    tiles: tuple[Box, ...]
    item: int  # bytes per voxel, channels included
    order: MemoryOrder = MemoryOrder()

    def _plane(self, t: int) -> int:
        return math.prod(self.tiles[t].shape) // (self.tiles[t].stop[self.axis] - self.tiles[t].start[self.axis])

    def offset(self, t: int, p: int) -> int:
        """Byte of plane `p` of tile `t`."""
        return (self._starts[t] + (p - self.tiles[t].start[self.axis]) * self._plane(t)) * self.item

    @cached_property
    def _starts(self) -> tuple[int, ...]:
        """Each tile's first voxel in the file (asked per plane of every tile)."""
        return tuple(itertools.accumulate((math.prod(b.shape) for b in self.tiles), initial=0))

    @property
    def size(self) -> int:
        return sum(math.prod(b.shape) for b in self.tiles) * self.item

    @property
    def marks(self) -> str:
        """The side file: per tile, per plane, a flag byte and one voxel's bytes; the flag is set
        where that part of the plane holds one value, which is then not in the scratch file."""
        return self.path + ".one"

    @property
    def _planes(self) -> int:
        return self.tiles[0].stop[self.axis] - self.tiles[0].start[self.axis]

    @property
    def marks_size(self) -> int:
        return len(self.tiles) * self._planes * (1 + self.item)

    def mark(self, t: int, p: int) -> int:
        """Byte of the mark of plane `p` of tile `t` (a tile's marks are one run, read at once)."""
        return (t * self._planes + p - self.tiles[t].start[self.axis]) * (1 + self.item)

    def plane(self, t: int, p: int) -> Box:
        box = self.tiles[t]
        return Box(along(self.axis, p, box.start), along(self.axis, p + 1, box.stop))

    def create(self) -> None:
        """The file and its side file at their sizes, sparse: decoding fills them."""
        for path, size in ((self.path, self.size), (self.marks, self.marks_size)):
            with open(path, "wb") as f:
                f.truncate(size)

    def remove(self) -> None:
        """The file and its side file gone (the slab's last tile is filled)."""
        os.unlink(self.path)
        os.unlink(self.marks)

    def drop(self, t: int) -> None:
        """Tile `t` is filled: its part of the file is freed at once (dirty pages the kernel
        would otherwise write to disk while the other tiles wait)."""
        _punch(self.path, self.offset(t, self.tiles[t].start[self.axis]), math.prod(self.tiles[t].shape) * self.item)


def decode_into(source: Source, scratch: ScratchSlab, p: int) -> list[logging.LogRecord]:
    """Decode plane `p` of a source whole, once, and write each tile's part of it."""
    shape = [source.num_channels, *reversed(source.shape)]
    shape[3 - scratch.axis] = 1
    c, z, y, x = shape
    whole = arranged(np.empty(stored_shape((c, z, y, x), scratch.order), source.dtype), scratch.order)
    source.read(p, p + 1, whole)
    origin = along(scratch.axis, p, (0, 0, 0))
    fd, marks = os.open(scratch.path, os.O_WRONLY), os.open(scratch.marks, os.O_WRONLY)
    try:
        # one buffer for every tile's part: a fresh array per tile would map and fault its pages
        parts = [_stored(whole[scratch.plane(t, p).index(origin)], scratch.order) for t in range(len(scratch.tiles))]
        buffer = np.empty(max(part.size for part in parts), source.dtype)
        for t, part in enumerate(parts):
            flat = buffer[:part.size]
            np.copyto(flat.reshape(part.shape), part)
            raw = flat.view(np.uint8)
            if _one_value(raw, scratch.item):
                os.pwrite(marks, b"\x01" + raw[:scratch.item].tobytes(), scratch.mark(t, p))
            else:
                os.pwrite(fd, raw.data, scratch.offset(t, p))
    finally:
        os.close(fd)
        os.close(marks)
    return take()


def _one_value(raw: np.ndarray, item: int) -> bool:
    """Whether every voxel of these bytes (`item` bytes each) equals the first. A sparse sample
    answers for most parts that do not, so tissue costs next to nothing."""
    if raw.size <= item:
        return True
    if not (raw[::4093 * item] == raw[0]).all():
        return False
    return bool(np.array_equal(raw[item:], raw[:-item]))


def fill_from_scratch(scratch: ScratchSlab, t: int, p0: int, p1: int, ref: Slab,
                      origin: Vec3) -> list[logging.LogRecord]:
    """Planes [p0, p1) of tile `t` from the scratch file into its block."""
    slab = ref.array()
    record = 1 + scratch.item
    with open(scratch.marks, "rb") as m:
        marks = os.pread(m.fileno(), (p1 - p0) * record, scratch.mark(t, p0))
    with open(scratch.path, "rb") as f:
        for p in range(p0, p1):
            box = scratch.plane(t, p)
            target = slab[box.index(origin)]
            prepare(ref, target, write=True)
            stored = _stored(target, scratch.order)
            mark = marks[(p - p0) * record:(p - p0 + 1) * record]
            if mark[:1] == b"\x01":  # one value throughout: it is not in the scratch file
                target[...] = np.frombuffer(mark[1:], target.dtype).reshape(-1, 1, 1, 1)
                continue
            at, size = scratch.offset(t, p), stored.nbytes
            if stored.flags.c_contiguous:  # straight into the slab
                into = stored.reshape(-1).view(np.uint8).data
                done = 0
                while done < size:
                    n = os.preadv(f.fileno(), [into[done:]], at + done)
                    if n <= 0:
                        raise EOFError(f"{scratch.path}: ends before byte {at + size}")
                    done += n
            else:
                stored[...] = np.frombuffer(os.pread(f.fileno(), size, at), target.dtype).reshape(stored.shape)
    return take()


def _punch(path: str, start: int, size: int) -> None:
    """Free bytes [start, start + size) of a file (a hole reads as zeros); only a saving: where
    the system or file system cannot, nothing happens."""
    if _libc is None:
        return
    fd = os.open(path, os.O_WRONLY)
    try:
        _libc.fallocate(fd, _PUNCH_HOLE | _KEEP_SIZE, ctypes.c_int64(start), ctypes.c_int64(size))
    finally:
        os.close(fd)


def _load_libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        return libc
    except (OSError, AttributeError):
        return None


_KEEP_SIZE, _PUNCH_HOLE = 0x01, 0x02  # linux/falloc.h
_libc = _load_libc()


def _stored(view: np.ndarray, order: MemoryOrder) -> np.ndarray:
    """A (c, z, y, x) view of memory laid out in `order` as that memory lies (`arranged` undone)."""
    flips = tuple(slice(None, None, -1) if a in order.reversed else slice(None) for a in range(4))
    return view[flips].transpose(order.axes)


@dataclass
class Scratch:
    """The main process's side: which slabs are decoded, which blocks wait for them, and how
    many of each slab's tiles are still to fill."""

    grid: SlabGrid
    source: Source
    root: Path
    done: frozenset[tuple[int, int]]
    _decoding: dict[int, int] = field(default_factory=dict)   # slab -> decode tasks not finished
    _waiting: dict[int, list] = field(default_factory=dict)   # slab -> blocks to fill once decoded
    _left: dict[int, int] = field(default_factory=dict)       # slab -> tiles still to fill

    @classmethod
    def open(cls, grid: SlabGrid, source: Source, url: str, state: str,
             done: frozenset[tuple[int, int]]) -> Scratch:
        """Beside the output's journal on a local output (what a killed run left is removed),
        else in the system's temporary directory; in `STREAMCONV_SCRATCH` if set (a directory on
        another disk, or a tmpfs where the memory is there: benchmarks use it to tell the cost of
        the scratch's trip through the disk's page cache)."""
        location = Location.of(url)
        if os.environ.get("STREAMCONV_SCRATCH"):
            root = Path(tempfile.mkdtemp(prefix="streamconv-scratch-", dir=os.environ["STREAMCONV_SCRATCH"]))
        elif location.is_local:
            root = Path(location.path) / state / "scratch"
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
        else:
            root = Path(tempfile.mkdtemp(prefix="streamconv-scratch-"))
        return cls(grid, source, root, done)

    def tiles_per_slab(self) -> int:
        return self.grid.tiles_per_slab(0)

    def slab_of(self, index: int) -> int:
        return index // self.tiles_per_slab()

    def describe(self, index: int) -> ScratchSlab:
        s, n = self.slab_of(index), self.tiles_per_slab()
        boxes = tuple(self.grid.box(0, i) for i in range(s * n, (s + 1) * n))
        item = self.source.num_channels * self.source.dtype.itemsize
        return ScratchSlab(str(self.root / f"{s}.raw"), self.grid.axis, boxes, item, self.source.memory_order)

    def want(self, block: object, index: int) -> list[tuple]:
        """A block of slab `index // tiles` needs filling: the decode tasks to submit (the
        slab's first such block), else none; True from `ready` once it may be filled."""
        s = self.slab_of(index)
        self._waiting.setdefault(s, []).append(block)
        if s in self._decoding:
            return []
        scratch = self.describe(index)
        scratch.create()
        n = self.tiles_per_slab()
        self._left[s] = sum((0, i) not in self.done for i in range(s * n, (s + 1) * n))
        p0, p1 = self.grid.planes(0, index)
        self._decoding[s] = p1 - p0
        return [(decode_into, self.source.window(p, p + 1), scratch, p) for p in range(p0, p1)]

    def fills(self, index: int, step: int) -> list[tuple[ScratchSlab, int, int, int]]:
        """What the fill tasks of block `index` read: its tile's planes, `step` at a time."""
        scratch, tile = self.describe(index), index % self.tiles_per_slab()
        p0, p1 = self.grid.planes(0, index)
        return [(scratch, tile, p, min(p + step, p1)) for p in range(p0, p1, step)]

    def ready(self, index: int) -> bool:
        return self._decoding.get(self.slab_of(index)) == 0

    def decoded(self, index: int) -> list:
        """A decode task of this slab finished: the blocks that may now be filled."""
        s = self.slab_of(index)
        self._decoding[s] -= 1
        return self._waiting.pop(s, []) if self._decoding[s] == 0 else []

    def filled(self, index: int) -> None:
        """A tile of the slab is filled: its part of the scratch is dropped at once, the file
        with the last."""
        s = self.slab_of(index)
        self._left[s] -= 1
        if self._left[s] == 0:
            self.describe(index).remove()
            return
        self.describe(index).drop(index % self.tiles_per_slab())

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
