"""`streamconv annotations TABLE OUTPUT`: a table of annotations written as a precomputed
annotation collection, in phases, under the output's lock, resumable after a kill:

1. ingest (main process): the table read once into pieces (`ingest.py`); `ingested.json`
   once every piece is there (a kill before: the pass starts again).
2. plan (workers, one task per piece): how many annotations meet each cell of each level
   (`spatial.histogram`), from which the levels used and their thresholds; the indexes and
   their sharding; `plan.json`.
3. encode (workers): each piece's three sorted runs (`runs.py`); journal `slab 1 <piece>`.
4. write (workers): one task per shard number of each index (`writing.py`); journal
   `slab 2 <unit>`, its result kept beside it for the levels' limits.
5. the info, last; the spool deleted; the record says finished.

Job record and journal in `.streamconv/annotations/`, through the pipeline's own
`prepare_output` and `Journal`; the spool in `.streamconv/annotations/spool/` (a local
directory: the runs are read by memory map). Every byte written depends only on the table
and the options: the draws are seeded hashes of ids and every file is laid out in key order,
so a resumed run, or one with other --memory or --workers, writes the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..engine.executor import TaskExecutor, bounded, executor
from ..engine.job import resources
from ..engine.journal import COMPLETE, START, Journal, prepare_output, read_job, write_job
from ..engine.peak import peak_memory
from ..errors import Interrupted, OutputError, UsageError
from ..format.sharding_choice import Sharding, parse_sharding
from ..stores import open_output, open_store
from ..stores.base import Store
from ..stores.local import LocalStore
from .columns import schema_of
from .coords import Placement, placement
from .info import collection_info
from .ingest import Ingested, Request, header, ingest
from .plan import BY_ID, RELATED, Index, Plan, hashed_index, spatial_index
from .runs import encode_piece
from .spatial import Level, histogram, plan_levels, thresholds
from .table import Table
from .writing import UnitDone, write_unit

STEP = "annotations"
STATE = f".streamconv/{STEP}"
SPOOL = f"{STATE}/spool"
DEFAULT_LIMIT = 5000
SEED = 27
BYTES_PER_ROW = 2000  # peak of the ingest and encode passes per row of a piece, measured loosely
MIN_ROWS, MAX_ROWS = 10_000, 1_000_000
#: shards of a spatial level hold about this many bytes whatever --memory is, so that the bytes
#: written do not depend on it (Google's pipeline aims at 50 MB, PR #522); a write task holds one
#: shard a few times over (its runs' entries, the merged order, the values): 32 MiB shards made
#: the 10 million points benchmark peak at 750 MiB of PSS under --memory 512MiB
SHARD_BYTES = 16 << 20


@dataclass(frozen=True)
class AnnotationOptions:
    """What `streamconv annotations` writes (everything that changes bytes)."""

    type: str | None = None
    columns: tuple[tuple[str, str], ...] = ()  # role -> column
    relationships: tuple[str, ...] | None = None
    coordinates: str = "voxel"
    image: str | None = None
    resolution: str | None = None
    limit: int = DEFAULT_LIMIT
    sharding: str = "auto"


@dataclass(frozen=True)
class AnnotationsReport:
    output: str
    type: str
    annotations: int
    levels: int
    files: int
    bytes_written: int
    seconds: float
    peak_memory: int
    complete: bool = False  # found finished: nothing done
    resumed: bool = False


def _writes(relationships: tuple[str, ...]) -> list[str]:
    """What the job writes (and `--overwrite` deletes): the three indexes."""
    from .schema import Relationship, property_id
    return ["by_id", "spatial", *(Relationship(property_id(c), c).key for c in relationships)]


def write_annotations(table: str | os.PathLike, output: str | os.PathLike, options: AnnotationOptions,
                      memory: str | int | None = None, workers: int | None = None, overwrite: bool = False,
                      progress: Callable[[str, int, int], None] | None = None) -> AnnotationsReport:
    """Write the annotations of `table` to `output`; resumes an unfinished run of the same job."""
    started = time.monotonic()
    workers, budget = resources(workers, memory)
    place = placement(options.image, options.resolution, options.coordinates)
    request = checked(table, options)
    store = open_output(output)
    if read_job(store, STEP) is None and store.read("info") is not None and not overwrite:
        raise OutputError(f"{store.url} already holds a dataset (an info file); pass --overwrite to replace it")
    if overwrite:
        store.delete("info")
    if options.image is not None and options.resolution is None:
        # in the image's voxels: placed as the image is, by a copy of its transform.json
        placed = open_store(options.image).read("transform.json")
        if placed is not None:
            store.write("transform.json", placed)
    with peak_memory() as peak, executor(workers) as pool:
        report = write_collection(table, request, store, place, pool, workers, budget, overwrite, progress)
    return replace(report, output=str(output), seconds=time.monotonic() - started, peak_memory=peak.bytes)


def checked(table: str | os.PathLike, options: AnnotationOptions) -> TableRequest:
    """The table and options checked before any work: its header read, the columns found."""
    if options.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {options.limit}")
    parse_sharding(options.sharding)
    request = Request(options.type, options.columns, options.relationships)
    header(Table.open(table), request)
    return TableRequest(options, request)


@dataclass(frozen=True)
class TableRequest:
    """Checked options of a collection (`checked`)."""

    options: AnnotationOptions
    request: Request


def write_collection(table: str | os.PathLike, checked: TableRequest, store: Store, place: Placement,
                     pool: TaskExecutor, workers: int, budget: int, overwrite: bool = False,
                     progress: Callable[[str, int, int], None] | None = None,
                     should_stop: Callable[[], bool] = lambda: False) -> AnnotationsReport:
    """The collection of `table` written to `store` on `workers` of `pool` within `budget`: by
    `streamconv annotations`, or after a conversion's pyramid (`AnnotationTable`). Resumes an
    unfinished run of the same job; `should_stop`: stop at the next task (resumable)."""
    options = checked.options
    sharding = parse_sharding(options.sharding)
    source = Table.open(table)
    columns = header(source, checked.request)
    if not isinstance(store, LocalStore):
        raise UsageError(f"{store.url}: annotations are written to a local directory (their sort runs "
                         "are read by memory map); write locally, then copy")
    record = json.loads(json.dumps({"table": source.fingerprint(), "options": asdict(options),
                                     "placement": asdict(place), "seed": SEED,
                                     "writes": _writes(columns.relationships)}))
    found = prepare_output(store, record["writes"], record, overwrite, True, STEP)
    if found == COMPLETE:
        done = read_job(store, STEP) or {}
        return AnnotationsReport(store.url, columns.type.name, int(done.get("annotations", 0)),
                                 int(done.get("levels", 0)), 0, 0, 0.0, 0, complete=True)
    journal = Journal(store, STEP)
    if found != START and journal.restarted():
        found = START
    spool = store.root / SPOOL
    finished: set[tuple[int, int]] = set()
    if found == START:
        for key in [*record["writes"], SPOOL, f"{STATE}/journal"]:
            store.delete(key)
        write_job(store, {"job": record, "complete": False}, STEP)
    else:
        finished = journal.completed()
    spool.mkdir(parents=True, exist_ok=True)
    journal.open()
    try:
        per_worker = budget // (max(workers, 1) + 1)
        rows = int(min(MAX_ROWS, max(MIN_ROWS, per_worker // BYTES_PER_ROW)))
        found_ingest = Ingested.load(spool, columns)
        if found_ingest is None:
            if progress:
                progress("reading the table", 0, 1)
            found_ingest = ingest(source, columns, place, spool, rows)
            found_ingest.save(spool)
        plan = _plan(spool, found_ingest, place.resolution, options.limit, sharding, pool, workers)
        ahead = 2 * max(workers, 1)
        todo = [p for p in range(plan.pieces) if (1, p) not in finished]
        for count, piece in enumerate(bounded(pool, ahead, should_stop,
                                              ((_numbered, p, encode_piece, str(spool), plan, p)
                                               for p in todo))):
            journal.record(1, piece)
            if progress:
                progress("sorting", count + 1, len(todo))
        units = [(index, shard) for index in plan.indexes for shard in range(1 << index.spec.shard_bits)]
        todo_units = [n for n in range(len(units)) if (2, n) not in finished]
        calls = ((write_unit, store, str(spool), plan, units[n][0], units[n][1], n) for n in todo_units)
        for count, done in enumerate(bounded(pool, ahead, should_stop, calls)):
            (spool / "units").mkdir(exist_ok=True)
            (spool / "units" / str(done.number)).write_text(json.dumps(asdict(done)))
            journal.record(2, done.number)
            if progress:
                progress("writing", count + 1, len(todo_units))
        if should_stop():
            raise Interrupted("annotations: stopped")
    finally:
        journal.close()
    results = [UnitDone(**json.loads((spool / "units" / str(n)).read_text())) for n in range(len(units))]
    largest = {i: max([r.largest for r, (index, _) in zip(results, units) if index is i], default=0)
               for i in plan.indexes}
    info = collection_info(plan, largest)
    store.write("info", json.dumps(info, indent=1).encode(), durable=True)
    shutil.rmtree(spool, ignore_errors=True)
    if store.can.sync:
        store.sync()
    write_job(store, {"job": record, "complete": True, "annotations": plan.rows,
                      "levels": len(plan.levels)}, STEP)
    return AnnotationsReport(store.url, plan.schema.type.name, plan.rows, len(plan.levels),
                             sum(r.files for r in results) + 1, sum(r.bytes for r in results),
                             0.0, 0, resumed=bool(finished))


def _numbered(number: int, function: Callable[..., object], *args: object) -> int:
    function(*args)
    return number


def histogram_piece(spool: str, levels: list[Level], lower: np.ndarray, kind: str, piece: int) -> list[np.ndarray]:
    """A worker's task: per level, how many of the piece's annotations meet each cell."""
    from .schema import TYPES
    geometry = np.load(Path(spool) / "pieces" / f"{piece}.npz")["geometry"]
    low, high = TYPES[kind].extent(geometry)
    return [histogram(level, lower, low, high) for level in levels]


def _plan(spool: Path, found: Ingested, resolution: tuple[float, float, float], limit: int,
          sharding: Sharding, pool: TaskExecutor, workers: int) -> Plan:
    """The plan (`plan.json` once made: a resumed run keeps it)."""
    path = spool / "plan.json"
    if path.exists():
        return Plan.from_dict(json.loads(path.read_text()))
    schema, remaps = schema_of(found.columns, found.kinds)
    lower = np.floor(found.lower)
    upper = np.maximum(np.floor(found.upper) + 1, lower + 1)
    levels = plan_levels(lower, upper, np.asarray(resolution))
    counts: list[np.ndarray] = [np.zeros(lv.cells, np.int64) for lv in levels]
    calls = ((histogram_piece, str(spool), levels, lower, schema.type.option, p) for p in range(found.pieces))
    for part in bounded(pool, 2 * max(workers, 1), lambda: False, calls):
        for total, add in zip(counts, part):
            total += add
    maxima = [int(c.max()) for c in counts]
    starts = thresholds(maxima, limit)
    levels = levels[:len(starts)]
    entry = schema.record_size + 8
    indexes: list[Index] = [hashed_index(BY_ID, 0, "by_id", found.rows, sharding)]
    for number, level in enumerate(levels):
        cells = int(np.count_nonzero(counts[number]))
        indexes.append(spatial_index(number, level, cells, min(limit, maxima[number]) * entry, SHARD_BYTES,
                                     sharding))
    for r, rel in enumerate(schema.relationships):
        indexes.append(hashed_index(RELATED, r, rel.key, max(found.related[r], 1), sharding))
    plan = Plan(schema, {k: v.tolist() for k, v in remaps.items()}, tuple(lower.tolist()),
                tuple(upper.tolist()), resolution, tuple(levels), tuple(starts), SEED,
                tuple(indexes), found.pieces, found.rows)
    temporary = spool / ".plan.json"
    temporary.write_text(json.dumps(plan.to_dict()))
    temporary.replace(path)
    return plan


