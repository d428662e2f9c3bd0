"""The info a legacy mesh is added to: a volume's, or one that describes no volume yet.

neuroglancer-scripts' mesh-to-precomputed only adds its `mesh` member to the info it finds, so
scripts (its own tests among them) start a dataset of meshes alone from `{"type":
"segmentation", "scales": []}`. Such an info, one without scales, is kept as it is, member for
member, and gets its `mesh`; any other info must be a valid volume's (`VolumeInfo.parse`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from ..errors import DataError
from .info import VOLUME_TYPES, VolumeInfo


@dataclass(frozen=True)
class ScalelessInfo:
    """An info without scales: its members in order; `geometry` (empty), `get`, `type`,
    `with_member` and `to_json` as a `VolumeInfo` has them."""

    members: tuple[tuple[str, Any], ...]

    @property
    def geometry(self) -> list:
        """No scales: no voxel grid of its own (what `VolumeInfo.geometry` lists)."""
        return []

    @property
    def type(self) -> str:
        return str(self.get("type", "image"))

    def get(self, member: str, default: Any = None) -> Any:
        return dict(self.members).get(member, default)

    def with_member(self, member: str, value: Any) -> ScalelessInfo:
        return replace(self, members=tuple({**dict(self.members), member: value}.items()))

    def to_json(self) -> bytes:
        return json.dumps(dict(self.members)).encode()


def parse_mesh_info(data: bytes, where: str) -> VolumeInfo | ScalelessInfo:
    """A volume's info, or one without scales (a dataset of meshes alone)."""
    try:
        return VolumeInfo.parse(data, where)
    except DataError:
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError):
            raw = None
        if not isinstance(raw, dict) or raw.get("scales", []) != [] \
                or raw.get("type", "image") not in VOLUME_TYPES:
            raise
        return ScalelessInfo(tuple(raw.items()))
