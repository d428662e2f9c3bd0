"""An independent reader of Neuroglancer precomputed annotations, written from the format notes
(section 9, and section 5 for sharded indexes): it reads *every* value of every index of a
collection, checks each value's length as Neuroglancer does, and, in a sharded index, that
each key lies in the shard and minishard its hash names. It shares no code with streamconv's
writer (the hash is the one of `mesh_reader`, checked there against the notes' vectors)."""

from __future__ import annotations

import gzip
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mesh_reader import shard_hash

SIZES = {"float32": ("<f4", 4), "uint32": ("<u4", 4), "int32": ("<i4", 4), "uint16": ("<u2", 2),
         "int16": ("<i2", 2), "uint8": ("<u1", 1), "int8": ("<i1", 1), "rgb": (None, 3), "rgba": (None, 4)}
FORMATS = {"float32": "f", "uint32": "I", "int32": "i", "uint16": "H", "int16": "h", "uint8": "B", "int8": "b",
           "rgb": "3B", "rgba": "4B"}
ALIGN = {"float32": 4, "uint32": 4, "int32": 4, "uint16": 2, "int16": 2}
VECTORS = {"point": 1, "line": 2, "axis_aligned_bounding_box": 2, "ellipsoid": 2}


@dataclass
class Annotation:
    geometry: tuple[float, ...]
    properties: dict[str, object]
    related: list[list[int]] = field(default_factory=list)


@dataclass
class Collection:
    info: dict
    by_id: dict[int, Annotation]
    spatial: list[dict[tuple[int, ...], list[tuple[int, Annotation]]]]
    related: list[dict[int, list[tuple[int, Annotation]]]]


class Records:
    """The record layout of an info (9.3): geometry, properties by alignment, padding; decoded
    with one `struct` format per record."""

    def __init__(self, info: dict) -> None:
        self.rank = len(info["dimensions"])
        self.geometry = 4 * self.rank * VECTORS[info["annotation_type"]]
        ordered = sorted(info.get("properties", []), key=lambda p: -ALIGN.get(p["type"], 1))  # stable
        fmt = f"<{self.geometry // 4}f"
        self.layout = []
        at = self.geometry
        for prop in ordered:
            self.layout.append((prop["id"], prop["type"]))
            fmt += FORMATS[prop["type"]]
            at += SIZES[prop["type"]][1]
        self.used = at
        self.size = (at + 3) // 4 * 4
        self.struct = struct.Struct(fmt)

    def decode(self, data: bytes) -> Annotation:
        assert len(data) == self.size
        assert data[self.used:] == bytes(self.size - self.used), "padding must be zero"
        values = self.struct.unpack_from(data)
        n = self.geometry // 4
        geometry, at, props = values[:n], n, {}
        for pid, kind in self.layout:
            width = {"rgb": 3, "rgba": 4}.get(kind, 1)
            props[pid] = values[at] if width == 1 else tuple(values[at:at + width])
            at += width
        return Annotation(geometry, props)


def _values(directory: Path, sharding: dict | None) -> dict[int, bytes] | dict[str, bytes]:
    """Every value of an index: files by name, or every entry of every shard by key."""
    if sharding is None:
        if not directory.exists():
            return {}
        return {p.name: p.read_bytes() for p in sorted(directory.iterdir(), key=lambda p: p.name)}
    out: dict = {}
    mb, sb, pre = sharding["minishard_bits"], sharding["shard_bits"], sharding["preshift_bits"]
    for path in sorted(directory.glob("*.shard")):
        data = path.read_bytes()
        end = 16 << mb
        for m in range(1 << mb):
            start, stop = struct.unpack_from("<QQ", data, 16 * m)
            if start == stop:
                continue
            raw = data[end + start:end + stop]
            if sharding["minishard_index_encoding"] == "gzip":
                raw = gzip.decompress(raw)
            rows = np.frombuffer(raw, "<u8").reshape(3, -1)
            ids, position = np.cumsum(rows[0]), end
            for key, delta, size in zip(ids.tolist(), rows[1].tolist(), rows[2].tolist()):
                position += delta
                value = data[position:position + size]
                position += size
                if sharding["data_encoding"] == "gzip":
                    value = gzip.decompress(value)
                hashed = key >> pre if sharding["hash"] == "identity" else shard_hash(key >> pre)
                assert hashed & ((1 << mb) - 1) == m, f"key {key} in the wrong minishard"
                shard = (hashed >> mb) & ((1 << sb) - 1)
                assert path.name == (f"{shard:0{-(-sb // 4)}x}.shard" if sb else "0.shard"), key
                assert key not in out
                out[key] = value
    return out


def _multiple(records: Records, data: bytes) -> list[tuple[int, Annotation]]:
    (n,) = struct.unpack_from("<Q", data, 0)
    assert len(data) == 8 + n * records.size + 8 * n, "multiple-annotation length"
    ids = np.frombuffer(data, "<u8", n, 8 + n * records.size).tolist()
    return [(ids[i], records.decode(data[8 + i * records.size:8 + (i + 1) * records.size])) for i in range(n)]


def morton_cell(code: int, grid: list[int]) -> tuple[int, ...]:
    """The cell of a compressed Morton code against a grid (9.6)."""
    cell = [0] * len(grid)
    j = 0
    for i in range(32):
        for d, g in enumerate(grid):
            if (g - 1) >> i:
                cell[d] |= ((code >> j) & 1) << i
                j += 1
    return tuple(cell)


def read_collection(root: Path) -> Collection:
    info = json.loads((root / "info").read_text())
    assert info["@type"] == "neuroglancer_annotations_v1"
    records = Records(info)
    by_id: dict[int, Annotation] = {}
    relationships = info["relationships"]
    for key, data in _values(root / info["by_id"]["key"], info["by_id"].get("sharding")).items():
        annotation = records.decode(data[:records.size])
        at = records.size
        for _ in relationships:
            (k,) = struct.unpack_from("<I", data, at)
            annotation.related.append(np.frombuffer(data, "<u8", k, at + 4).tolist())
            at += 4 + 8 * k
        assert at == len(data), "by_id: bytes left over"
        by_id[int(key)] = annotation
    spatial = []
    for level in info["spatial"]:
        cells: dict[tuple[int, ...], list[tuple[int, Annotation]]] = {}
        sharding = level.get("sharding")
        for key, data in _values(root / level["key"], sharding).items():
            cell = morton_cell(key, level["grid_shape"]) if sharding else tuple(int(c) for c in key.split("_"))
            assert all(0 <= c < g for c, g in zip(cell, level["grid_shape"]))
            cells[cell] = _multiple(records, data)
        spatial.append(cells)
    related = []
    for rel in relationships:
        values = _values(root / rel["key"], rel.get("sharding"))
        related.append({int(k): _multiple(records, v) for k, v in values.items()})
    return Collection(info, by_id, spatial, related)
