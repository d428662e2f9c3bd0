"""The step-by-step workflow of neuroglancer-scripts, on our engine.

    volume-to-precomputed --generate-info IN OUT   ->  OUT/info_fullres.json (check or edit it)
    generate-scales-info OUT/info_fullres.json OUT ->  OUT/info, every scale planned
    volume-to-precomputed IN OUT                   ->  full-resolution chunks (or slices-to-precomputed)
    compute-scales OUT                             ->  every lower scale, from the chunks on disk

Each step that writes chunks runs on the streaming engine with its own job record and journal
(`.streamconv/fullres`, `.streamconv/scales`), so it is parallel, bounded in memory and resumable,
and the chunk files are byte-identical to what `streamconv convert` writes for the same choices.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..encodings import CODECS, GZIP, ChunkFormat, compression, make_codec
from ..engine.budget import plan_slabs
from ..engine.executor import executor
from ..engine.job import Job, check_outside_value, closing_on_error, job_record, plan_job, resources
from ..engine.journal import finished, locked, read_job
from ..engine.pipeline import ProgressFn
from ..engine.runner import Report, run_job
from ..errors import DataError, OutputError, UsageError
from ..format.geometry import Scale, ceil_div, parse_resolution
from ..format.info import FullresInfo, VolumeInfo
from ..format.pyramid import plan_pyramid
from ..format.sharding_choice import parse_sharding
from ..format.step_sharding import check_written_sharding, fullres_sharded, parse_step_sharding, scales_sharded_as
from ..kernels import downsampling
from ..layout.dataset import Dataset, open_dataset, read_info
from ..sources import Source, open_source
from ..sources.placement import placement_files
from ..sources.precomputed import PrecomputedSource
from ..sources.rescale import Rescaled
from ..sources.stack import is_stack
from ..stores import Where, open_output, open_store
from ..stores.base import Store
from .annotate import AnnotationReport, Annotations, annotate, make_annotations

log = logging.getLogger("streamconv")

INFO_FULLRES = "info_fullres.json"
FULLRES, SCALES = "fullres", "scales"  # the steps' job records


def generate_info(input: str | os.PathLike, output: Where, *,
                  ignore_scaling: bool = False, input_range: tuple[float, float] | None = None,
                  resolution: str | None = None, input_orientation: str | None = None,
                  sharding: str | None = None, gzip: bool = False) -> str:
    """Write `output/info_fullres.json`, the full-resolution metadata of the input, for the
    user to check or edit (data type, resolution, type) before generate-scales-info, and, as
    neuroglancer-scripts, `transform.json` (the file's voxel order; with our placement.json);
    returns where it went. `sharding`: MINISHARD,SHARD,PRESHIFT bits (step_sharding.py)."""
    if sharding is not None:
        parse_step_sharding(sharding)  # a usage error before any work
    source = open_source(input, ignore_scaling=ignore_scaling, input_range=input_range,
                         resolution=parse_resolution(resolution) if resolution else None,
                         orientation=input_orientation)
    try:
        info = FullresInfo("image", source.dtype.name, source.num_channels, source.shape,
                           source.resolution, {"encoding": "raw"})
        placed = placement_files(source.placement, source.resolution)
    finally:
        source.close()
    if sharding is not None:
        info = fullres_sharded(info, sharding, gzip)
    store = open_output(output)
    with locked(store):  # not while a step runs on this output
        store.write(INFO_FULLRES, info.to_json())
        for key, data in placed:
            store.write(key, data)
    return f"{store.url}/{INFO_FULLRES}"


def generate_scales_info(fullres_info: str | os.PathLike, output: Where, *,
                         max_scales: int | None = None, target_chunk_size: int = 64,
                         volume_type: str | None = None, encoding: str | None = None,
                         jpeg_plane: str = "xy", cseg_block_size: tuple[int, int, int] = (8, 8, 8),
                         overwrite: bool = False) -> VolumeInfo:
    """Plan every scale from a full-resolution info and write `output/info`, with the same
    rules as `convert` (type and encoding default to the file's, then image and raw)."""
    try:
        data = Path(fullres_info).read_bytes()
    except OSError as exc:
        raise DataError(f"{fullres_info}: cannot read ({exc.strerror or exc})") from exc
    full = FullresInfo.parse(data, os.fspath(fullres_info))
    volume_type = volume_type or full.type
    encoding = encoding or full.encoding.get("encoding", "raw")
    block = tuple(full.encoding.get("compressed_segmentation_block_size", cseg_block_size))
    codec = make_codec(encoding, jpeg_plane=jpeg_plane, cseg_block_size=block)
    _, info = plan_pyramid(full.size, full.resolution, full.dtype, full.num_channels, volume_type,
                           target_chunk_size, max_scales, codec)
    info = scales_sharded_as(info, full, os.fspath(fullres_info))
    store = open_output(output)
    with locked(store):  # a running step writes this info at its end
        old = store.read("info")
        if old is not None and not overwrite and _parsed(old) != info.to_dict():
            raise OutputError(f"{store.url} already holds a different info file; pass --overwrite "
                              "to replace it")
        store.write("info", info.to_json(), durable=True)
    return info


def _parsed(data: bytes) -> object:
    """An existing file's JSON, or None when it is not JSON (then it differs from ours)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def write_full_resolution(input: str | os.PathLike, output: Where, *,
                          ignore_scaling: bool = False,
                          input_range: tuple[float, float] | None = None,
                          input_orientation: str | None = None, fill_missing: float | None = None,
                          gzip: bool = False, compresslevel: int = 6,
                          memory: str | int | None = None, workers: int | None = None,
                          overwrite: bool = False, resume: bool = True, scheduler: str | None = None,
                          progress: Callable[[list[Scale]], ProgressFn] | None = None,
                          sharding: str | None = None) -> Report:
    """Write the full-resolution chunks that `output/info` describes, from a volume or a slice
    stack (volume-to-precomputed, slices-to-precomputed). Values become the info's data type
    (rounded and clipped, or mapped from `input_range` onto the type's range). `scheduler`
    runs the tasks on a Dask cluster, as `convert`'s does (same bytes, same journal).
    `sharding` must be the info's (step_sharding.py): the chunks are written as it says."""
    workers, budget = resources(workers, memory)
    volume = _volume_with_info(output)
    scale, info = volume.scales[0], volume.info
    if sharding is not None:
        check_written_sharding(info, sharding, f"{volume.store.url}/info")

    def describe(store: Store) -> tuple[Source, Job]:
        # a stack's resolution is the info's; a volume's header is checked against it below
        resolution = scale.resolution if is_stack(os.fspath(input)) else None
        source = open_source(input, ignore_scaling=ignore_scaling, resolution=resolution,
                             orientation=input_orientation, fill_missing=fill_missing)
        with closing_on_error(source):
            if tuple(source.shape) != tuple(scale.size) or source.num_channels != volume.num_channels:
                raise DataError(f"{input}: {source.num_channels} channel(s) of {tuple(source.shape)} "
                                f"voxels, but {volume.store.url}/info has {volume.num_channels} of "
                                f"{tuple(scale.size)}")
            if not np.allclose(source.resolution, scale.resolution, rtol=1e-3):
                log.warning("the input's voxel size %s nm differs from the info's %s nm; the info's "
                            "is kept", source.resolution, scale.resolution)
            if source.dtype != volume.dtype or input_range is not None:
                source = Rescaled(source, volume.dtype, input_range)
            codec = info.scales[0].codec
            type(codec).check(volume.dtype, volume.num_channels, info.type)
            plan = plan_job([scale], source, workers, budget, store, scheduler)
            record = job_record(source, plan, info=info.volume_part(), encoding=repr(codec),
                                gzip=gzip, level=compresslevel if gzip else None)
            method = downsampling.default_method(info.type)  # one scale: unused
            return source, Job([scale], info, plan, ChunkFormat(codec, compression(gzip, compresslevel)),
                               method, False, record, step=FULLRES, keep_record=False)

    return run_job(describe, output, workers, overwrite, resume, progress, scheduler=scheduler)


def compute_scales(output: Where, *, downsampling_method: str = "auto",
                   outside_value: float | None = None, gzip: bool = False, compresslevel: int = 6,
                   memory: str | int | None = None, workers: int | None = None,
                   overwrite: bool = False, resume: bool = True, scheduler: str | None = None,
                   progress: Callable[[list[Scale]], ProgressFn] | None = None) -> Report:
    """Compute every scale of `output/info` below the full resolution from the chunks on disk
    (ours or another tool's), each from the one above, as `convert` does; on a Dask cluster
    with `scheduler` (the full-resolution slabs are then read back by the tasks themselves)."""
    workers, budget = resources(workers, memory)
    volume = _volume_with_info(output)
    info, scales = volume.info, volume.scales
    method = (downsampling.default_method(info.type)
              if downsampling_method == "auto" else downsampling_method)
    downsampling.check_method(method)
    check_outside_value(outside_value, volume.dtype)
    _check_pyramid(volume)
    fullres = read_job(volume.store, FULLRES)
    if fullres is not None and not finished(fullres, volume.store):
        raise OutputError(f"{volume.store.url}: the full-resolution chunks are unfinished; run "
                          "volume-to-precomputed (or slices-to-precomputed) again to finish them")
    if len({s.codec for s in info.scales[1:]}) > 1:
        raise UsageError(f"{volume.store.url}/info: the lower scales have different encodings; "
                         "one encoding for all is supported")
    codec = info.scales[-1].codec

    def describe(store: Store) -> tuple[Source, Job]:
        source = PrecomputedSource(volume)
        plan = plan_job(scales, source, workers, budget, store, scheduler)
        record = job_record(source, plan, info=info.volume_part(), downsampling=method,
                            outside_value=outside_value, encoding=repr(codec), gzip=gzip,
                            level=compresslevel if gzip else None)
        return source, Job(scales, info, plan, ChunkFormat(codec, compression(gzip, compresslevel)), method,
                           False, record, step=SCALES, first=1, outside_value=outside_value,
                           keep_record=False)

    if len(scales) == 1:
        raise UsageError(f"{volume.store.url}/info has one scale: nothing to compute")
    return run_job(describe, output, workers, overwrite, resume, progress, scheduler=scheduler)


def _volume_with_info(output: Where) -> Dataset:
    store = open_store(output)
    if store.read("info") is None:
        raise UsageError(f"{store.url}/info does not exist: run generate-scales-info first")
    return open_dataset(output)


def _check_pyramid(volume: Dataset) -> None:
    """Each scale must halve (or keep) each axis of the one above, as the engine computes."""
    for above, scale in zip(volume.scales, volume.scales[1:]):
        expected = tuple(-(-n // f) for n, f in zip(above.size, scale.factor))
        if any(f not in (1, 2) for f in scale.factor) or tuple(scale.size) != expected:
            raise UsageError(f"{volume.store.url}/info: scale {scale.key} is not {above.key} "
                             "downsampled by 1 or 2 per axis; only such pyramids are supported")




@dataclass(frozen=True)
class Stats:
    """What a pyramid costs: per scale (key, chunks, uncompressed bytes), the engine's memory,
    and the disk use each legal encoding is estimated to need (bytes)."""

    scales: list[tuple[str, int, int]]
    memory_minimum: int
    memory_comfortable: int
    workers: int
    disk: dict[str, int]
    sampled_chunks: int


def scale_stats(output: Where, *, workers: int | None = None, samples: int = 16) -> Stats:
    """Count chunks and bytes per scale; estimate disk use per encoding by encoding up to
    `samples` full-resolution chunks, when some exist already."""
    workers, _ = resources(workers, None)
    volume = _volume_with_info(output)
    itemsize = volume.dtype.itemsize * volume.num_channels
    rows = [(s.key, math.prod(ceil_div(n, c) for n, c in zip(s.size, s.chunk_size)),
             math.prod(s.size) * itemsize) for s in volume.scales]
    plan = plan_slabs(volume.scales, volume.num_channels, volume.dtype, workers, 1 << 62, True, 2)
    total = sum(r[2] for r in rows)
    codecs = {}
    for name, kind in CODECS.items():
        try:
            kind.check(volume.dtype, volume.num_channels, volume.info.type)
        except UsageError:
            continue
        codecs[name] = ChunkFormat(make_codec(name))
        codecs[f"{name}+gzip"] = ChunkFormat(make_codec(name), GZIP)
    sizes = {name: 0 for name in codecs}
    raw = sampled = 0
    scale = volume.scales[0]
    grid = list(scale.chunks_in((0, 0, 0), scale.size))
    for box in grid[::max(1, len(grid) // samples)][:samples]:
        chunk = volume.read_chunk(0, box)
        if chunk is None:
            continue
        sampled += 1
        raw += chunk.nbytes
        for name, fmt in codecs.items():
            sizes[name] += len(fmt.encode(chunk))
    disk = {name: round(total * size / raw) for name, size in sizes.items()} if raw else {}
    return Stats(rows, plan.minimum, plan.estimate, workers, disk, sampled)


__all__ = ["generate_info", "generate_scales_info", "write_full_resolution", "compute_scales",
           "scale_stats", "Stats", "INFO_FULLRES"]


def add_segment_names(output: str | os.PathLike, names: str | os.PathLike, *, memory: str | int | None = None,
                      workers: int | None = None) -> AnnotationReport:
    """`add-segment-names`: a names table as the segment properties of a segmentation on disk."""
    return _annotate(output, make_annotations("segmentation", names, False, "multilod"), memory, workers)


def generate_meshes(output: str | os.PathLike, *, mesh_format: str = "multilod", sharding: str = "off",
                    memory: str | int | None = None, workers: int | None = None, block: int | None = None,
                    overwrite: bool = False) -> AnnotationReport:
    """`generate-meshes`: every label's surface mesh, from scale 0 of a segmentation on disk
    (`block`: the edge of a meshing block in voxels; default: the largest the memory allows;
    `sharding` off, or auto: shard files keyed by label). Resumes an interrupted run; a
    finished one is left as it is unless `overwrite`, which meshes again."""
    annotations = make_annotations("segmentation", None, True, mesh_format, block, parse_sharding(sharding))
    return _annotate(output, annotations, memory, workers, overwrite)


def _annotate(output: str | os.PathLike, annotations: Annotations | None, memory: str | int | None,
              workers: int | None, overwrite: bool = False) -> AnnotationReport:
    """Annotate a pyramid on disk under its lock, then rewrite its info with the new members."""
    assert annotations is not None
    workers, budget = resources(workers, memory)
    store = open_output(output)
    info = read_info(store)
    if info is None:
        raise UsageError(f"{store.url}/info does not exist: convert the segmentation first")
    if info.type != "segmentation":
        raise UsageError(f"{store.url} is of type {info.type!r}: names and meshes need a segmentation")
    with locked(store), executor(workers) as pool:
        info, report = annotate(store, info, pool, workers, budget, annotations, overwrite=overwrite)
        if store.read("info") != info.to_json():  # a finished mesh pass found again: unchanged
            store.write("info", info.to_json(), durable=True)
    return report
