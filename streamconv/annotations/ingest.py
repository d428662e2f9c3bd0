"""The first pass: the table read once, in pieces of a bounded number of rows, each piece
stored in the spool as arrays (`runs.save_piece`: geometry in collection coordinates, ids,
each property column as numbers, colours or text codes, each relationship as counts and ids)
while the statistics that decide the schema and the bounds are gathered. Later passes read
these arrays, not the table (a CSV is parsed once)."""

from __future__ import annotations

import json
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .columns import ColumnKind, Columns, annotation_ids, column_kind, map_columns, numbers_of, segment_lists
from .coords import Placement
from .runs import column_key, save_piece
from .table import Table

INGESTED = "ingested.json"
MAX_COUNTED = 100_000  # distinct segments counted (to size the relationship index); beyond: entries


@dataclass(frozen=True)
class Request:
    """What the user said about the table's columns."""

    type: str | None
    mapping: tuple[tuple[str, str], ...]
    relationships: tuple[str, ...] | None


def header(table: Table, request: Request) -> Columns:
    with closing(table.pieces(1)) as pieces:
        first = next(pieces, None)
    if first is None:
        raise DataError(f"{table.path}: no rows")
    return map_columns(list(first), request.type, dict(request.mapping), request.relationships)


@dataclass
class Ingested:
    """What the first pass found."""

    columns: Columns
    kinds: list[ColumnKind]
    rows: int
    pieces: int
    lower: np.ndarray
    upper: np.ndarray
    related: list[int]  # distinct segments per relationship (entries, when too many to count)

    def save(self, spool: Path) -> None:
        raw = {"rows": self.rows, "pieces": self.pieces, "lower": self.lower.tolist(),
               "upper": self.upper.tolist(), "related": self.related,
               "kinds": [{"name": k.name, "kind": k.kind, "low": k.low, "high": k.high, "whole": k.whole,
                          "alpha": k.alpha, "words": list(k.words), "too_many": k.too_many}
                         for k in self.kinds]}
        temporary = spool / f".{INGESTED}"
        temporary.write_text(json.dumps(raw))
        temporary.replace(spool / INGESTED)

    @classmethod
    def load(cls, spool: Path, columns: Columns) -> Ingested | None:
        path = spool / INGESTED
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        kinds = [ColumnKind(k["name"], k["kind"], k["low"], k["high"], k["whole"], k["alpha"],
                            {w: i for i, w in enumerate(k["words"])}, k["too_many"]) for k in raw["kinds"]]
        return cls(columns, kinds, raw["rows"], raw["pieces"], np.asarray(raw["lower"]),
                   np.asarray(raw["upper"]), raw["related"])


def ingest(table: Table, columns: Columns, place: Placement, spool: Path, rows: int) -> Ingested:
    """Read the table once into the spool's pieces."""
    kinds: list[ColumnKind] = []
    lower, upper = np.full(3, np.inf), np.full(3, -np.inf)
    entries = [0] * len(columns.relationships)
    distinct: list[set[int] | None] = [set() for _ in columns.relationships]
    first_row = 0
    piece = -1
    for piece, data in enumerate(table.pieces(rows)):
        n = len(next(iter(data.values())))
        if not kinds:
            kinds = [column_kind(name, data[name]) for name in columns.properties]
        geometry = np.empty((n, len(columns.geometry), 3), np.float64)
        for v, names in enumerate(columns.geometry):
            for d, name in enumerate(names):
                numbers = numbers_of(data[name], name, first_row)
                if not np.all(np.isfinite(numbers)):
                    bad = first_row + int(np.flatnonzero(~np.isfinite(numbers))[0])
                    raise DataError(f"{table.path}: row {bad}: column {name!r} is not a number")
                geometry[:, v, d] = numbers
        geometry = place.apply(columns.type, geometry)
        low, high = columns.type.extent(geometry)
        lower, upper = np.minimum(lower, low.min(axis=0)), np.maximum(upper, high.max(axis=0))
        arrays = {"geometry": geometry,
                  "ids": annotation_ids(data[columns.id] if columns.id else None, first_row, n)}
        for kind in kinds:
            arrays[column_key(kind.name)] = kind.take(data[kind.name], first_row)
        for r, name in enumerate(columns.relationships):
            counts, flat = segment_lists(data[name], name, first_row)
            arrays[f"r{r}_counts"], arrays[f"r{r}_ids"] = counts, flat
            entries[r] += len(flat)
            seen = distinct[r]
            if seen is not None:
                seen.update(np.unique(flat).tolist())
                distinct[r] = seen if len(seen) <= MAX_COUNTED else None
        save_piece(spool, piece, arrays)
        first_row += n
    if first_row == 0:
        raise DataError(f"{table.path}: no rows")
    related = [len(s) if s is not None else n for s, n in zip(distinct, entries)]
    return Ingested(columns, kinds, first_row, piece + 1, lower, upper, related)
