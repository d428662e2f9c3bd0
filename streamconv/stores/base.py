"""What a store is. A store maps keys (`/`-separated paths) to bytes.

Chunks, the `info` and the state of a run (job record, journal, lock) all go through a store,
so that any kind of store (a local directory, an object store, an http server to read from)
carries a whole resumable run. A store declares what it can do (`Capabilities`); callers ask
that instead of recognising a type. Stores are picklable so that worker processes write their
own chunks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from ..encodings.base import Encoded
from ..errors import UsageError


@dataclass(frozen=True)
class Capabilities:
    """What a store can do beyond reading."""

    write: bool = False   # write and delete keys
    list: bool = False    # list the keys below a prefix
    lock: bool = False    # create a key only where none exists: one run per output
    append: bool = False  # append to a key: the journal of a run
    sync: bool = False    # make everything written so far durable: the journal's checkpoints
    durable: bool = False  # a write is durable when it returns (object stores): no checkpoints,
    #                        and what a run recorded outlives the machine that wrote it
    parallel: int = 1     # chunk writes a worker keeps in flight (object stores: hide latency)
    shared: bool = True   # the same store from every process (memory:// is one process's own)
    write_at: bool = False  # write at an offset of a key, from many processes: shards in place


class Store(Protocol):
    url: str
    can: Capabilities

    def write(self, key: str, data: Encoded, durable: bool = False) -> None:
        """Store `data` under `key` atomically: a reader sees the old value or the new, never half.
        `durable`: on disk before this returns, even across a power loss (for info and job
        records; chunks are made durable in batches by the journal)."""

    def write_all(self, items: Iterable[tuple[str, Encoded]]) -> None:
        """`write` each (key, data), up to `can.parallel` at once; `items` is consumed lazily,
        so a caller that encodes in a generator holds at most that many chunks."""

    def read(self, key: str) -> bytes | None:
        """The bytes under `key`, or None when there are none."""

    def read_range(self, key: str, start: int, stop: int) -> bytes | None:
        """Bytes [start, stop) under `key` (a shard is read a few ranges at a time), or None
        when the key is absent."""

    def size(self, key: str) -> int | None:
        """The length of the value under `key`, or None when there is none."""

    def writer(self, key: str) -> StreamWriter:
        """A value written in pieces that appears under `key` whole, at `commit`: a shard file,
        a spool segment; never held in memory whole."""

    def write_at(self, key: str, pieces: Iterable[tuple[int, Encoded]]) -> None:
        """Write each (offset, data) into `key`, creating it (sparse) if absent; other processes
        write other ranges of it meanwhile (a shard whose layout is known ahead). Not atomic:
        the journal says which ranges are whole, as it does for chunk files."""

    def delete(self, key: str) -> None:
        """Remove `key` and everything below it, if present."""

    def list(self, prefix: str = "") -> Iterable[str]:
        """Keys directly below `prefix`."""

    def create(self, key: str, data: bytes) -> bool:
        """Store `data` under `key` unless the key exists (then False): the lock."""

    def append(self, key: str, data: bytes, durable: bool = False) -> None:
        """Append `data` to `key`, creating it: the journal."""

    def sync(self) -> None:
        """Make everything written to the store so far durable."""


class StreamWriter(Protocol):
    def write(self, data: Encoded) -> None: ...

    def copy(self, source: str, start: int, stop: int) -> None:
        """Append bytes [start, stop) of another key of the store (a spooled chunk into its
        shard): on a local disk in the kernel (copy_file_range), never through Python."""

    def commit(self, durable: bool = False) -> None:
        """Put what was written in place under the key, atomically."""

    def abort(self) -> None:
        """Forget what was written."""


def require(store: Store, what: str, why: str) -> None:
    """Refuse a store that cannot do `what` (a member of `Capabilities`), saying why it must."""
    if not getattr(store.can, what):
        raise UsageError(f"{store.url}: this location cannot {why}")
