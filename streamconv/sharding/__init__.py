"""Sharded output (`neuroglancer_uint64_sharded_v1`): the spec and its hashing (`spec.py`,
`murmur.py`), the choice of parameters (`choice.py`), the bytes of a shard file
(`shardfile.py`), raw shards laid out ahead and written in place (`inplace.py`), the streaming
writer that spools other chunks until their shard is complete (`spool.py`), and reading shards
back (`reader.py`)."""

from .choice import AutoSharding, FixedSharding, NoSharding, Sharding, apply_sharding, chunk_bytes, parse_sharding
from .spec import ShardingSpec, chunk_id

__all__ = ["apply_sharding", "AutoSharding", "FixedSharding", "NoSharding", "Sharding", "ShardingSpec", "chunk_bytes",
           "chunk_id", "parse_sharding"]
