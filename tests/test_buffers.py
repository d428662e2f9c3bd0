"""A Dask task's private slab buffers (engine/buffers.py `SpareBuffers`): kept for the next task
of the same size, always handed out as zeros, never more than the room its tasks leave, and
nothing once the process has been idle for a while."""

from __future__ import annotations

import gc
import time

import numpy as np

from streamconv.engine.buffers import SpareBuffers, SpareRoom

MiB = 1 << 20


def test_a_buffer_comes_back_as_zeros_when_its_last_view_dies():
    spare = SpareBuffers(keep=60)
    spare.limit(4 * MiB)
    a = spare.take((4, 256, 1024), np.uint8)
    a[...] = 7
    view = a[1:3, 5:9]
    del a
    gc.collect()
    assert spare.kept() == 0, "a view still holds it: not back yet"
    assert (view == 7).all()
    del view
    gc.collect()
    assert spare.kept() == MiB
    again = spare.take((2, 512, 1024), np.uint8)  # the same bytes in another shape
    assert spare.kept() == 0 and not again.any()
    again[...] = 1
    del again
    kept = spare.take((2, 512, 1024), np.uint8, zeroed=False)  # what it held: for a slab filled whole
    assert (kept == 1).all()
    kept[...] = 0
    del kept
    other = spare.take((2, 512, 1024), np.uint16)  # another size: a buffer of its own
    assert spare.kept() == MiB and not other.any() and other.shape == (2, 512, 1024)
    del other
    assert spare.kept() == 3 * MiB


def test_what_is_kept_stays_within_the_room_the_tasks_leave():
    room = SpareRoom(budget=10 * MiB, need=3 * MiB)
    assert (room.bytes(1), room.bytes(2), room.bytes(4)) == (7 * MiB, 4 * MiB, 0)
    spare = SpareBuffers(keep=60)
    spare.limit(room.bytes(1))
    arrays = [spare.take((n, MiB), np.uint8) for n in (4, 2, 2)]
    del arrays  # back in order: 4 MiB, 2 MiB, then the second 2 MiB, for which the 4 MiB makes way
    assert spare.kept() == 4 * MiB
    big = spare.take((5, MiB), np.uint8)
    del big  # both of 2 MiB make way
    assert spare.kept() == 5 * MiB
    assert spare.take((5, MiB), np.uint8).shape == (5, MiB) and spare.kept() == 0
    spare.limit(room.bytes(4))
    assert spare.kept() == 0


def test_an_idle_process_keeps_nothing():
    spare = SpareBuffers(keep=0.2)
    spare.limit(64 * MiB)
    for _ in range(3):
        a = spare.take((8, MiB), np.uint8)
        a[::4096] = 1
        del a
    assert spare.kept() == 8 * MiB
    deadline = time.monotonic() + 10
    while spare.kept() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spare.kept() == 0


def test_a_buffer_larger_than_the_room_is_not_kept():
    spare = SpareBuffers(keep=60)
    spare.limit(MiB)
    a = spare.take((2, MiB), np.uint8)
    assert not a.any()
    del a
    assert spare.kept() == 0


def test_an_empty_buffer_is_not_kept():
    spare = SpareBuffers(keep=60)
    a = spare.take((0, 16, 16), np.uint32)
    assert a.shape == (0, 16, 16) and a.dtype == np.uint32
    del a
    assert spare.kept() == 0
