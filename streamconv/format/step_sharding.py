"""`volume-to-precomputed --sharding`, as neuroglancer-scripts has it: with `--generate-info`
the sharding goes into `info_fullres.json`, generate-scales-info gives every scale that
sharding (neuroglancer-scripts copies the full-resolution scale's members into each scale),
and the chunks are written sharded as the info says.

The bits are given in neuroglancer-scripts' order, MINISHARD,SHARD,PRESHIFT, so that its
command lines mean what they meant there (`convert --sharding` takes PRESHIFT,MINISHARD,SHARD).
"""

from __future__ import annotations

from ..errors import UsageError
from .info import FullresInfo, VolumeInfo
from .sharding import ShardingSpec
from .sharding_choice import FixedSharding, chunk_bytes, parse_bits

ORDER = "MINISHARD,SHARD,PRESHIFT"


def parse_step_sharding(text: str) -> FixedSharding:
    """`--sharding MINISHARD,SHARD,PRESHIFT` bits, neuroglancer-scripts' order."""
    return parse_bits(text, ORDER)


def fullres_sharded(full: FullresInfo, text: str, gzip: bool) -> FullresInfo:
    """`info_fullres.json` with the sharding of `--sharding` (chunk data gzip with --gzip)."""
    sharding = parse_step_sharding(text)
    spec = ShardingSpec(sharding.preshift_bits, sharding.minishard_bits, sharding.shard_bits,
                        data_encoding="gzip" if gzip else "raw")
    return FullresInfo(full.type, full.data_type, full.num_channels, full.size, full.resolution,
                       {**full.encoding, "sharding": spec.to_dict()})


def scales_sharded_as(info: VolumeInfo, full: FullresInfo, where: str) -> VolumeInfo:
    """Every scale sharded as the full-resolution info says (unchanged when it says nothing)."""
    if "sharding" not in full.encoding:
        return info
    try:
        spec = ShardingSpec.parse(full.encoding["sharding"])
    except ValueError as exc:
        raise UsageError(f"{where}: {exc}") from None
    fixed = FixedSharding(spec.preshift_bits, spec.minishard_bits, spec.shard_bits)
    for scale in info.geometry:  # each scale's chunk ids must fit 64 bits
        fixed.spec(scale, chunk_bytes(scale, info.num_channels, info.dtype), False)
    return info.with_sharding([spec] * len(info.scales))


def check_written_sharding(info: VolumeInfo, text: str, where: str) -> None:
    """The chunks are written as the info says: `--sharding` on the writing step must say the
    same (neuroglancer-scripts writes shards when either asks for them)."""
    sharding = parse_step_sharding(text)
    spec = info.scales[0].sharding
    wanted = (sharding.preshift_bits, sharding.minishard_bits, sharding.shard_bits)
    if spec is None or (spec.preshift_bits, spec.minishard_bits, spec.shard_bits) != wanted:
        said = "is not sharded" if spec is None else \
            f"is sharded as {spec.minishard_bits},{spec.shard_bits},{spec.preshift_bits}"
        raise UsageError(f"{where}: its full-resolution scale {said}, --sharding says {text} "
                         f"({ORDER}); run volume-to-precomputed --generate-info --sharding {text} "
                         "and generate-scales-info again, or leave --sharding out")
