"""Sharded multi-resolution meshes (format notes 5 and 6.4): the mesh directory holds shard
files keyed by segment id (murmurhash3, `sharding.choice.hashed_spec`); a segment's "chunk" is
its manifest, and its fragment data is stored, never compressed, immediately before the
manifest, where Neuroglancer finds it from the manifest's own sizes (`shard offset of the
manifest - sum of the fragment sizes`).

A shard holds labels from all over the volume, so it can only be written once every label of
it is assembled. Label tasks therefore spool each label's entry (fragments, then manifest) to
`SPOOL/<shard file>/<label>`, a value that appears whole or not at all; once every label is
assembled, one task per shard writes the shard file with the shard writer of the volumes
(`shardfile.write_shard`, the fragments as each entry's prefix) and deletes its spool. Memory
is one label's mesh per worker, and one entry at a time in a shard task; disk holds the spool
(about the size of the meshes) until its shard is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..format.sharding import ShardingSpec
from ..layout.dataset import Dataset
from ..layout.shardfile import Entry, encode_data, write_shard
from ..stores.base import Store
from .assemble import multilod, multilod_info
from .blocks import MESH_STATE, BlockGrid, Part

SPOOL = f"{MESH_STATE}/spool/shards"
HEADER = 8  # a spooled entry starts with the length of its fragment data (uint64le)


@dataclass(frozen=True)
class ShardedMultilod:
    """A `LabelWriter` whose labels go to shard files (through the spool)."""

    directory: str
    levels: int
    spec: ShardingSpec

    def _spooled(self, label: int) -> str:
        return f"{SPOOL}/{self.spec.file_name(self.spec.locate(label)[0])}/{label}"

    def done(self, store: Store, label: int) -> bool:
        shard = f"{self.directory}/{self.spec.file_name(self.spec.locate(label)[0])}"
        return store.size(self._spooled(label)) is not None or store.size(shard) is not None

    def write(self, volume: Dataset, grid: BlockGrid, label: int, parts: list[Part]) -> int:
        data, manifest = multilod(grid, self.levels, parts)
        manifest = encode_data(manifest, self.spec.data_encoding)  # the fragments: never
        volume.store.write(self._spooled(label), len(data).to_bytes(HEADER, "little") + data + manifest)
        return len(data) + len(manifest)

    def info(self, volume: Dataset) -> dict:
        return {**multilod_info(volume), "sharding": self.spec.to_dict()}

    def last_tasks(self, store: Store, labels: np.ndarray) -> list[tuple[Any, ...]]:
        """One task per shard that holds a label."""
        shards = sorted({self.spec.locate(label)[0] for label in labels.tolist()})
        return [(write_mesh_shard, store, self, shard) for shard in shards]


def write_mesh_shard(store: Store, writer: ShardedMultilod, shard: int) -> int:
    """A worker's task: the shard file from the spooled labels, then their spool deleted. A
    shard file that exists is complete (written durable before its spool goes)."""
    target = f"{writer.directory}/{writer.spec.file_name(shard)}"
    folder = f"{SPOOL}/{writer.spec.file_name(shard)}"
    size = 0
    if store.size(target) is None:
        entries = sorted((_entry(store, key) for key in store.list(folder)
                          if not key.rsplit("/", 1)[-1].startswith(".")),  # half-written, killed
                         key=lambda e: e.chunk_id)
        if entries:
            size = write_shard(store, target, writer.spec, entries)
    store.delete(folder)
    return size


def _entry(store: Store, key: str) -> Entry:
    total = store.size(key) or 0
    fragments = int.from_bytes(store.read_range(key, 0, HEADER) or bytes(HEADER), "little")
    return Entry(int(key.rsplit("/", 1)[-1]), total - HEADER - fragments, key, HEADER, fragments)

