"""The segments a mesh directory holds meshes of, which `view` shows when it opens: found by
the directory's format (its info's `@type`), from file names or, sharded, from the shard files'
minishard indexes (`layout/shardfile.ShardReader`, as volumes' shards are read)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Protocol

from ..errors import DataError
from ..format.sharding import ShardingSpec
from ..layout.shardfile import ShardReader
from ..meshing.legacy import LEGACY_INFO, LEGACY_MANIFEST
from ..meshing.multilod import MULTILOD_INFO, MULTILOD_MANIFEST


class MeshDirectory(Protocol):
    """What listing needs of a served dataset (`view.Served`)."""

    url: str

    def read(self, key: str) -> bytes | None: ...

    def read_range(self, key: str, start: int, stop: int) -> bytes | None: ...

    def list(self, prefix: str) -> Iterator[str]: ...


#: the name of a label's manifest, after its id, in each mesh format whose labels have files of
#: their own (`@type` of the mesh directory's info)
MANIFESTS = {LEGACY_INFO["@type"]: LEGACY_MANIFEST, MULTILOD_INFO: MULTILOD_MANIFEST}


MAX_MINISHARDS = 4096  # minishard indexes read to list a sharded directory's segments


def mesh_segments(dataset: MeshDirectory, mesh_key: str, limit: int = 1000) -> list[str]:
    """The segments that have a mesh (their manifests: legacy `<id>:0`, multi-resolution
    `<id>.index`, or the ids a sharded directory's minishard indexes hold), shown when the view
    opens: the lowest `limit` of them (sharded: the first `limit` found, shard by shard)."""
    try:
        mesh_info = json.loads(dataset.read(f"{mesh_key}/info") or b"{}")
    except ValueError:
        return []
    if not isinstance(mesh_info, dict):
        return []
    if mesh_info.get("sharding") is not None:
        return [str(i) for i in sorted(sharded_segments(dataset, mesh_key, mesh_info["sharding"], limit))]
    suffix = MANIFESTS.get(mesh_info.get("@type", LEGACY_INFO["@type"]))
    if suffix is None:
        return []
    found: list[str] = []
    for key in dataset.list(mesh_key):
        name = key.rsplit("/", 1)[-1]
        if name.endswith(suffix) and name[:-len(suffix)].isdigit():
            found.append(name[:-len(suffix)])
    return sorted(found, key=int)[:limit]


def sharded_segments(dataset: MeshDirectory, mesh_key: str, sharding: object, limit: int) -> set[int]:
    """Up to `limit` ids that the shard files of a sharded mesh directory hold (their minishard
    indexes: a few small reads per minishard, `MAX_MINISHARDS` at most, since an info from anyone
    may declare 2**32 of them); none where the sharding or a shard is not readable."""
    try:
        spec = ShardingSpec.parse(sharding)
    except ValueError:
        return set()
    reader, found, left = ShardReader(dataset, mesh_key, spec), set[int](), MAX_MINISHARDS
    for key in dataset.list(mesh_key):
        name = key.rsplit("/", 1)[-1]
        try:
            shard = int(name.removesuffix(".shard"), 16) if name.endswith(".shard") else None
        except ValueError:
            continue
        if shard is None or spec.file_name(shard) != name:
            continue
        for minishard in range(spec.minishards):
            try:
                found.update(reader.index(shard, minishard))
            except DataError:
                break  # a damaged shard: the view shows what the others hold
            left -= 1
            if len(found) >= limit or not left:
                return set(sorted(found)[:limit])
    return found
