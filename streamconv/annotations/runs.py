"""The external sort: each piece of the table, once read (`pieces/<p>.npz`), is encoded by a
worker into three sorted runs on disk (`runs/<p>/{by_id,spatial,related}`), and each write
task gathers its shard's entries from every run by binary search, merges them and writes.

A run is `keys.npy` (structured, five uint64 per entry, sorted), `offsets.npy` (n + 1 byte
offsets) and `values` (the entries' bytes one after the other). Keys sort as the output is
laid out: (group: level or relationship; shard << minishard_bits | minishard; key: cell Morton
code, annotation id or segment id; then the random order within a cell, then the id).
Values: the annotation's record and id (spatial, related), or its record and relationship
lists (by_id). Runs appear whole: written in a temporary folder, then renamed.
"""

from __future__ import annotations

import bisect
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .columns import property_values
from .hashing import uniform
from .plan import BY_ID, RELATED, SPATIAL, Plan
from .spatial import cells_of, levels_of

KEYS = np.dtype([("k0", "<u8"), ("k1", "<u8"), ("k2", "<u8"), ("k3", "<u8"), ("k4", "<u8")])
KINDS = (BY_ID, SPATIAL, RELATED)
RAGGED_BLOCK = 1 << 16


def column_key(name: str) -> str:
    """A table column's name in a piece's npz (any text, as a file name inside the zip)."""
    return "p_" + name.encode().hex()


def save_piece(spool: Path, piece: int, arrays: dict[str, np.ndarray]) -> None:
    folder = spool / "pieces"
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{piece}.npz"
    with open(temporary, "wb") as out:
        savez: Any = np.savez  # numpy's stub takes the names for its flags
        savez(out, **arrays)
    os.replace(temporary, folder / f"{piece}.npz")


def ragged_take(buf: np.ndarray, offsets: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entries of a ragged byte buffer in another order: the new buffer and offsets. Entries
    of one width move as rows; others in blocks of `RAGGED_BLOCK` entries, so that the byte
    index built for a block (8 bytes per byte moved) stays small next to the data."""
    lengths = (offsets[1:] - offsets[:-1])[order].astype(np.int64)
    new = np.zeros(len(order) + 1, np.int64)
    np.cumsum(lengths, out=new[1:])
    if len(lengths) and np.all(lengths == lengths[0]) and lengths[0] and len(buf) == len(order) * lengths[0]:
        return buf.reshape(len(order), -1)[order].reshape(-1), new
    out = np.empty(int(new[-1]), np.uint8)
    starts = offsets[:-1][order].astype(np.int64)
    for a in range(0, len(order), RAGGED_BLOCK):
        b = min(a + RAGGED_BLOCK, len(order))
        span = lengths[a:b]
        shift = np.repeat(starts[a:b] - new[a:b], span)
        out[new[a]:new[b]] = buf[shift + np.arange(new[a], new[b])]
    return out, new


def _fixed(records: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Record and id of each entry, as a ragged buffer of equal entries."""
    both = np.concatenate([records, ids.astype("<u8").view(np.uint8).reshape(-1, 8)], axis=1)
    return both.reshape(-1), np.arange(len(ids) + 1, dtype=np.int64) * both.shape[1]


def _by_id(records: np.ndarray, lists: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Each annotation's by_id value: its record, then per relationship a uint32 count and the
    uint64 ids (format notes 9.4)."""
    n, size = records.shape
    lengths = np.full(n, size, np.int64)
    for counts, _ in lists:
        lengths += 4 + 8 * counts.astype(np.int64)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    buf = np.zeros(int(offsets[-1]), np.uint8)
    buf[offsets[:-1, None] + np.arange(size)] = records
    at = offsets[:-1] + size
    for stored, flat in lists:
        counts = stored.astype(np.int64)
        buf[at[:, None] + np.arange(4)] = counts.astype("<u4").view(np.uint8).reshape(n, 4)
        at = at + 4
        row = np.repeat(np.arange(n), counts)
        nth = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)
        start = at[row] + 8 * nth
        buf[start[:, None] + np.arange(8)] = flat.astype("<u8").view(np.uint8).reshape(-1, 8)
        at = at + 8 * counts
    return buf, offsets


def _save_run(folder: Path, kind: str, keys: np.ndarray, buf: np.ndarray, offsets: np.ndarray) -> None:
    order = np.lexsort((keys["k4"], keys["k3"], keys["k2"], keys["k1"], keys["k0"]))
    buf, offsets = ragged_take(buf, offsets, order)
    np.save(folder / f"{kind}.keys.npy", keys[order])
    np.save(folder / f"{kind}.offsets.npy", offsets.astype("<u8"))
    with open(folder / f"{kind}.values", "wb") as out:
        out.write(buf.tobytes())


def _keys(k0: int | np.ndarray, k1: np.ndarray, k2: np.ndarray, k3: np.ndarray | int = 0,
          k4: np.ndarray | int = 0) -> np.ndarray:
    keys = np.zeros(len(k2), KEYS)
    keys["k0"], keys["k1"], keys["k2"], keys["k3"], keys["k4"] = k0, k1, k2, k3, k4
    return keys


def encode_piece(spool: str, plan: Plan, piece: int) -> int:
    """A worker's task: one piece's three runs. Returns its rows."""
    data = np.load(Path(spool) / "pieces" / f"{piece}.npz")
    schema = plan.schema
    geometry, ids = data["geometry"], data["ids"]
    values = {p.id: property_values(p, data[column_key(p.column)], plan.remap(p.id)) for p in schema.properties}
    records = schema.records(geometry.astype(np.float32), values)
    lists = [(data[f"r{r}_counts"], data[f"r{r}_ids"]) for r in range(len(schema.relationships))]
    folder = Path(spool) / "runs" / f".{piece}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)

    index = plan.index(BY_ID, 0)
    buf, offsets = _by_id(records, lists)
    _save_run(folder, BY_ID, _keys(0, index.order(ids), ids), buf, offsets)

    u, order = uniform(ids, plan.seed)
    level = levels_of(u, list(plan.starts))
    parts, rows_list = [], []
    lower = np.asarray(plan.lower)
    for number in range(len(plan.starts)):
        chosen = np.flatnonzero(level == number)
        which, cells = cells_of(schema.type, plan.levels[number], lower, geometry[chosen])
        at = chosen[which]
        codes = plan.levels[number].morton(cells)
        parts.append(_keys(number, plan.index(SPATIAL, number).order(codes), codes, order[at], ids[at]))
        rows_list.append(at)
    keys = np.concatenate(parts)
    at = np.concatenate(rows_list)
    buf, offsets = _fixed(records[at], ids[at])
    _save_run(folder, SPATIAL, keys, buf, offsets)

    parts, rows_list = [], []
    for r, (counts, flat) in enumerate(lists):
        row = np.repeat(np.arange(len(ids)), counts.astype(np.int64))
        parts.append(_keys(r, plan.index(RELATED, r).order(flat), flat, ids[row]))
        rows_list.append(row)
    keys = np.concatenate(parts) if parts else np.zeros(0, KEYS)
    row = np.concatenate(rows_list) if rows_list else np.zeros(0, np.int64)
    buf, offsets = _fixed(records[row], ids[row])
    _save_run(folder, RELATED, keys, buf, offsets)

    final = Path(spool) / "runs" / str(piece)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(folder, final)
    return len(ids)


def read_unit(spool: str, pieces: int, kind: str, group: int, first: int,
              stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entries of every run of `kind` whose keys have k0 == group and first <= k1 < stop,
    merged in key order: (keys, bytes, offsets)."""
    keys_parts, bufs, lengths = [], [], []
    for piece in range(pieces):
        folder = Path(spool) / "runs" / str(piece)
        keys = np.load(folder / f"{kind}.keys.npy", mmap_mode="r")
        if not len(keys):
            continue
        k0, k1 = keys["k0"], keys["k1"]
        lo, hi = bisect.bisect_left(k0, group), bisect.bisect_right(k0, group)
        a, b = bisect.bisect_left(k1, first, lo, hi), bisect.bisect_left(k1, stop, lo, hi)
        if a == b:
            continue
        offsets = np.load(folder / f"{kind}.offsets.npy", mmap_mode="r")
        start, end = int(offsets[a]), int(offsets[b])
        with open(folder / f"{kind}.values", "rb") as source:
            source.seek(start)
            bufs.append(np.frombuffer(source.read(end - start), np.uint8))
        keys_parts.append(np.array(keys[a:b]))
        lengths.append(np.diff(np.asarray(offsets[a:b + 1], np.int64)))
    if not keys_parts:
        return np.zeros(0, KEYS), np.zeros(0, np.uint8), np.zeros(1, np.int64)
    keys = np.concatenate(keys_parts)
    buf = np.concatenate(bufs)
    offsets = np.zeros(len(keys) + 1, np.int64)
    np.cumsum(np.concatenate(lengths), out=offsets[1:])
    order = np.lexsort((keys["k4"], keys["k3"], keys["k2"], keys["k1"], keys["k0"]))
    buf, offsets = ragged_take(buf, offsets, order)
    return keys[order], buf, offsets
