"""The `sharding` member of a scale (format notes 5): a frozen, checked `ShardingSpec`, and how
a volume chunk becomes a shard and a minishard (compressed Morton code, then the hash).

How the parameters are chosen lives in `choice.py`; the bytes of a shard file in `shardfile.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .geometry import Box, Scale, Vec3
from .murmur import murmurhash3_x86_128_low64

SHARDED = "neuroglancer_uint64_sharded_v1"
ENCODINGS = ("raw", "gzip")
MASK64 = (1 << 64) - 1


def _identity(value: int) -> int:
    return value


#: the hash functions of the format, by the name the `info` gives them
HASHES: dict[str, Callable[[int], int]] = {"identity": _identity,
                                           "murmurhash3_x86_128": murmurhash3_x86_128_low64}


@dataclass(frozen=True)
class ShardingSpec:
    """A scale's `neuroglancer_uint64_sharded_v1` parameters."""

    preshift_bits: int
    minishard_bits: int
    shard_bits: int
    hash: str = "identity"
    minishard_index_encoding: str = "gzip"
    data_encoding: str = "gzip"

    def __post_init__(self) -> None:
        if self.hash not in HASHES:
            raise ValueError(f"sharding hash {self.hash!r} is not one of {', '.join(HASHES)}")
        for name in ("minishard_index_encoding", "data_encoding"):
            if getattr(self, name) not in ENCODINGS:
                raise ValueError(f"sharding {name} {getattr(self, name)!r} is not raw or gzip")
        if not 0 <= self.preshift_bits <= 64 or not 0 <= self.minishard_bits <= 32 \
                or not 0 <= self.shard_bits <= 64 - self.minishard_bits:
            raise ValueError(f"sharding bits out of range: preshift {self.preshift_bits}, "
                             f"minishard {self.minishard_bits}, shard {self.shard_bits}")

    @property
    def minishards(self) -> int:
        return 1 << self.minishard_bits

    def locate(self, chunk_id: int) -> tuple[int, int]:
        """(shard, minishard) of a chunk id (format notes 5.2)."""
        shifted = chunk_id >> self.preshift_bits if self.preshift_bits < 64 else 0
        hashed = HASHES[self.hash](shifted)
        minishard = hashed & (self.minishards - 1)
        return (hashed >> self.minishard_bits) & ((1 << self.shard_bits) - 1), minishard

    def shard_numbers(self, ids: np.ndarray) -> np.ndarray:
        """The shard of each of many chunk ids (uint64), at once for the identity hash."""
        shifted = ids >> np.uint64(self.preshift_bits) if self.preshift_bits < 64 else ids * np.uint64(0)
        if self.hash != "identity":
            return np.array([self.locate(int(i))[0] for i in ids], np.uint64)
        return (shifted >> np.uint64(self.minishard_bits)) & np.uint64((1 << self.shard_bits) - 1)

    def file_name(self, shard: int) -> str:
        """`<hex>.shard`, lowercase, zero-padded to ceil(shard_bits / 4) digits."""
        digits = -(-self.shard_bits // 4)
        return f"{shard:0{digits}x}.shard" if digits else f"{shard:x}.shard"

    def to_dict(self) -> dict:
        return {"@type": SHARDED, "preshift_bits": self.preshift_bits, "hash": self.hash,
                "minishard_bits": self.minishard_bits, "shard_bits": self.shard_bits,
                "minishard_index_encoding": self.minishard_index_encoding,
                "data_encoding": self.data_encoding}

    @classmethod
    def parse(cls, raw: Any) -> ShardingSpec:
        """The spec of an info's `sharding` member; ValueError names what is wrong."""
        if not isinstance(raw, dict) or raw.get("@type") != SHARDED:
            raise ValueError(f"sharding {raw!r} is not a {SHARDED} object")
        bits = [raw.get(k) for k in ("preshift_bits", "minishard_bits", "shard_bits")]
        preshift, minishard, shard = (b if isinstance(b, int) and not isinstance(b, bool) else -1
                                      for b in bits)
        if min(preshift, minishard, shard) < 0:
            raise ValueError(f"sharding bits {bits} are not integers of 0 or more")
        return cls(preshift, minishard, shard, raw.get("hash", ""),
                   raw.get("minishard_index_encoding", "raw"), raw.get("data_encoding", "raw"))


def morton_bits(grid: Vec3) -> Vec3:
    """Bits of each grid coordinate in the compressed Morton code (format notes 5.6)."""
    x, y, z = ((g - 1).bit_length() for g in grid)
    return x, y, z


def chunk_id(scale: Scale, box: Box) -> int:
    """The compressed Morton code of the chunk `box` of `scale`."""
    cell = [(a - o) // c for a, o, c in zip(box.start, scale.voxel_offset, scale.chunk_size)]
    bits = morton_bits(scale.grid)
    code = j = 0
    for i in range(max(bits)):
        for d in range(3):
            if i < bits[d]:
                code |= ((cell[d] >> i) & 1) << j
                j += 1
    return code


def chunk_ids(grid: Vec3) -> tuple[np.ndarray, np.ndarray]:
    """The compressed Morton code of every cell of a grid, and each cell's (x, y, z), in C
    order of (z, y, x): for a whole scale at once."""
    gz, gy, gx = np.meshgrid(*(np.arange(g, dtype=np.uint64) for g in grid[::-1]), indexing="ij")
    cells = [gx.ravel(), gy.ravel(), gz.ravel()]
    bits = morton_bits(grid)
    codes = np.zeros(cells[0].shape, np.uint64)
    j = 0
    for i in range(max(bits)):
        for d in range(3):
            if i < bits[d]:
                codes |= ((cells[d] >> np.uint64(i)) & np.uint64(1)) << np.uint64(j)
                j += 1
    return codes, np.stack(cells)


def shard_files(scale: Scale, spec: ShardingSpec) -> int:
    """How many shard files a scale has: the shards that hold at least one of its chunks."""
    return len(np.unique(spec.shard_numbers(chunk_ids(scale.grid)[0])))
