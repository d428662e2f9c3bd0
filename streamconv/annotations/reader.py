"""Reading a collection back (`verify`, the viewer's checks): an index by key, files or shards
(through the volumes' `ShardReader`), one value or every value."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from ..format.sharding import ShardingSpec
from ..layout.shardfile import ShardReader, decode
from ..stores.base import Store
from .info import ANNOTATIONS_TYPE
from .spatial import Level


def read_collection_info(store: Store) -> dict | None:
    """The info of an annotation collection; None when the store holds none (or a volume)."""
    raw = store.read("info")
    if raw is None:
        return None
    try:
        info = json.loads(raw)
    except ValueError:
        return None
    return info if isinstance(info, dict) and info.get("@type") == ANNOTATIONS_TYPE else None


@dataclass
class IndexReader:
    """One index of a collection: by_id, a relationship or a spatial level (`level`: its grid,
    whose files are named by cell and whose keys are Morton codes)."""

    store: Store
    key: str
    sharding: dict | None
    level: Level | None = None

    def __post_init__(self) -> None:
        self._shards = None if self.sharding is None else \
            ShardReader(self.store, self.key, ShardingSpec.parse(self.sharding))

    def _name(self, key: int) -> str:
        if self.level is None:
            return str(key)
        return "_".join(str(int(c)) for c in self.level.unmorton(np.array([key], np.uint64))[0])

    def get(self, key: int) -> bytes | None:
        if self._shards is not None:
            return self._shards.read(key)
        return self.store.read(f"{self.key}/{self._name(key)}")

    def items(self) -> Iterator[tuple[int, bytes]]:
        """Every (key, value) of the index."""
        if self._shards is None:
            for name in self.store.list(self.key):
                leaf = name.rsplit("/", 1)[-1]
                if leaf.startswith("."):
                    continue
                try:
                    key = int(leaf) if self.level is None else \
                        int(self.level.morton(np.array([[int(c) for c in leaf.split("_")]]))[0])
                except ValueError:
                    raise DataError(f"{self.store.url}/{name}: not a key of this index") from None
                yield key, self.store.read(name) or b""
            return
        spec = self._shards.spec
        for name in self.store.list(self.key):
            leaf = name.rsplit("/", 1)[-1]
            if not leaf.endswith(".shard"):
                continue
            shard = int(leaf[:-6], 16)
            data = self.store.read(name) or b""  # one shard at a time: a read per value is slow
            for minishard in range(spec.minishards):
                for key, (start, stop) in sorted(self._shards.index(shard, minishard).items()):
                    if stop > len(data):
                        raise DataError(f"{self.store.url}/{name}: shorter than its index says")
                    yield key, decode(data[start:stop], spec.data_encoding, f"{self.store.url}/{name}")


def multiple(data: bytes, record_size: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The records ((n, R) uint8) and ids of a multiple-annotation value (format notes 9.5)."""
    n = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if n < 0 or len(data) != 8 + n * (record_size + 8):
        raise DataError(f"{where}: {len(data)} bytes, not a list of annotations of {record_size} bytes")
    records = np.frombuffer(data, np.uint8, n * record_size, 8).reshape(n, record_size)
    return records, np.frombuffer(data, "<u8", n, 8 + n * record_size).astype(np.uint64)
