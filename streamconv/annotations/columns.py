"""Which column is what: the geometry of the annotation type (`x,y,z`; `x1,y1,z1,x2,y2,z2`;
centre and radii), the annotation id, the related segments, and every other column a typed
property: numbers (the smallest integer type that holds a column of whole numbers, float32
otherwise), colours (`#rrggbb`, `#rrggbbaa`: rgb, rgba), text of few distinct values (an enum,
labels in alphabetical order). What a column is is decided by its first piece; later pieces
must agree (`Ingested.add` says which row does not).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError, UsageError
from .schema import INTEGER_TYPES, PROPERTY_TYPES, TYPES, AnnotationType, Property, Relationship, Schema, property_id

log = logging.getLogger("streamconv")
MAX_ENUM = 1000  # distinct values of a text column that make an enum; more: the column is left out
RELATIONSHIP_NAMES = ("segment", "segments", "segment_id", "segment_ids", "segid", "label_id")
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?$")
_SPLIT = re.compile(r"[;,\s]+")
#: default columns of each geometry vector, first match wins
VECTORS: dict[str, list[tuple[str, ...]]] = {
    "point": [("x", "y", "z"), ("point_x", "point_y", "point_z"), ("position_x", "position_y", "position_z")],
    "a": [("x1", "y1", "z1"), ("pointa_x", "pointa_y", "pointa_z"), ("xmin", "ymin", "zmin"),
          ("x_min", "y_min", "z_min")],
    "b": [("x2", "y2", "z2"), ("pointb_x", "pointb_y", "pointb_z"), ("xmax", "ymax", "zmax"),
          ("x_max", "y_max", "z_max")],
    "center": [("x", "y", "z"), ("center_x", "center_y", "center_z"), ("centre_x", "centre_y", "centre_z")],
    "radii": [("rx", "ry", "rz"), ("radii_x", "radii_y", "radii_z"), ("radius", "radius", "radius")],
}
ROLES = {"point": ("point",), "line": ("a", "b"), "box": ("a", "b"), "ellipsoid": ("center", "radii")}
AXES = ("x", "y", "z")


@dataclass(frozen=True)
class Columns:
    """The roles of a table's columns."""

    type: AnnotationType
    geometry: tuple[tuple[str, str, str], ...]  # per vector, the x, y, z columns
    id: str | None
    relationships: tuple[str, ...]
    properties: tuple[str, ...]


def map_columns(header: Sequence[str], kind: str | None, mapping: Mapping[str, str],
                relationships: Sequence[str] | None) -> Columns:
    """Roles from names: `mapping` (role -> column: x, y, z, x1 ... z2, rx, ry, rz, id) first,
    then the defaults of `VECTORS`; the type from `kind`, or from the columns found (radii:
    ellipsoid; two endpoints: line; x, y, z: point)."""
    lower = {h.lower(): h for h in header}
    for role, column in mapping.items():
        if column not in header:
            raise UsageError(f"--column {role}={column}: the table has no column {column!r} "
                             f"(it has {', '.join(header)})")

    def vector(role: str) -> tuple[str, str, str] | None:
        keys = {"point": ("x", "y", "z"), "center": ("x", "y", "z"), "a": ("x1", "y1", "z1"),
                "b": ("x2", "y2", "z2"), "radii": ("rx", "ry", "rz")}[role]
        if all(k in mapping for k in keys):
            return tuple(mapping[k] for k in keys)  # type: ignore[return-value]
        for names in VECTORS[role]:
            if all(n in lower for n in names):
                return tuple(lower[n] for n in names)  # type: ignore[return-value]
        return None

    if kind is None:
        kind = "ellipsoid" if vector("radii") and vector("center") else \
            "line" if vector("a") and vector("b") else "point" if vector("point") else None
        if kind is None:
            raise UsageError("no geometry columns found: name them x,y,z (points), x1,y1,z1,x2,y2,z2 "
                             "(lines, boxes), x,y,z,rx,ry,rz (ellipsoids), or map them with --column")
    if kind not in TYPES:
        raise UsageError(f"--type must be one of {', '.join(TYPES)}, got {kind!r}")
    found = [vector(role) for role in ROLES[kind]]
    if any(v is None for v in found):
        raise UsageError(f"--type {kind}: the table lacks the columns of its geometry "
                         f"({' and '.join(str(VECTORS[r][0]) for r in ROLES[kind])}); map them with --column")
    geometry = tuple(v for v in found if v is not None)
    ident = mapping.get("id") or lower.get("id")
    if relationships is None:
        relationships = [lower[n] for n in RELATIONSHIP_NAMES if n in lower][:1]
    for name in relationships:
        if name not in header:
            raise UsageError(f"--relationship {name}: the table has no such column")
    used = {c for v in geometry for c in v} | {ident} | set(relationships)
    return Columns(TYPES[kind], geometry, ident, tuple(relationships),
                   tuple(h for h in header if h not in used))


def _numbers(values: np.ndarray) -> np.ndarray | None:
    """The values as float64 (empty text: NaN), or None when they are not numbers."""
    if values.dtype.kind in "iuf":
        return values.astype(np.float64)
    if values.dtype.kind != "U":
        return None
    try:
        return np.char.strip(values).astype(np.float64)
    except ValueError:
        try:
            return np.where(np.char.strip(values) == "", "nan", values).astype(np.float64)
        except ValueError:
            return None


def numbers_of(values: np.ndarray, column: str, first_row: int) -> np.ndarray:
    """A column that must hold numbers as float64; the first row that does not is named."""
    numbers = _numbers(values)
    if numbers is None:
        bad = next(i for i, v in enumerate(values.tolist()) if _numbers(np.array([str(v)])) is None)
        raise DataError(f"row {first_row + bad}: column {column!r} holds {str(values[bad])[:40]!r}, not a number")
    return numbers


def colours(values: np.ndarray) -> np.ndarray:
    """`#rrggbb[aa]` text as (n, 4) uint8 (alpha 255 when not given)."""
    text = np.char.ljust(np.char.lstrip(values.astype(str), "#"), 8, "f")
    raw = np.frombuffer(bytes.fromhex("".join(text.tolist())), np.uint8) if len(text) else np.zeros(0, np.uint8)
    return raw.reshape(-1, 4)


@dataclass
class ColumnKind:
    """What a property column holds, decided by the first piece, and its statistics."""

    name: str
    kind: str  # number, colour, text
    low: float = np.inf
    high: float = -np.inf
    whole: bool = True
    alpha: bool = False
    words: dict[str, int] = field(default_factory=dict)  # text: value -> code of first appearance
    too_many: bool = False

    def take(self, values: np.ndarray, first_row: int) -> np.ndarray:
        """One piece's values as stored in the spool: float64, (n, 4) uint8, or uint32 codes."""
        if self.kind == "number":
            numbers = numbers_of(values, self.name, first_row)
            finite = numbers[np.isfinite(numbers)]
            if len(finite):
                self.low, self.high = min(self.low, float(finite.min())), max(self.high, float(finite.max()))
                self.whole = self.whole and bool(np.all(finite == np.round(finite)))
            return numbers
        text = values.astype(str)
        if self.kind == "colour":
            if not all(_COLOUR.match(v) for v in np.unique(text).tolist()):
                raise DataError(f"column {self.name!r}: rows from {first_row} hold values that are not "
                                "#rrggbb colours, earlier rows colours")
            self.alpha = self.alpha or bool(np.any(np.char.str_len(text) == 9))
            return colours(text)
        unique, inverse = np.unique(text, return_inverse=True)
        for word in unique.tolist():
            if word not in self.words and not self.too_many:
                self.words[word] = len(self.words)
                self.too_many = len(self.words) > MAX_ENUM
        lookup = np.array([self.words.get(w, MAX_ENUM + 1) for w in unique.tolist()], np.uint32)
        return lookup[inverse.reshape(-1)]

    def property(self) -> tuple[Property | None, np.ndarray | None]:
        """The property this column becomes (None: left out), and for text the map from codes
        of first appearance to enum values (alphabetical)."""
        pid = property_id(self.name)
        if self.kind == "colour":
            return Property(pid, "rgba" if self.alpha else "rgb", self.name), None
        if self.kind == "text":
            if self.too_many:
                log.warning("column %r has more than %d distinct values: left out (a property of text "
                            "is an enum of few values)", self.name, MAX_ENUM)
                return None, None
            labels = sorted(self.words)
            rank = {w: i for i, w in enumerate(labels)}
            remap = np.array([rank[w] for w in self.words], np.uint32)
            return Property(pid, "uint8" if len(labels) <= 256 else "uint16", self.name, tuple(labels)), remap
        if self.whole and np.isfinite(self.low):
            for name in INTEGER_TYPES:
                info = np.iinfo(PROPERTY_TYPES[name][0])
                if info.min <= self.low and self.high <= info.max:
                    return Property(pid, name, self.name), None
        return Property(pid, "float32", self.name), None


def column_kind(name: str, values: np.ndarray) -> ColumnKind:
    if _numbers(values) is not None:
        return ColumnKind(name, "number")
    text = values.astype(str)
    sample = np.unique(text[:10000]).tolist()
    if sample and all(_COLOUR.match(v) for v in sample):
        return ColumnKind(name, "colour")
    return ColumnKind(name, "text")


def schema_of(columns: Columns, kinds: Sequence[ColumnKind]) -> tuple[Schema, dict[str, np.ndarray]]:
    """The collection's schema once every piece is read, and the enum remaps by property id."""
    properties, remaps = [], {}
    for kind in kinds:
        prop, remap = kind.property()
        if prop is None:
            continue
        properties.append(prop)
        if remap is not None:
            remaps[prop.id] = remap
    rels = tuple(Relationship(property_id(c), c) for c in columns.relationships)
    return Schema(columns.type, tuple(properties), rels), remaps


def property_values(prop: Property, stored: np.ndarray, remap: np.ndarray | None) -> np.ndarray:
    """Spooled values of a column as the property's type."""
    if prop.type in ("rgb", "rgba"):
        return stored[:, :3] if prop.type == "rgb" else stored
    if remap is not None:
        return remap[np.minimum(stored, len(remap) - 1)].astype(prop.dtype)
    if prop.type == "float32":
        return stored.astype(np.float32)
    return np.nan_to_num(stored, nan=0.0).astype(prop.dtype)


def segment_lists(values: np.ndarray, column: str, first_row: int) -> tuple[np.ndarray, np.ndarray]:
    """A relationship column as (count per row uint32, the ids one after the other uint64):
    one id per cell, or several separated by `;`, `,` or spaces; empty, NaN or 0: none."""
    numbers = _numbers(values) if values.dtype.kind != "O" else None
    if numbers is not None:
        ok = np.isfinite(numbers) & (numbers > 0)
        if np.any(numbers[ok] != np.round(numbers[ok])):
            raise DataError(f"column {column!r} (rows from {first_row}): segment ids are whole numbers")
        return ok.astype(np.uint32), numbers[ok].astype(np.uint64)
    if values.dtype.kind == "U":
        return _split_ids(values, column, first_row)
    lists: list[list[int]] = []
    for i, value in enumerate(values.tolist()):
        items = value if isinstance(value, (list, tuple, np.ndarray)) else \
            [v for v in _SPLIT.split(str(value).strip()) if v] if value is not None else []
        try:
            ids = [int(v) for v in items]
        except (TypeError, ValueError):
            raise DataError(f"column {column!r}, row {first_row + i}: {str(value)[:40]!r} is not a list "
                            "of segment ids") from None
        if any(s < 0 or s >= 1 << 64 for s in ids):
            raise DataError(f"column {column!r}, row {first_row + i}: a segment id out of range")
        lists.append([s for s in ids if s])
    counts = np.array([len(v) for v in lists], np.uint32)
    flat = np.array([s for v in lists for s in v], np.uint64)
    return counts, flat


def _split_ids(values: np.ndarray, column: str, first_row: int) -> tuple[np.ndarray, np.ndarray]:
    """Text cells of ids separated by `;`, `,` or spaces, split for the whole piece at once."""
    text = np.char.strip(values)
    for separator in (",", " ", "\t"):
        text = np.char.replace(text, separator, ";")
    filled = text != ""
    counts = np.where(filled, np.char.count(text, ";") + 1, 0)
    parts = np.array(";".join(text[filled].tolist()).split(";")) if filled.any() else np.zeros(0, str)
    rows = np.repeat(np.arange(len(values)), counts)
    present = parts != ""
    try:
        flat = parts[present].astype(np.uint64)
    except (ValueError, OverflowError):
        bad = next(v for v in values.tolist() if not all(p.isdigit() for p in _SPLIT.split(v.strip()) if p))
        raise DataError(f"column {column!r} (rows from {first_row}): {bad[:40]!r} is not a list of "
                        "segment ids") from None
    keep = flat != 0
    counts = np.bincount(rows[present][keep], minlength=len(values)).astype(np.uint32)
    return counts, flat[keep]


def annotation_ids(values: np.ndarray | None, first_row: int, rows: int) -> np.ndarray:
    """The id column as uint64, or the row numbers (from 0) when the table has none."""
    if values is None:
        return np.arange(first_row, first_row + rows, dtype=np.uint64)
    if values.dtype.kind in "iu":
        ids = values
    else:
        numbers = _numbers(values)
        if numbers is None or not np.all(np.isfinite(numbers)) or np.any(numbers != np.round(numbers)) \
                or np.any(numbers >= 2.0 ** 53):
            try:
                return np.array([int(v) for v in values.tolist()], np.uint64)
            except (TypeError, ValueError, OverflowError):
                raise DataError(f"the id column (rows from {first_row}) holds values that are not whole "
                                "numbers of 0 or more") from None
        ids = numbers
    if np.any(ids < 0):
        raise DataError(f"the id column (rows from {first_row}) holds negative ids")
    return ids.astype(np.uint64)
