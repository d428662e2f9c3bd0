"""What one annotation of a collection is made of (format notes 9.2, 9.3): its type (the
geometry vectors), its typed properties, its relationships, and the bytes of its record.

A record is a numpy structured dtype with explicit offsets, so a piece of a million rows is
encoded by a few array assignments: geometry (float32), then the properties sorted by
alignment, largest first, stable (the byte order is not the info's order: GH #227), then zero
padding to a multiple of 4.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError


@dataclass(frozen=True)
class AnnotationType:
    """One annotation type: its name in the info, its `--type` spelling, and its vectors."""

    name: str
    option: str
    vectors: tuple[str, ...]  # the geometry's vectors, in record order

    def extent(self, geometry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per annotation, the lowest and highest corner of what it covers ((n, 3) each)."""
        if self.option == "ellipsoid":
            radii = np.abs(geometry[:, 1])
            return geometry[:, 0] - radii, geometry[:, 0] + radii
        return geometry.min(axis=1), geometry.max(axis=1)


POINT = AnnotationType("point", "point", ("position",))
LINE = AnnotationType("line", "line", ("point_a", "point_b"))
BOX = AnnotationType("axis_aligned_bounding_box", "box", ("corner_a", "corner_b"))
ELLIPSOID = AnnotationType("ellipsoid", "ellipsoid", ("center", "radii"))
#: by their --type spelling: the one list of the types
TYPES: dict[str, AnnotationType] = {t.option: t for t in (POINT, LINE, BOX, ELLIPSOID)}

#: property types: numpy dtype of a value and alignment (format notes 9.3)
PROPERTY_TYPES: dict[str, tuple[str, int]] = {
    "float32": ("<f4", 4), "uint32": ("<u4", 4), "int32": ("<i4", 4),
    "uint16": ("<u2", 2), "int16": ("<i2", 2),
    "uint8": ("u1", 1), "int8": ("i1", 1), "rgb": ("3u1", 1), "rgba": ("4u1", 1)}
#: integer types in the order a column of whole numbers takes the first that holds it
INTEGER_TYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32")
MAX_RECORD = 252  # bytes: beyond, Neuroglancer splits a record into groups (GH #845); refused
_ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")


def property_id(column: str) -> str:
    """A column name as a property id (`^[a-z][a-zA-Z0-9_]*$`: the shader's `prop_<id>()`)."""
    text = re.sub(r"[^a-zA-Z0-9_]", "_", column.strip())
    text = text[:1].lower() + text[1:]
    return text if _ID.match(text) else f"p_{text}"


@dataclass(frozen=True)
class Property:
    """A typed property; `labels`: an enum's labels (values 0, 1, ...)."""

    id: str
    type: str
    column: str
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.type not in PROPERTY_TYPES or not _ID.match(self.id):
            raise UsageError(f"property {self.id!r} of type {self.type!r} is not valid")

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(PROPERTY_TYPES[self.type][0])

    @property
    def alignment(self) -> int:
        return PROPERTY_TYPES[self.type][1]

    def info(self) -> dict:
        out: dict = {"id": self.id, "type": self.type, "description": self.column}
        if self.labels:
            out["enum_values"] = list(range(len(self.labels)))
            out["enum_labels"] = list(self.labels)
        return out

    def to_dict(self) -> dict:
        return {"id": self.id, "type": self.type, "column": self.column, "labels": list(self.labels)}

    @classmethod
    def from_dict(cls, raw: dict) -> Property:
        return cls(raw["id"], raw["type"], raw["column"], tuple(raw["labels"]))


@dataclass(frozen=True)
class Relationship:
    """A column of related object ids (segments): `id` in the info, its index under `key`
    (`rel_<id>`, Neuroglancer's convention)."""

    id: str
    column: str

    key = property(lambda self: f"rel_{self.id}")


@dataclass(frozen=True)
class Schema:
    """An annotation collection's record layout."""

    type: AnnotationType
    properties: tuple[Property, ...] = ()
    relationships: tuple[Relationship, ...] = ()
    rank: int = 3

    def __post_init__(self) -> None:
        if len({p.id for p in self.properties}) != len(self.properties):
            raise UsageError("two columns give the same property id: rename one")
        if self.record_size > MAX_RECORD:
            raise UsageError(f"an annotation of these properties takes {self.record_size} bytes, more "
                             f"than the {MAX_RECORD} Neuroglancer reads as one record: keep fewer columns")

    @property
    def geometry_size(self) -> int:
        return 4 * self.rank * len(self.type.vectors)

    @property
    def byte_order(self) -> tuple[Property, ...]:
        """The properties in record order: by alignment, largest first, stable."""
        return tuple(sorted(self.properties, key=lambda p: -p.alignment))

    @property
    def dtype(self) -> np.dtype:
        names, formats, offsets = ["geometry"], [f"({len(self.type.vectors)},{self.rank})<f4"], [0]
        at = self.geometry_size
        for prop in self.byte_order:
            names.append(prop.id)
            formats.append(PROPERTY_TYPES[prop.type][0])
            offsets.append(at)
            at += prop.dtype.itemsize
        return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                         "itemsize": -(-at // 4) * 4})

    @property
    def record_size(self) -> int:
        return int(self.dtype.itemsize)

    def records(self, geometry: np.ndarray, values: dict[str, np.ndarray]) -> np.ndarray:
        """The records of n annotations as an (n, record_size) uint8 array; `values` by
        property id, already of the property's type (colours: (n, 3|4) uint8)."""
        out = np.zeros(len(geometry), self.dtype)
        out["geometry"] = geometry
        for prop in self.properties:
            out[prop.id] = values[prop.id]
        return out.view(np.uint8).reshape(len(geometry), self.record_size)

    def to_dict(self) -> dict:
        return {"type": self.type.option, "properties": [p.to_dict() for p in self.properties],
                "relationships": [[r.id, r.column] for r in self.relationships]}

    @classmethod
    def from_dict(cls, raw: dict) -> Schema:
        return cls(TYPES[raw["type"]], tuple(Property.from_dict(p) for p in raw["properties"]),
                   tuple(Relationship(i, c) for i, c in raw["relationships"]))
