"""`streamconv convert`: a volume or slice stack to a whole pyramid, in one pass."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Optional

import typer

from ..annotations.job import DEFAULT_LIMIT
from ..commands.convert import convert as convert_volume
from .app import app
from .options import (
    AnnotationColumn,
    AnnotationCoordinates,
    AnnotationLimit,
    AnnotationRelationship,
    AnnotationSharding,
    AnnotationTableFile,
    AnnotationTypeOption,
    ChunkEncoding,
    ChunkSize,
    CsegBlockSize,
    IgnoreScaling,
    JpegQuality,
    LayerType,
    MaxScales,
    Meshes,
    MeshFormatOption,
    Method,
    OutsideValue,
    Plane,
    RunOptions,
    SegmentNames,
    ShardingMode,
    ShardSize,
    VoxelOrder,
    annotation_options,
    bundled,
    xyz,
)
from .running import engine_run, summary


@app.command()
@bundled(first=("memory", "workers", "scheduler"))
def convert(
    input: Annotated[str, typer.Argument(help="A volume nibabel reads (NIfTI, MGH/MGZ, MINC, Analyze), "
                                          "or a slice stack: a directory, a quoted glob, a list file or a "
                                          "multi-page TIFF.")],
    output: Annotated[str, typer.Argument(help="Output directory.")],
    type: LayerType = "image",
    chunk_size: ChunkSize = 64,
    max_scales: MaxScales = None,
    downsampling: Annotated[Optional[Method], typer.Option(
        help="[default: average for images, majority for segmentations]")] = None,
    ignore_scaling: IgnoreScaling = False,
    resolution: Annotated[Optional[str], typer.Option(
        help="Voxel size X,Y,Z in nm, or with a unit: 20um, 0.02mm,0.02mm,0.04mm")] = None,
    input_orientation: Annotated[Optional[str], typer.Option(
        help="Slice stacks: directions of column, row and slice, e.g. RIA [default: RAS]")] = None,
    fill_missing: Annotated[Optional[float], typer.Option(
        help="Slice stacks: fill missing or unreadable sections with this value")] = None,
    voxel_order: VoxelOrder = "ras",
    encoding: ChunkEncoding = "raw",
    jpeg_quality: JpegQuality = 90,
    jpeg_plane: Annotated[Plane, typer.Option(
        help="Plane of the JPEG images, as neuroglancer-scripts.")] = "xy",
    cseg_block_size: CsegBlockSize = "8,8,8",
    gzip: Annotated[bool, typer.Option(
        help="Write gzip-compressed <chunk>.gz files (with --sharding: gzip the chunks in the "
             "shards).")] = False,
    outside_value: OutsideValue = None,
    skip_empty: Annotated[bool, typer.Option("--skip-empty", help="Do not write chunks that are all zero.")] = False,
    sharding: ShardingMode = "off",
    shard_size: ShardSize = "2GiB",
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Write nothing: print the pyramid, memory, disk and estimated time.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="With --dry-run: print JSON.")] = False,
    segment_names: SegmentNames = None,
    meshes: Meshes = False,
    mesh_format: MeshFormatOption = "multilod",
    annotations: AnnotationTableFile = None,
    annotation_type: AnnotationTypeOption = None,
    annotation_column: AnnotationColumn = None,
    annotation_relationship: AnnotationRelationship = None,
    annotation_coordinates: AnnotationCoordinates = "voxel",
    annotation_limit: AnnotationLimit = DEFAULT_LIMIT,
    annotation_sharding: AnnotationSharding = "auto",
    *,
    run: RunOptions,
) -> None:
    """Convert a volume or slice stack: info, full-resolution chunks and every scale, in one pass."""
    block = xyz(cseg_block_size, "--cseg-block-size")
    table_options = annotation_options(annotation_type, annotation_column, annotation_relationship,
                                       annotation_coordinates, annotation_limit, annotation_sharding)
    if json_output and not dry_run:
        raise typer.BadParameter("--json goes with --dry-run", param_hint="--json")
    with engine_run(run if not dry_run else dataclasses.replace(run, quiet=True)) as progress:
        report = convert_volume(
            input, run.at(output), volume_type=type, chunk_size=chunk_size, max_scales=max_scales,
            downsampling_method=downsampling, outside_value=outside_value,
            ignore_scaling=ignore_scaling, resolution=resolution,
            input_orientation=input_orientation, fill_missing=fill_missing, voxel_order=voxel_order,
            encoding=encoding, jpeg_quality=jpeg_quality, jpeg_plane=jpeg_plane,
            cseg_block_size=block, gzip=gzip, skip_empty=skip_empty, sharding=sharding,
            shard_size=shard_size, segment_names=segment_names,
            meshes=meshes, mesh_format=mesh_format, annotations=annotations,
            annotation_options=table_options, **run.engine(), progress=progress,
            dry_run=dry_run)
    if report.estimate is not None:
        typer.echo(json.dumps(report.estimate.to_dict(), indent=1) if json_output
                   else report.estimate.describe())
        return
    summary(report, run)
