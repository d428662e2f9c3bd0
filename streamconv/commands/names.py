"""Names of segments: the tables atlases ship with, read by content, written as Neuroglancer's
`segment_properties` (spec section 7).

Atlases come with their names in a handful of formats, often under an extension that says
little (`.txt` for a FreeSurfer colour table, `.xml` for an FSL atlas, `.tsv`/`.csv` for BIDS
and home-made tables, `.json`). We recognise each by what the file holds, so a renamed file
still works, and every reader yields the same `SegmentTable`.

FSL atlas XML numbers its labels from 0 while the volume stores index + 1 (0 is background),
so the XML's indices are shifted by one.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

log = logging.getLogger("streamconv")

PROPERTIES_INFO = "neuroglancer_segment_properties"
#: columns that name a segment (first found wins), and those that give its id
_NAME_COLUMNS = ("name", "label", "label_name", "region", "structure", "abbreviation")
_ID_COLUMNS = ("index", "id", "label_id", "value", "label_value", "segment", "segid")
_COLOR_COLUMNS = ("color", "colour", "hex")
_RGB_COLUMNS = (("r", "g", "b"), ("red", "green", "blue"))
#: how many ids a warning names before it counts the rest
NAMED_IN_WARNING = 5


@dataclass(frozen=True)
class Segment:
    """One row of a names table."""

    id: int
    name: str
    description: str = ""  # the table's other columns, "column: value; ..."
    color: str | None = None  # "#rrggbb"


@dataclass(frozen=True)
class SegmentTable:
    """The segments of a table, by id, and where they came from (for messages)."""

    segments: tuple[Segment, ...]
    source: str
    format: str  # which reader understood it

    @property
    def ids(self) -> set[int]:
        return {s.id for s in self.segments}


def read_segment_names(path: str | os.PathLike) -> SegmentTable:
    """Read a names table, recognising its format by content: FSL atlas XML, JSON
    ({"id": "name"} or a list of objects), a FreeSurfer colour LUT, or a delimited table
    (TSV or CSV, with a header naming an index and a name column, or id,name rows)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    stripped = text.lstrip()
    if stripped.startswith("<"):
        fmt, segments = "FSL atlas XML", _fsl_xml(text, path)
    elif stripped.startswith(("{", "[")):
        fmt, segments = "JSON", _json(text, path)
    elif _looks_like_lut(text):
        fmt, segments = "FreeSurfer colour LUT", _lut(text, path)
    else:
        fmt, segments = "delimited table", _delimited(text, path)
    if not segments:
        raise DataError(f"{path}: no segment names found (read as {fmt})")
    by_id: dict[int, Segment] = {}
    for segment in segments:
        if segment.id < 0 or segment.id >= 2 ** 64:
            raise DataError(f"{path}: segment id {segment.id} is not an unsigned 64-bit integer")
        if segment.id in by_id and by_id[segment.id].name != segment.name:
            raise DataError(f"{path}: id {segment.id} is named twice ({by_id[segment.id].name!r}, "
                            f"{segment.name!r})")
        by_id[segment.id] = segment
    return SegmentTable(tuple(by_id[i] for i in sorted(by_id)), str(path), fmt)


_LUT_ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)(?:\s+(\d+))?\s*$")


def _content_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _looks_like_lut(text: str) -> bool:
    """FreeSurferColorLUT.txt: `id name R G B A` rows separated by blanks, `#` comments."""
    lines = _content_lines(text)
    return bool(lines) and sum(bool(_LUT_ROW.match(line)) for line in lines) >= 0.9 * len(lines)


def _lut(text: str, path: Path) -> list[Segment]:
    segments = []
    for line in _content_lines(text):
        match = _LUT_ROW.match(line)
        if match is None:
            log.warning("%s: skipped a line that is not `id name R G B A`: %r", path, line.strip()[:60])
            continue
        r, g, b = (int(match.group(i)) for i in (3, 4, 5))
        segments.append(Segment(int(match.group(1)), match.group(2), color=_hex(r, g, b)))
    return segments


def _fsl_xml(text: str, path: Path) -> list[Segment]:
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise DataError(f"{path}: not valid XML ({exc})") from exc
    segments = []
    for element in root.iter("label"):
        index = element.get("index")
        name = " ".join((element.text or "").split())
        if index is None or not index.strip().lstrip("-").isdigit():
            raise DataError(f"{path}: a <label> without an integer index attribute ({name!r})")
        extra = [f"{k}: {v}" for k, v in element.attrib.items() if k != "index"]
        # FSL numbers labels from 0; the volume stores index + 1 (0 is background)
        segments.append(Segment(int(index) + 1, name, "; ".join(extra)))
    return segments


def _json(text: str, path: Path) -> list[Segment]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    if isinstance(data, dict):
        return [Segment(_id(key, path), str(value)) for key, value in data.items()]
    if isinstance(data, list) and all(isinstance(row, dict) for row in data):
        return [_from_row({str(k): "" if v is None else str(v) for k, v in row.items()}, path)
                for row in data]
    raise DataError(f"{path}: JSON names must be {{\"id\": \"name\"}} or a list of objects")


def _delimited(text: str, path: Path) -> list[Segment]:
    lines = _content_lines(text)
    sample = "\n".join(lines[:20])
    delimiter = "\t" if "\t" in sample else ","
    rows = [row for row in csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)
            if any(cell.strip() for cell in row)]
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    if any(column in header for column in _ID_COLUMNS) and any(c in header for c in _NAME_COLUMNS):
        return [_from_row(dict(zip(header, (c.strip() for c in row))), path) for row in rows[1:]]
    if not rows[0][0].strip().isdigit():  # a header we do not know: say which columns we need
        raise DataError(f"{path}: a table needs an index column ({', '.join(_ID_COLUMNS[:2])}) and "
                        f"a name column ({', '.join(_NAME_COLUMNS[:2])}); its header is {rows[0]}")
    segments = []
    for row in rows:  # no header: id, name, further columns
        if len(row) < 2:
            raise DataError(f"{path}: a row needs an id and a name, got {row}")
        extra = [c.strip() for c in row[2:] if c.strip()]
        segments.append(Segment(_id(row[0], path), row[1].strip(), "; ".join(extra)))
    return segments


def _from_row(row: dict[str, str], path: Path) -> Segment:
    """A segment from a row of named columns; the columns we do not use become its description."""
    id_column = next(c for c in _ID_COLUMNS if c in row) if any(c in row for c in _ID_COLUMNS) else None
    name_column = next((c for c in _NAME_COLUMNS if c in row and c != id_column), None)
    if id_column is None or name_column is None:
        raise DataError(f"{path}: a row without an id or a name column: {row}")
    used = {id_column, name_column}
    color = None
    for column in _COLOR_COLUMNS:
        if row.get(column):
            color = _parse_color(row[column])
            used.add(column)
            break
    for columns in _RGB_COLUMNS:
        if color is None and all(row.get(c, "").strip().isdigit() for c in columns):
            color = _hex(*(int(row[c]) for c in columns))
            used.update(columns)
    extra = [f"{k}: {v}" for k, v in row.items() if k not in used and v and v.lower() != "n/a"]
    return Segment(_id(row[id_column], path), row[name_column], "; ".join(extra), color)


def _id(value: str, path: Path) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise DataError(f"{path}: segment id {value!r} is not an integer") from None


def _parse_color(value: str) -> str | None:
    value = value.strip().lstrip("#")
    return f"#{value.lower()}" if re.fullmatch(r"[0-9a-fA-F]{6}", value) else None


def _hex(r: int, g: int, b: int) -> str:
    return "#" + "".join(f"{min(max(c, 0), 255):02x}" for c in (r, g, b))


def properties_info(table: SegmentTable, labels: Iterable[int] | None = None) -> dict:
    """The `segment_properties/info` of a table: one entry per id of the table, with a label
    property (the name), a description when the table has other columns, and colours
    (a `string` property `color`, as "#rrggbb") when it has them. Ids are decimal strings,
    sorted. With `labels` (the ids the volume holds), what the two do not share is reported in
    one warning line each."""
    if labels is not None:
        report_mismatch(table, set(labels))
    segments = table.segments
    properties: list[dict] = [{"id": "label", "type": "label", "values": [s.name for s in segments]}]
    if any(s.description for s in segments):
        properties.append({"id": "description", "type": "description",
                           "values": [s.description for s in segments]})
    if any(s.color for s in segments):
        properties.append({"id": "color", "type": "string", "description": "colour in the table",
                           "values": [s.color or "" for s in segments]})
    return {"@type": PROPERTIES_INFO,
            "inline": {"ids": [str(s.id) for s in segments], "properties": properties}}


def report_mismatch(table: SegmentTable, labels: set[int]) -> None:
    """One warning for ids the table names but the volume lacks, one for labels the volume
    holds that the table does not name (background 0 aside)."""
    names = table.ids
    for what, ids in (("ids of the table are not in the volume", names - labels - {0}),
                      ("labels of the volume are not in the table", labels - names - {0})):
        if ids:
            first = ", ".join(str(i) for i in sorted(ids)[:NAMED_IN_WARNING])
            more = ", ..." if len(ids) > NAMED_IN_WARNING else ""
            log.warning("%s: %d %s (%s%s)", table.source, len(ids), what, first, more)
