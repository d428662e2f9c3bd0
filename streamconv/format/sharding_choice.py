"""How a run chooses each scale's sharding: `off`, `auto` (a shard of about `--shard-size`
bytes of chunk data) or fixed `PRESHIFT,MINISHARD,SHARD` bits.

With the identity hash, the low `preshift + minishard` bits of the compressed Morton code
select a chunk inside its shard, so a shard is an aligned block of 2^b consecutive Morton codes:
a spatially compact box of chunks (the bits go to x, y, z in turn). `auto` makes b as large as
`--shard-size` allows, keeps 2^9 chunks per minishard (TS's heuristic: minishard indexes of
12 KiB) and gives the remaining Morton bits to the shard number, so a scale that fits in one
shard (the small top scales) gets `shard_bits` 0: one file. Chunk data is gzip when the run
gzips its chunks (`--gzip`), raw otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..errors import UsageError
from .geometry import Scale
from .sharding import ShardingSpec, morton_bits

if TYPE_CHECKING:  # info.py reads sharding specs: imported there first
    from .info import VolumeInfo

log = logging.getLogger("streamconv")
MANY_FILES = 100_000  # an unsharded output past this many files gets a suggestion
PRESHIFT_MAX = 9  # 2^9 chunks per minishard: an index of 12 KiB
DEFAULT_SHARD_SIZE = 2 << 30


class Sharding(Protocol):
    """A run's choice of sharding, asked for each scale."""

    def spec(self, scale: Scale, chunk_bytes: int, gzip: bool) -> ShardingSpec | None:
        """The scale's sharding, None for plain chunk files. `chunk_bytes`: one whole chunk
        before compression; `gzip`: the run's --gzip, which gzips the chunks in the shards as
        it gzips chunk files (a chunk in a shard is the bytes its file would hold)."""

    def hashed(self, objects: int) -> ShardingSpec | None:
        """The sharding of `objects` keyed by id (a segmentation's meshes), None for files."""


@dataclass(frozen=True)
class NoSharding:
    def spec(self, scale: Scale, chunk_bytes: int, gzip: bool) -> ShardingSpec | None:
        return None

    def hashed(self, objects: int) -> ShardingSpec | None:
        return None


@dataclass(frozen=True)
class AutoSharding:
    shard_size: int = DEFAULT_SHARD_SIZE

    def spec(self, scale: Scale, chunk_bytes: int, gzip: bool) -> ShardingSpec:
        total = _total_bits(scale)
        b = min(total, max(0, (self.shard_size // max(chunk_bytes, 1)).bit_length() - 1))
        preshift = min(b, PRESHIFT_MAX)
        return ShardingSpec(preshift, b - preshift, total - b, data_encoding=_data(gzip))

    def hashed(self, objects: int) -> ShardingSpec:
        return hashed_spec(objects)


@dataclass(frozen=True)
class FixedSharding:
    preshift_bits: int
    minishard_bits: int
    shard_bits: int

    def spec(self, scale: Scale, chunk_bytes: int, gzip: bool) -> ShardingSpec:
        _total_bits(scale)
        return ShardingSpec(self.preshift_bits, self.minishard_bits, self.shard_bits,
                            data_encoding=_data(gzip))

    def hashed(self, objects: int) -> ShardingSpec:
        """The bits given are for chunk ids of a volume: meshes get the same choice as `auto`."""
        return hashed_spec(objects)


#: objects keyed by hashed ids: a shard index of 8 KiB (512 minishards) and minishard indexes
#: of up to 32 KiB (1365 objects), as igneous sizes them for meshes and skeletons
SHARD_INDEX_BYTES, MINISHARD_INDEX_BYTES = 1 << 13, 1 << 15


def hashed_spec(objects: int) -> ShardingSpec:
    """Sharding for `objects` keyed by uint64 ids (meshes): murmurhash3 spreads the ids evenly,
    so no preshift; as few minishards as keep each index under `MINISHARD_INDEX_BYTES`, then
    as few shards as keep each shard index under `SHARD_INDEX_BYTES` (igneous'
    `compute_shard_params_for_hashed`, without its bias towards fewer, fuller shards: an atlas
    of a few hundred labels is one shard with one minishard). Fragments are Draco, already
    compressed and read by byte range, so data is raw; the minishard indexes are gzipped."""
    per_minishard = MINISHARD_INDEX_BYTES // 24
    minishards_max = SHARD_INDEX_BYTES // 16
    minishards = -(-max(objects, 1) // per_minishard)
    minishard_bits = min((minishards - 1).bit_length(), (minishards_max - 1).bit_length())
    shards = -(-minishards // (1 << minishard_bits))
    return ShardingSpec(0, minishard_bits, (shards - 1).bit_length(), hash="murmurhash3_x86_128",
                        minishard_index_encoding="gzip", data_encoding="raw")


def _data(gzip: bool) -> str:
    """Chunk data is gzip only when the run asked for gzip, as for chunk files: an unsharded
    and a sharded run of the same options do the same work per chunk (the minishard indexes
    are gzip always: they are small, and every reader fetches them)."""
    return "gzip" if gzip else "raw"


def _total_bits(scale: Scale) -> int:
    total = sum(morton_bits(scale.grid))
    if total > 64:
        raise UsageError(f"scale {scale.key}: {scale.num_chunks} chunks need {total} bits of chunk id, "
                         "more than the 64 a sharded volume allows")
    return total


def parse_sharding(text: str, shard_size: int = DEFAULT_SHARD_SIZE) -> Sharding:
    """`--sharding off|auto|PRESHIFT,MINISHARD,SHARD`."""
    if text == "off":
        return NoSharding()
    if text == "auto":
        if shard_size < 1:
            raise UsageError(f"--shard-size must be positive, got {shard_size}")
        return AutoSharding(shard_size)
    return parse_bits(text, "PRESHIFT,MINISHARD,SHARD", "off, auto or ")


def parse_bits(text: str, order: str, also: str = "") -> FixedSharding:
    """Three bit counts, comma-separated in `order` (PRESHIFT, MINISHARD and SHARD named in the
    order they are typed), checked as a `ShardingSpec` would be."""
    try:
        bits = dict(zip(order.split(","), (int(v) for v in text.split(",")), strict=True))
        ShardingSpec(bits["PRESHIFT"], bits["MINISHARD"], bits["SHARD"])
    except ValueError:
        raise UsageError(f"--sharding takes {also}{order} bits "
                         f"(minishard 0-32, shard 0-(64-minishard)), got {text!r}") from None
    return FixedSharding(bits["PRESHIFT"], bits["MINISHARD"], bits["SHARD"])


def chunk_bytes(scale: Scale, channels: int, dtype: np.dtype) -> int:
    """Bytes of one whole chunk of a scale before any encoding."""
    x, y, z = scale.chunk_size
    return x * y * z * channels * np.dtype(dtype).itemsize


def apply_sharding(info: VolumeInfo, choice: Sharding, gzip: bool) -> VolumeInfo:
    """The info with each scale's sharding as `choice` decides it, chunk data gzip when the
    run gzips (`--gzip`); an unsharded output of more than `MANY_FILES` chunk files gets a
    warning that suggests `--sharding auto`."""
    codec = info.scales[0].codec
    specs = [choice.spec(s, chunk_bytes(s, info.num_channels, info.dtype), gzip) for s in info.geometry]
    files = sum(s.num_chunks for s, spec in zip(info.geometry, specs) if spec is None)
    if files > MANY_FILES:
        log.warning("this output will hold %d chunk files (%s); --sharding auto packs each scale "
                    "into a few shard files", files, codec.name)
    return info.with_sharding(specs)
