"""The write tasks: one per shard number of each index (its partition, `plan.Index`), which
gathers its entries from every run (`runs.read_unit`), groups them by key and writes them:
a shard file through the volumes' shard writer (`sharding.shardfile.write_minishards`), or one
file per key. A value of the spatial and relationship indexes is the multiple-annotation
encoding (format notes 9.5): the count, the records, the ids; of by_id, one annotation's
record and relationship lists (9.4).

Memory of a task: one shard's entries (the plan sizes shards from `--memory`). A task whose
shard file exists, or whose files were written before a kill, writes the same bytes again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from ..layout.shardfile import Minishard, encode_data, write_minishards
from ..stores.base import Store
from .plan import BY_ID, SPATIAL, Index, Plan
from .runs import read_unit

SPOOL_SHARDS = ".streamconv/annotations/spool/shards"
INDEX_LEVEL = 1  # gzip level of the minishard indexes (`write_minishards` says why)


@dataclass(frozen=True)
class UnitDone:
    """What a write task did: bytes and files written, and per key of a spatial level the
    largest count of a cell (the level's `limit`)."""

    number: int
    bytes: int
    files: int
    largest: int


def grouped(index: Index, plan: Plan, keys: np.ndarray, buf: np.ndarray,
            offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The unit's keys (ascending within each minishard), their values one after the other
    (uint8) and each value's size, and the most annotations one value holds."""
    k2 = keys["k2"]
    if index.kind == BY_ID:
        same = np.flatnonzero(k2[1:] == k2[:-1])
        if len(same):
            raise DataError(f"annotation id {int(k2[same[0]])} appears twice in the table")
        return k2, buf, np.diff(offsets).astype(np.uint64), 1
    width = plan.schema.record_size + 8
    entries = buf.reshape(-1, width)
    starts = np.flatnonzero(np.concatenate([[True], k2[1:] != k2[:-1]])) if len(k2) else np.zeros(0, np.int64)
    ends = np.append(starts[1:], len(k2))
    counts = (ends - starts).astype(np.uint64)
    sizes = 8 + counts * np.uint64(width)
    out = np.empty(int(sizes.sum()), np.uint8)
    at = 0
    for s, e, n in zip(starts.tolist(), ends.tolist(), counts.tolist()):
        out[at:at + 8] = np.frombuffer(np.uint64(n).astype("<u8").tobytes(), np.uint8)
        records = (e - s) * (width - 8)
        out[at + 8:at + 8 + records] = entries[s:e, :-8].reshape(-1)
        out[at + 8 + records:at + 8 + records + 8 * (e - s)] = entries[s:e, -8:].reshape(-1)
        at += 8 + (e - s) * width
    return k2[starts], out, sizes, int(counts.max()) if len(counts) else 0


def file_names(index: Index, plan: Plan, keys: np.ndarray) -> list[str]:
    """The files of `keys` in an unsharded index: the id, or a spatial cell's `x_y_z` (its
    Morton code decoded once for the whole unit: per key it cost more than the write)."""
    if index.kind == SPATIAL:
        cells = plan.levels[index.group].unmorton(keys).tolist()
        return [f"{index.key}/{x}_{y}_{z}" for x, y, z in cells]
    return [f"{index.key}/{k}" for k in keys.tolist()]


def write_unit(store: Store, spool: str, plan: Plan, index: Index, shard: int, number: int) -> UnitDone:
    """A worker's task: the entries of one shard number of `index`, written."""
    spec = index.spec
    first = shard << spec.minishard_bits
    keys, buf, offsets = read_unit(spool, plan.pieces, index.kind, index.group, first,
                                   first + (1 << spec.minishard_bits))
    if not len(keys):
        return UnitDone(number, 0, 0, 0)
    ids, blob, sizes, largest = grouped(index, plan, keys, buf, offsets)
    del keys, buf, offsets
    ends = np.cumsum(sizes.astype(np.int64))
    starts = ends - sizes.astype(np.int64)
    if not index.sharded:
        values = blob.tobytes()
        names = file_names(index, plan, ids)
        store.write_all(zip(names, (values[a:b] for a, b in zip(starts.tolist(), ends.tolist()))))
        return UnitDone(number, int(ends[-1]), len(names), largest)
    if spec.data_encoding != "raw":
        data = [encode_data(blob[a:b].tobytes(), spec.data_encoding) for a, b in zip(starts.tolist(), ends.tolist())]
        sizes = np.array([len(v) for v in data], np.uint64)
        blob = np.frombuffer(b"".join(data), np.uint8)
    spooled = f"{SPOOL_SHARDS}/{index.key}.{spec.file_name(shard)}"
    store.write(spooled, blob.tobytes())
    del blob
    minishard = index.order(ids) & np.uint64(spec.minishards - 1)
    parts, at = [], 0
    for m in np.unique(minishard).tolist():
        pick = minishard == m
        size = int(sizes[pick].sum())
        parts.append(Minishard(int(m), ids[pick], sizes[pick], None, [(spooled, at, at + size)]))
        at += size
    written = write_minishards(store, f"{index.key}/{spec.file_name(shard)}", spec, parts, INDEX_LEVEL)
    store.delete(spooled)
    return UnitDone(number, written, 1, largest)


