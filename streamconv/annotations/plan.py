"""The plan of a collection, fixed once the table is read (and kept in the job's state, so a
resumed run writes the same bytes): its schema, bounds, levels, and its indexes, each with the
sharding spec that partitions it.

Every index is partitioned by a `ShardingSpec` whether or not it is written sharded: the
write tasks are one per shard number, so that an unsharded index of ten million ids is written
by many bounded tasks too. Sharded (`--sharding auto`, the default): an index of at least
`MIN_SHARDED` keys; by_id and relationships keyed by id, murmurhash3 (`hashed_spec`, as the
meshes); spatial levels by compressed Morton code, identity hash, the volumes' `AutoSharding`
rule on a grid of cells (`--sharding off`: files, one per key).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..format.geometry import Scale
from ..format.sharding import ShardingSpec
from ..format.sharding_choice import AutoSharding, Sharding, hashed_spec
from .hashing import murmur64
from .schema import Schema
from .spatial import Level

BY_ID, SPATIAL, RELATED = "by_id", "spatial", "related"  # the three kinds of index
MIN_SHARDED = 1024  # keys: fewer stay files, which any reader reads


@dataclass(frozen=True)
class Index:
    """One directory of the output: its kind, its number among its kind (level,
    relationship), its key, the spec that partitions it, and whether it is written sharded."""

    kind: str
    group: int
    key: str
    spec: ShardingSpec
    sharded: bool

    def order(self, keys: np.ndarray) -> np.ndarray:
        """shard << minishard_bits | minishard of each key (uint64): sorting by it, then by
        key, lays the entries out as the shard files hold them."""
        s = self.spec
        shifted = keys >> np.uint64(s.preshift_bits) if s.preshift_bits < 64 else np.zeros_like(keys)
        hashed = murmur64(shifted) if s.hash == "murmurhash3_x86_128" else shifted
        width = s.minishard_bits + s.shard_bits
        return hashed & np.uint64((1 << width) - 1) if width < 64 else hashed

    def to_dict(self) -> dict:
        return {"kind": self.kind, "group": self.group, "key": self.key, "spec": self.spec.to_dict(),
                "sharded": self.sharded}

    @classmethod
    def from_dict(cls, raw: dict) -> Index:
        return cls(raw["kind"], raw["group"], raw["key"], ShardingSpec.parse(raw["spec"]), raw["sharded"])


def hashed_index(kind: str, group: int, key: str, keys: int, sharding: Sharding) -> Index:
    spec = hashed_spec(keys)
    return Index(kind, group, key, spec, sharding.hashed(keys) is not None and keys >= MIN_SHARDED)


def spatial_index(group: int, level: Level, cells: int, cell_bytes: int, shard_size: int,
                  sharding: Sharding) -> Index:
    """Identity hash over Morton codes, shards of about `shard_size` bytes (the volumes'
    rule, a cell as a chunk)."""
    grid = Scale(f"spatial/{group}", level.grid, (1.0, 1.0, 1.0), (1, 1, 1), (1, 1, 1))
    spec = AutoSharding(shard_size).spec(grid, max(cell_bytes, 1), False)
    return Index(SPATIAL, group, f"spatial/{group}", spec,
                 sharding.hashed(cells) is not None and cells >= MIN_SHARDED)


@dataclass(frozen=True)
class Plan:
    """Everything the encode and write tasks need, and the info's geometry."""

    schema: Schema
    remaps: dict[str, list[int]]
    lower: tuple[float, float, float]
    upper: tuple[float, float, float]
    resolution: tuple[float, float, float]  # nm per coordinate unit, per axis
    levels: tuple[Level, ...]
    starts: tuple[float, ...]  # each level's T_L (spatial.thresholds)
    seed: int
    indexes: tuple[Index, ...]
    pieces: int
    rows: int

    def index(self, kind: str, group: int) -> Index:
        return next(i for i in self.indexes if i.kind == kind and i.group == group)

    def remap(self, prop: str) -> np.ndarray | None:
        return np.asarray(self.remaps[prop], np.uint32) if prop in self.remaps else None

    def to_dict(self) -> dict:
        return {"schema": self.schema.to_dict(), "remaps": self.remaps, "lower": self.lower,
                "upper": self.upper, "resolution": self.resolution,
                "levels": [[lv.grid, lv.chunk] for lv in self.levels], "starts": self.starts,
                "seed": self.seed, "indexes": [i.to_dict() for i in self.indexes],
                "pieces": self.pieces, "rows": self.rows}

    @classmethod
    def from_dict(cls, raw: dict) -> Plan:
        return cls(Schema.from_dict(raw["schema"]), raw["remaps"], tuple(raw["lower"]),
                   tuple(raw["upper"]), tuple(raw["resolution"]),
                   tuple(Level(tuple(g), tuple(c)) for g, c in raw["levels"]),
                   tuple(raw["starts"]), raw["seed"], tuple(Index.from_dict(i) for i in raw["indexes"]),
                   raw["pieces"], raw["rows"])
