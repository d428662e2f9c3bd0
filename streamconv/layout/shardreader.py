"""Reading a sharded scale by chunk: from its shard files (ours or any other writer's), and,
for a run in progress, from the spool where chunks wait until their shard is assembled (a
resume replays complete slabs whose shard is not written yet)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..format.geometry import Box, Scale
from ..format.sharding import ShardingSpec, chunk_id
from ..stores.base import Store
from .shardfile import Entry, ShardReader, decode
from .spool import shard_folder, spooled


@dataclass
class ShardedScaleReader:
    store: Store
    scale: Scale
    spec: ShardingSpec
    spool: str | None = None  # the spool's key prefix of a run in progress
    _shards: ShardReader = field(init=False)
    _spooled: dict[int, dict[int, Entry]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._shards = ShardReader(self.store, self.scale.key, self.spec)

    def read(self, box: Box) -> bytes | None:
        """The stored bytes of a chunk (data encoding undone), or None when absent."""
        cid = chunk_id(self.scale, box)
        data = self._shards.read(cid)
        if data is not None or self.spool is None:
            return data
        shard, minishard = self.spec.locate(cid)
        entry = self._spool(shard).get(cid)
        if entry is not None:
            raw = self.store.read_range(entry.source, entry.offset, entry.offset + entry.size)
            if raw is not None and len(raw) == entry.size:
                return decode(raw, self.spec.data_encoding, entry.source)
        # Assembled meanwhile (its spool deleted): read the shard file afresh.
        self._spooled.pop(shard, None)
        self._shards.forget(shard, minishard)
        return self._shards.read(cid)

    def _spool(self, shard: int) -> dict[int, Entry]:
        if shard not in self._spooled:
            assert self.spool is not None
            folder = shard_folder(self.spool, self.scale, self.spec, shard)
            self._spooled[shard] = {e.chunk_id: e for e in spooled(self.store, folder)}
        return self._spooled[shard]
