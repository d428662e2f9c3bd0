"""`streamconv verify TABLE OUTPUT` of an annotation collection: every row of the table is
found by id with its record (geometry, properties) and related segments, in the spatial index
(at one level, in the cell of its position, first endpoint or centre there), and under each of
its segments in the relationship index; the collection holds no annotation the table lacks.

The table is read again as `annotations` read it, with the options of the collection's job
record (type, columns, coordinates, image); the expected record is encoded from the info's own
properties (types, enum labels), so a property typed or ordered wrongly shows as a mismatch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError
from ..stores import open_store
from ..stores.base import Store
from .columns import annotation_ids, colours, numbers_of, segment_lists
from .coords import Placement, placement
from .ingest import Request, header
from .reader import IndexReader, multiple, read_collection_info
from .schema import TYPES, Property, Relationship, Schema
from .spatial import Level, cell_range
from .table import Table

MAX_PROBLEMS = 20


@dataclass
class AnnotationCheck:
    rows: int = 0
    levels: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)


def _schema(info: dict) -> Schema:
    kind = next((t for t in TYPES.values() if t.name == info["annotation_type"]), None)
    if kind is None:
        raise UsageError(f"annotation type {info['annotation_type']!r} is not one streamconv writes")
    props = tuple(Property(p["id"], p["type"], p.get("description", p["id"]), tuple(p.get("enum_labels", ())))
                  for p in info.get("properties", []))
    rels = tuple(Relationship(r["id"], r["id"]) for r in info["relationships"])
    return Schema(kind, props, rels)


def _expected(prop: Property, values: np.ndarray, first_row: int) -> np.ndarray:
    if prop.labels:
        lookup = {label: i for i, label in enumerate(prop.labels)}
        return np.array([lookup.get(v, len(lookup)) for v in values.astype(str).tolist()], prop.dtype)
    if prop.type in ("rgb", "rgba"):
        rgba = colours(values.astype(str))
        return rgba[:, :3] if prop.type == "rgb" else rgba
    numbers = numbers_of(values, prop.column, first_row)
    return numbers.astype(np.float32) if prop.type == "float32" else np.nan_to_num(numbers).astype(prop.dtype)


def digest(records: np.ndarray) -> np.ndarray:
    """A 64-bit fingerprint of each record ((n, R) uint8, R a multiple of 4): its words times
    odd constants, summed, so that any changed word changes it."""
    words = records.reshape(len(records), -1).view("<u4").astype(np.uint64)
    odd = (np.arange(words.shape[1], dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
    with np.errstate(over="ignore"):
        return (words * odd).sum(axis=1, dtype=np.uint64)


def _pairs(reader: IndexReader, size: int) -> np.ndarray:
    """(id, key, record digest) of every annotation of a spatial level or relationship,
    sorted by id then key: what verify needs of an index in 24 bytes an entry."""
    rows = []
    for key, value in reader.items():
        records, ids = multiple(value, size, f"{reader.store.url}/{reader.key}/{key}")
        rows.append(np.stack([ids, np.full(len(ids), key, np.uint64), digest(records)], axis=1))
    pairs = np.concatenate(rows) if rows else np.zeros((0, 3), np.uint64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def verify_annotations(table: str | os.PathLike, output: str | os.PathLike, store: Store | None = None,
                       options: dict | None = None) -> AnnotationCheck:
    """Hold the collection at `output` against `table`; `options`: those of `annotations`
    (default: the collection's job record)."""
    store = store or open_store(output)
    info = read_collection_info(store)
    if info is None:
        raise UsageError(f"{store.url}: not an annotation collection")
    recorded: Placement | None = None
    if options is None:
        from ..engine.journal import read_job
        record = (read_job(store, "annotations") or {}).get("job") or {}
        options = record.get("options")
        if options is None:
            raise UsageError(f"{store.url}: no job record of streamconv annotations; its options are unknown")
        if record.get("placement") is not None:  # as written (convert --annotations: the volume's)
            recorded = Placement(**record["placement"])
    schema = _schema(info)
    size = schema.record_size
    source = Table.open(table)
    request = Request(options.get("type"), tuple(tuple(p) for p in options.get("columns", [])),
                      tuple(options["relationships"]) if options.get("relationships") else None)
    columns = header(source, request)
    place = recorded or placement(options.get("image"), options.get("resolution"), options.get("coordinates", "voxel"))
    by_id_index = IndexReader(store, info["by_id"]["key"], info["by_id"].get("sharding"))
    by_id = _ByIdValues(by_id_index)
    levels = [Level(tuple(lv["grid_shape"]), tuple(lv["chunk_size"])) for lv in info["spatial"]]
    spatial = [_pairs(IndexReader(store, lv["key"], lv.get("sharding"), level), size)
               for lv, level in zip(info["spatial"], levels)]
    related = [_pairs(IndexReader(store, r["key"], r.get("sharding")), size) for r in info["relationships"]]
    lower = np.asarray(info["lower_bound"], np.float64)
    check = AnnotationCheck(levels=len(levels))
    seen: list[np.ndarray] = []
    for data in source.pieces(100_000):
        n = len(next(iter(data.values())))
        first = check.rows
        geometry = np.stack([np.stack([numbers_of(data[c], c, first) for c in names], axis=1)
                             for names in columns.geometry], axis=1)
        geometry = place.apply(schema.type, geometry)
        ids = annotation_ids(data[columns.id] if columns.id else None, first, n)
        seen.append(ids)
        values = {p.id: _expected(p, data[p.column], first) for p in schema.properties if p.column in data}
        missing = [p.column for p in schema.properties if p.column not in data]
        if missing:
            raise UsageError(f"the table lacks the columns {missing} of the collection's properties")
        records = schema.records(geometry.astype(np.float32), values)
        lists = [segment_lists(data[c], c, first) for c in columns.relationships]
        starts = [np.concatenate([[0], np.cumsum(counts.astype(np.int64))]) for counts, _ in lists]
        for i in range(n):
            row, ident = first + i, int(ids[i])
            value = by_id.get(ident)
            if value is None:
                check.add(f"row {row}: annotation {ident} is not in by_id")
                continue
            tail = b"".join(int(c[i]).to_bytes(4, "little") + flat[s[i]:s[i + 1]].astype("<u8").tobytes()
                            for (c, flat), s in zip(lists, starts))
            if value[:size] != records[i].tobytes():
                check.add(f"row {row}: annotation {ident} differs in by_id (geometry or properties)")
            elif value[size:] != tail:
                check.add(f"row {row}: annotation {ident}'s related segments differ in by_id")
        expected = digest(records)
        _check_spatial(check, levels, lower, spatial, geometry, ids, expected, first)
        for (counts, flat), pairs, rel in zip(lists, related, schema.relationships):
            owners = np.repeat(ids, counts.astype(np.int64))
            sums = np.repeat(expected, counts.astype(np.int64))
            want = np.stack([owners, flat], axis=1)
            at = np.searchsorted(pairs[:, 0], owners)
            found = np.zeros(len(owners), bool)
            for k in range(len(owners)):  # a few entries per id
                j = at[k]
                while j < len(pairs) and pairs[j, 0] == want[k, 0] and not found[k]:
                    found[k] = pairs[j, 1] == want[k, 1] and pairs[j, 2] == sums[k]
                    j += 1
            for k in np.flatnonzero(~found)[:3].tolist():
                check.add(f"annotation {int(want[k, 0])} is not under segment {int(want[k, 1])} ({rel.key}), "
                          "or differs there")
        check.rows += n
    everything = np.unique(np.concatenate(seen))
    stored = by_id.count()
    if stored != len(everything):
        check.add(f"by_id holds {stored} annotations, the table {len(everything)}")
    return check


class _ByIdValues:
    """by_id values by id: read whole, shard by shard, for up to `BULK` annotations (a read per
    id costs a request each); one read per id beyond."""

    BULK = 2_000_000

    def __init__(self, index: IndexReader) -> None:
        self.index = index
        self.values: dict[int, bytes] | None = {}
        for key, value in index.items():
            self.values[key] = value
            if len(self.values) > self.BULK:
                self.values = None
                break

    def get(self, key: int) -> bytes | None:
        return self.index.get(key) if self.values is None else self.values.get(key)

    def count(self) -> int:
        return sum(1 for _ in self.index.items()) if self.values is None else len(self.values)


def _check_spatial(check: AnnotationCheck, levels: list[Level], lower: np.ndarray, spatial: list[np.ndarray],
                   geometry: np.ndarray, ids: np.ndarray, expected: np.ndarray, first: int) -> None:
    """Each annotation at exactly one level, there in the cell of its first point, with the
    record the table gives in every cell that lists it."""
    anchor = geometry[:, 0]
    where = np.full(len(ids), -1)
    for number, (level, pairs) in enumerate(zip(levels, spatial)):
        cell, _ = cell_range(level, lower, anchor, anchor)
        code = level.morton(cell)
        lo = np.searchsorted(pairs[:, 0], ids, side="left")
        hi = np.searchsorted(pairs[:, 0], ids, side="right")
        present = hi > lo
        twice = present & (where >= 0)
        for k in np.flatnonzero(twice)[:3].tolist():
            check.add(f"row {first + k}: annotation {int(ids[k])} is at levels {where[k]} and {number}")
        where[present] = number
        for k in np.flatnonzero(present).tolist():
            if code[k] not in pairs[lo[k]:hi[k], 1]:
                check.add(f"row {first + k}: annotation {int(ids[k])} is not in its cell at level {number}")
                break
            if np.any(pairs[lo[k]:hi[k], 2] != expected[k]):
                check.add(f"row {first + k}: annotation {int(ids[k])} differs in the spatial index (level {number})")
                break
    for k in np.flatnonzero(where < 0)[:3].tolist():
        check.add(f"row {first + k}: annotation {int(ids[k])} is in no cell of the spatial index")
