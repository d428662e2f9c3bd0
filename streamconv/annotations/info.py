"""The collection's `info` (format notes 9.2), written last."""

from __future__ import annotations

from typing import Any

from .plan import BY_ID, RELATED, SPATIAL, Index, Plan

ANNOTATIONS_TYPE = "neuroglancer_annotations_v1"


def _sharding(index: Index) -> dict[str, Any]:
    return {"sharding": index.spec.to_dict()} if index.sharded else {}


def collection_info(plan: Plan, largest: dict[Index, int]) -> dict[str, Any]:
    """`largest`: per index, the most annotations one of its values holds (a level's limit)."""
    schema = plan.schema
    spatial = []
    for index in plan.indexes:
        if index.kind == SPATIAL:
            level = plan.levels[index.group]
            spatial.append({"key": index.key, "grid_shape": list(level.grid), "chunk_size": list(level.chunk),
                            "limit": max(1, largest.get(index, 0)), **_sharding(index)})
    by_id = plan.index(BY_ID, 0)
    return {
        "@type": ANNOTATIONS_TYPE,
        "dimensions": {axis: [r / 1e9, "m"] for axis, r in zip("xyz", plan.resolution)},
        "lower_bound": list(plan.lower),
        "upper_bound": list(plan.upper),
        "annotation_type": schema.type.name,
        "properties": [p.info() for p in schema.properties],
        "relationships": [{"id": rel.id, "key": rel.key, **_sharding(plan.index(RELATED, r))}
                          for r, rel in enumerate(schema.relationships)],
        "by_id": {"key": by_id.key, **_sharding(by_id)},
        "spatial": spatial,
    }
