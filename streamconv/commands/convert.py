"""The library API: `convert(input, output)` does a whole conversion; the CLI calls this."""

from __future__ import annotations

import os

from ..annotations.beside import AnnotationTable
from ..annotations.job import AnnotationOptions
from ..encodings import ChunkFormat, compression, make_codec
from ..engine.job import Job, check_outside_value, closing_on_error, job_record, plan_job, resources
from ..engine.runner import ProgressFactory, Report, run_job
from ..format.geometry import parse_resolution
from ..format.pyramid import plan_pyramid
from ..format.sharding_choice import DEFAULT_SHARD_SIZE, apply_sharding, parse_sharding
from ..kernels import downsampling
from ..sources import Source, open_source
from ..sources.placement import placement_files
from ..stores import Where
from ..stores.base import Store
from ..units import parse_size
from .annotate import make_annotations

__all__ = ["convert", "Report"]


def convert(input: str | os.PathLike, output: Where, *, volume_type: str = "image",
            chunk_size: int = 64, max_scales: int | None = None, downsampling_method: str | None = None,
            outside_value: float | None = None, memory: str | int | None = None,
            workers: int | None = None, ignore_scaling: bool = False,
            input_range: tuple[float, float] | None = None,
            resolution: str | tuple[float, float, float] | None = None,
            input_orientation: str | None = None, fill_missing: float | None = None,
            voxel_order: str = "ras",
            encoding: str = "raw", jpeg_quality: int = 90, jpeg_plane: str = "xy",
            cseg_block_size: tuple[int, int, int] = (8, 8, 8), gzip: bool = False,
            compresslevel: int = 6, skip_empty: bool = False, sharding: str = "off",
            shard_size: str | int = DEFAULT_SHARD_SIZE, overwrite: bool = False,
            resume: bool = True, scheduler: str | None = None,
            segment_names: str | os.PathLike | None = None, meshes: bool = False,
            mesh_format: str = "multilod", annotations: str | os.PathLike | None = None,
            annotation_options: AnnotationOptions | None = None, progress: ProgressFactory | None = None,
            dry_run: bool = False) -> Report:
    """Convert a volume or a slice stack to a precomputed pyramid: info, full resolution and
    every scale.

    `input` is a volume file nibabel reads, or a slice stack: a directory of sections, a glob,
    a text file listing sections, or a multi-page TIFF (`input_orientation`: a code such as
    RIA, as neuroglancer-scripts; `fill_missing`: the value of missing or unreadable sections).
    `voxel_order` `ras` (the default) stores a volume's voxels in the RAS order closest to its
    affine, `file` in the file's own order; either way `transform.json` and `placement.json`
    say where they lie in the input's world (docs/coordinates.md).
    `resolution` ('20um', or X,Y,Z in nm) overrides what the input says; `input_range` maps
    those input values onto 0..1 in float32 (neuroglancer-scripts' --input-min/--input-max).
    `encoding` is raw, jpeg, png or compressed_segmentation; `gzip` writes `<chunk>.gz` files
    (at `compresslevel`), or gzips the chunks in the shards. `sharding` is off, auto (shards of
    about `shard_size` bytes of chunk data before compression: '2GiB') or
    PRESHIFT,MINISHARD,SHARD bits for every scale.
    `outside_value`: average downsampling counts the voxels past odd edges as this value.
    `memory` bounds the whole process tree ('512MiB'; default: half of the available memory);
    `workers` is the number of processes (default: CPU count; 0 runs everything in this
    process). `scheduler` runs the tasks on a Dask cluster (tcp://host:port, or `local` for a
    LocalCluster of `workers` processes); `memory` is then the budget of each Dask worker, and
    the input and output must be at the same paths on every worker. Segmentations:
    `segment_names` (a FreeSurfer LUT, FSL atlas XML, TSV, CSV or JSON table) writes
    `segment_properties`; `meshes` writes every label's surface (`mesh_format` multilod,
    Neuroglancer's multi-resolution Draco meshes, or legacy). `annotations`, a table of
    points, lines, boxes or ellipsoids (`annotation_options`: its type, columns, coordinates in
    voxels of this volume or mm of its world space...), is written as an annotation collection
    in `OUTPUT/annotations/` (docs/annotations.md). An output holding an unfinished
    run of the same conversion is resumed (`resume=False` refuses); `overwrite` starts over.
    `progress`, given the scales, returns a callback fed (scale, chunks, bytes). `dry_run`
    writes nothing: the report's `estimate` says what the run would write, the memory, disk and
    time it would take.
    """
    method = downsampling_method or downsampling.default_method(volume_type)
    downsampling.check_method(method)
    workers, budget = resources(workers, memory)
    if isinstance(resolution, str):
        resolution = parse_resolution(resolution)
    codec = make_codec(encoding, jpeg_quality=jpeg_quality, jpeg_plane=jpeg_plane,
                       cseg_block_size=cseg_block_size)
    choice = parse_sharding(sharding, parse_size(shard_size))
    table = None if annotations is None else AnnotationTable.of(annotations, annotation_options or AnnotationOptions())
    after = make_annotations(volume_type, segment_names, meshes, mesh_format, sharding=choice, table=table)
    annotated = {} if after is None else {"annotations": after.record()}

    def describe(store: Store) -> tuple[Source, Job]:
        if table is not None:
            table.check_output(store)
        source = open_source(input, ignore_scaling=ignore_scaling, resolution=resolution,
                             orientation=input_orientation, fill_missing=fill_missing,
                             input_range=input_range, voxel_order=voxel_order)
        with closing_on_error(source):
            scales, info = plan_pyramid(source.shape, source.resolution, source.dtype,
                                        source.num_channels, volume_type, chunk_size, max_scales, codec)
            info = apply_sharding(info, choice, gzip)
            check_outside_value(outside_value, source.dtype)
            plan = plan_job(scales, source, workers, budget, store, scheduler)
            record = job_record(source, plan, info=info.to_dict(), downsampling=method,
                                outside_value=outside_value, encoding=repr(codec), gzip=gzip,
                                level=compresslevel if gzip else None, skip_empty=skip_empty, **annotated)
            return source, Job(scales, info, plan, ChunkFormat(codec, compression(gzip, compresslevel)), method,
                               skip_empty, record, outside_value=outside_value, annotations=after,
                               files=placement_files(source.placement, source.resolution))

    return run_job(describe, output, workers, overwrite, resume, progress, dry_run, scheduler)
