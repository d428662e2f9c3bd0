"""Where a band task puts the chunks it encodes: the seam between the engine and the output's
layout. `FileSink` writes one file per chunk; `sharding.spool.ShardSpool` appends chunks to
per-task spool segments and later assembles each shard once all its chunks are in.

A sink is picklable (it travels with every band task) and opened once per task: the writer it
returns may keep a file open for the task's duration. `Completion` is the sink's side in the
main process: told which slabs are complete, it hands back the tasks that became possible
(assembling a shard), so the pipeline runs them on its workers like any other task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..encodings import Compression
from ..encodings.base import Encoded
from ..format.geometry import Box, Scale
from ..stores.base import Store


class ChunkWriter(Protocol):
    def put(self, box: Box, data: Encoded) -> int:
        """Store one chunk's codec bytes; returns the bytes stored."""

    def close(self) -> None:
        """Everything put is in place (a spool segment is committed)."""


class ChunkSink(Protocol):
    def open(self, level: int, scale: Scale, region: Box) -> ChunkWriter:
        """The writer of one band task: the chunks of `region` of scale `level`."""


class Finish(Protocol):
    """Work that a completed set of slabs makes possible, run by a worker."""

    def run(self) -> None: ...


class Completion(Protocol):
    def start(self, done: frozenset[tuple[int, int]]) -> list[Finish]:
        """At the start of a run, given the slabs complete before it: what is owed already."""

    def slab_done(self, level: int, index: int) -> list[Finish]:
        """A slab's chunks are all put: what became possible."""

    def describe(self) -> str:
        """A line for the plan (`--verbose`), or ''."""

    def end(self) -> None:
        """Every slab and finishing task is done: remove what the run kept meanwhile."""


@dataclass(frozen=True)
class FileSink:
    """One file per chunk, `<scale key>/<chunk name>[.gz]`, written whole or not at all."""

    store: Store
    compression: Compression

    def open(self, level: int, scale: Scale, region: Box) -> ChunkWriter:
        return _FileWriter(self.store, self.compression, scale.key)


@dataclass
class _FileWriter:
    """Chunks go to the store `store.can.parallel` at a time (`write_all`: one at a time on a
    local disk, several requests in flight on an object store); at most that many encoded
    chunks are held, as the memory plan counts."""

    store: Store
    compression: Compression
    key: str
    _batch: list[tuple[str, Encoded]] = field(default_factory=list)

    def put(self, box: Box, data: Encoded) -> int:
        stored = self.compression.encode(data)
        self._batch.append((self.compression.key(f"{self.key}/{box.name}"), stored))
        if len(self._batch) >= self.store.can.parallel:
            self._flush()
        return len(stored)

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        self.store.write_all(batch)

    def close(self) -> None:
        self._flush()


class NoCompletion:
    """Plain files are complete when written."""

    def start(self, done: frozenset[tuple[int, int]]) -> list[Finish]:
        return []

    def slab_done(self, level: int, index: int) -> list[Finish]:
        return []

    def describe(self) -> str:
        return ""

    def end(self) -> None:
        return None


def run_finish(task: Finish) -> None:
    """Worker entry point of a `Finish` task."""
    task.run()
