"""`convert-chunks`: re-encode an existing pyramid (ours or anyone's, on disk or over http)
into a new directory, in parallel, as neuroglancer-scripts' convert-chunks does.

The target encoding comes from `encoding` (every scale), or from the source (`copy_info`), or
from an info file already in the destination (made by `generate-scales-info --encoding`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..encodings import Codec, Compression, compression, make_codec
from ..engine.budget import check_chunk_tasks
from ..engine.executor import bounded, executor
from ..engine.job import resources
from ..engine.journal import CHUNKS, COMPLETE, STATE_DIR, boot_id, locked, prepare_output, write_job
from ..engine.runner import stop_on_signals
from ..errors import UsageError
from ..format.geometry import Box, Scale
from ..format.info import VolumeInfo
from ..format.sharding import ShardingSpec, chunk_ids
from ..format.sharding_choice import apply_sharding, parse_sharding
from ..layout.dataset import Dataset, open_dataset, read_info
from ..layout.sink import ChunkSink, FileSink, Finish
from ..layout.spool import AssembleShard, ShardSpool
from ..layout.statsfile import FILE as STATS
from ..sources.placement import PLACEMENT_FILES
from ..stores import Where, open_output
from ..stores.base import Store
from ..units import parse_size

#: where convert-chunks spools a shard's chunks while it re-encodes them
WORK = f"{STATE_DIR}/convert-chunks"
SPOOL = f"{WORK}/spool"


@dataclass(frozen=True)
class Recoded:
    chunks: int
    absent: int
    bytes_written: int


def target_info(source: VolumeInfo, destination: Store, encoding: str | None, copy_info: bool,
                jpeg_quality: int, jpeg_plane: str,
                cseg_block_size: tuple[int, int, int]) -> VolumeInfo:
    """The destination's info: the source's with each scale's encoding replaced."""
    if encoding is None and not copy_info:
        existing = read_info(destination)
        if existing is None:
            raise UsageError("give --encoding, or --copy-info, or create the destination's info first "
                             "(generate-scales-info --encoding)")
        return existing
    if encoding is None:
        return source
    return source.with_codec(make_codec(encoding, jpeg_quality=jpeg_quality, jpeg_plane=jpeg_plane,
                                        cseg_block_size=cseg_block_size))


def _recode(src: Dataset, level: int, boxes: list[Box], sink: ChunkSink, scale: Scale, codec: Codec,
            dtype: str, then: Finish | None = None) -> tuple[int, int, int]:
    """Worker task: re-encode some chunks of one scale into the sink (chunk files, or the
    spool segment of one shard, which `then` assembles), as the destination's `scale`.
    Returns (chunks, absent, bytes)."""
    out = sink.open(level, scale, Box(boxes[0].start, boxes[-1].stop))
    absent = nbytes = 0
    for box in boxes:
        chunk = src.read_chunk(level, box)
        if chunk is None:
            absent += 1
            continue
        nbytes += out.put(box, codec.encode(chunk.astype(dtype, copy=False)))
    out.close()
    if then is not None:
        then.run()
    return len(boxes), absent, nbytes


def _shards(scale: Scale, spec: ShardingSpec) -> dict[int, list[Box]]:
    """The chunks of each shard of a sharded scale."""
    codes, cells = chunk_ids(scale.grid)
    out: dict[int, list[Box]] = {}
    for shard, (x, y, z) in zip(spec.shard_numbers(codes).tolist(), cells.T.tolist()):
        out.setdefault(shard, []).append(scale.chunk(x, y, z))
    return out


BATCH = 64  # chunks per task: a task's arguments stay small whatever the grid


def convert_chunks(source: Where, destination: Where, *,
                   encoding: str | None = None, copy_info: bool = False, jpeg_quality: int = 90,
                   jpeg_plane: str = "xy", cseg_block_size: tuple[int, int, int] = (8, 8, 8),
                   gzip: bool = False, sharding: str | None = None, shard_size: str | int = "2GiB",
                   memory: str | int | None = None, workers: int | None = None,
                   overwrite: bool = False, compresslevel: int = 6) -> Recoded:
    """Re-encode every chunk of `source` into `destination`; absent chunks stay absent.
    `sharding` (off, auto, PRESHIFT,MINISHARD,SHARD) shards or unshards every scale; by default
    the destination is sharded as the target info says (the source's).

    Like every writing command it holds the destination's lock and keeps a job record
    (`.streamconv/chunks/`): a second writer is refused, an interrupted run is run again (every
    chunk rewritten, atomically), a finished one is refused unless `overwrite`. The `info` is
    written last. Re-encoding in place is refused: the source would be overwritten chunk by
    chunk, and a run killed half-way would leave neither pyramid.
    """
    dst = open_output(destination)
    src = open_dataset(source)
    _refuse_in_place(src.store, dst)
    info = target_info(src.info, dst, encoding, copy_info, jpeg_quality, jpeg_plane, cseg_block_size)
    if sharding is not None:
        info = apply_sharding(info.with_sharding([None] * len(info.scales)),
                              parse_sharding(sharding, parse_size(shard_size)), gzip)
    if len(info.scales) != len(src.scales) or any(
            (a.size, a.chunk_size) != (b.size, b.chunk_size)
            for a, b in zip(info.geometry, src.scales)):
        raise UsageError("the destination's info does not have the source's scales and chunk sizes")
    workers, budget = resources(workers, memory)
    chunk_bytes = max(math.prod(s.chunk_size) for s in src.scales) * src.num_channels * 8
    check_chunk_tasks(workers, budget, chunk_bytes, "convert-chunks")
    for target in info.scales:
        type(target.codec).check(info.dtype, info.num_channels, info.type)
    record = {"source": src.store.url, "source_info": src.info.to_dict(), "info": info.to_dict(),
              "gzip": gzip, "level": compresslevel if gzip else None}
    keys = [s.key for s in info.geometry]
    with locked(dst):
        if prepare_output(dst, keys, record, overwrite, resume=True, step=CHUNKS) == COMPLETE:
            return Recoded(0, 0, 0)  # the same re-encoding finished already: nothing to do
        write_job(dst, {"job": record, "complete": False}, CHUNKS)
        with stop_on_signals() as stop:
            total = _recode_all(src, dst, info, compression(gzip, compresslevel), workers, stop.is_set)
        dst.delete(WORK)
        for key in PLACEMENT_FILES:  # the same voxels in the same place
            if (placed := src.store.read(key)) is not None:
                dst.write(key, placed)
        if (stats := src.store.read(STATS)) is not None:  # the values are the source's, re-encoded
            dst.write(STATS, stats)
        dst.write("info", info.to_json(), durable=True)
        write_job(dst, {"job": record, "complete": True, "boot": boot_id()}, CHUNKS)
    return total


def _refuse_in_place(src: Store, dst: Store) -> None:
    try:
        same = os.path.samefile(src.url, dst.url)
    except OSError:  # a URL, or a destination not made yet
        same = False
    if same:
        raise UsageError(f"{dst.url}: convert-chunks does not re-encode in place (a killed run "
                         "would leave neither pyramid); give another DESTINATION")


def _recode_all(src: Dataset, dst: Store, info: VolumeInfo, step: Compression, workers: int,
                should_stop: Callable[[], bool]) -> Recoded:
    spool = ShardSpool(dst, SPOOL, tuple(s.sharding for s in info.scales), FileSink(dst, step), step)
    # the stored chunks of each plain scale, when the source can list them (None: every cell)
    stored = [None if spec is not None else src.stored_cells(level) for level, spec in enumerate(spool.specs)]
    unstored = sum(scale.num_chunks - len(cells) for scale, cells in zip(info.geometry, stored) if cells is not None)
    total = Recoded(unstored, unstored, 0)
    in_flight = 4 * max(workers, 1)  # bounded queue: memory stays flat on any number of chunks
    with executor(workers) as pool:
        for chunks, absent, nbytes in bounded(pool, in_flight, should_stop, _calls(src, dst, info, spool, stored),
                                              "convert-chunks"):
            total = Recoded(total.chunks + chunks, total.absent + absent, total.bytes_written + nbytes)
    return total


def _calls(src: Dataset, dst: Store, info: VolumeInfo, spool: ShardSpool,
           stored: list[list[tuple[int, int, int]] | None]) -> Iterator[tuple[Any, ...]]:
    """The tasks, scale by scale: a task per shard of a sharded scale (its chunks, then the
    shard file), a batch of chunks per task elsewhere."""
    for level in range(len(src.scales)):
        codec, spec, scale = info.scales[level].codec, spool.specs[level], info.geometry[level]
        tasks: Iterable[tuple[list[Box], Finish | None]]
        if spec is not None:
            tasks = [(boxes, AssembleShard(dst, SPOOL, scale, spec, shard))
                     for shard, boxes in _shards(scale, spec).items()]
        else:
            tasks = ((batch, None) for batch in _batches(scale, stored[level]))
        for boxes, then in tasks:
            yield _recode, src, level, boxes, spool, scale, codec, info.data_type, then


def _batches(scale: Scale, cells: list[tuple[int, int, int]] | None) -> Iterator[list[Box]]:
    """The chunks to re-encode, `BATCH` at a time: the stored ones when known, else every
    cell of the grid, row by row."""
    if cells is not None:
        for i in range(0, len(cells), BATCH):
            yield [scale.chunk(*cell) for cell in cells[i:i + BATCH]]
        return
    gx, gy, gz = scale.grid
    for k in range(gz):
        for j in range(gy):
            for i0 in range(0, gx, BATCH):
                yield [scale.chunk(i, j, k) for i in range(i0, min(i0 + BATCH, gx))]
