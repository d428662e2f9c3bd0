"""The one-pass commands: `convert` (a volume or slice stack to a whole pyramid), `convert-chunks`
(re-encode a pyramid) and `verify` (check an output against its input)."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Optional

import typer

from ..convert import convert as convert_volume
from ..convert_chunks import convert_chunks
from ..engine.budget import format_size
from ..verify import verify as verify_output
from .app import app
from .options import (
    ChunkEncoding,
    ChunkSize,
    CsegBlockSize,
    Downscaling,
    Encoding,
    FileOptions,
    IgnoreScaling,
    JpegPlane,
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
    bundled,
    xyz,
)
from .running import engine_run, reported_errors, summary


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
    encoding: ChunkEncoding = "raw",
    jpeg_quality: JpegQuality = 90,
    jpeg_plane: Annotated[Plane, typer.Option(
        help="Plane of the JPEG images, as neuroglancer-scripts.")] = "xy",
    cseg_block_size: CsegBlockSize = "8,8,8",
    gzip: Annotated[bool, typer.Option(
        help="Write gzip-compressed <chunk>.gz files (with --sharding: gzip the chunks in the "
             "shards).")] = False,
    outside_value: OutsideValue = None,
    skip_empty: Annotated[bool, typer.Option(help="Do not write chunks that are all zero.")] = False,
    sharding: ShardingMode = "off",
    shard_size: ShardSize = "2GiB",
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Write nothing: print the pyramid, memory, disk and estimated time.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="With --dry-run: print JSON.")] = False,
    segment_names: SegmentNames = None,
    meshes: Meshes = False,
    mesh_format: MeshFormatOption = "multilod",
    *,
    run: RunOptions,
) -> None:
    """Convert a volume or slice stack: info, full-resolution chunks and every scale, in one pass."""
    block = xyz(cseg_block_size, "--cseg-block-size")
    if json_output and not dry_run:
        raise typer.BadParameter("--json goes with --dry-run", param_hint="--json")
    with engine_run(run if not dry_run else dataclasses.replace(run, quiet=True)) as progress:
        report = convert_volume(
            input, run.at(output), volume_type=type, chunk_size=chunk_size, max_scales=max_scales,
            downsampling_method=downsampling, outside_value=outside_value,
            ignore_scaling=ignore_scaling, resolution=resolution,
            input_orientation=input_orientation, fill_missing=fill_missing,
            encoding=encoding, jpeg_quality=jpeg_quality, jpeg_plane=jpeg_plane,
            cseg_block_size=block, gzip=gzip, skip_empty=skip_empty, sharding=sharding,
            shard_size=shard_size, segment_names=segment_names,
            meshes=meshes, mesh_format=mesh_format, **run.engine(), progress=progress,
            dry_run=dry_run)
    if report.estimate is not None:
        typer.echo(json.dumps(report.estimate.to_dict(), indent=1) if json_output
                   else report.estimate.describe())
        return
    summary(report, run)


@app.command("convert-chunks")
@bundled(files=("gzip", "flat"), run=("memory", "workers", "overwrite", "quiet", "debug", "storage_option"))
def convert_chunks_command(
    source: Annotated[str, typer.Argument(help="A precomputed volume: a directory or an http(s) URL.")],
    destination: Annotated[str, typer.Argument(help="The directory to write the re-encoded chunks to.")],
    encoding: Annotated[Optional[Encoding], typer.Option(
        help="Target encoding of every scale [default: from the destination's info]")] = None,
    copy_info: Annotated[bool, typer.Option(help="Keep the source's encoding (and copy its info).")] = False,
    jpeg_quality: JpegQuality = 90,
    jpeg_plane: JpegPlane = "xy",
    cseg_block_size: CsegBlockSize = "8,8,8",
    sharding: Annotated[Optional[str], typer.Option(
        "--sharding", help="off: unshard; auto or PRESHIFT,MINISHARD,SHARD: shard every scale "
                           "[default: as the source]")] = None,
    shard_size: ShardSize = "2GiB",
    *,
    files: FileOptions,
    run: RunOptions,
) -> None:
    """Re-encode an existing pyramid into a new directory (as neuroglancer-scripts' convert-chunks)."""
    block = xyz(cseg_block_size, "--cseg-block-size")
    with reported_errors(run.debug):
        done = convert_chunks(run.at(source), run.at(destination), encoding=encoding, copy_info=copy_info,
                              jpeg_quality=jpeg_quality, jpeg_plane=jpeg_plane, cseg_block_size=block,
                              gzip=files.gzip, sharding=sharding, shard_size=shard_size,
                              memory=run.memory, workers=run.workers, overwrite=run.overwrite)
    if not run.quiet:
        typer.echo(f"{destination}: {done.chunks - done.absent} chunks re-encoded "
                   f"({done.absent} absent), {format_size(done.bytes_written)}", err=True)


@app.command()
@bundled(run=("debug", "storage_option"))
def verify(
    input: Annotated[str, typer.Argument(help="The input the output was converted from.")],
    output: Annotated[str, typer.Argument(help="A precomputed volume on disk, ours or another tool's.")],
    ignore_scaling: Annotated[bool, typer.Option(help="As given to convert.")] = False,
    resolution: Annotated[Optional[str], typer.Option(help="As given to convert.")] = None,
    input_orientation: Annotated[Optional[str], typer.Option(help="As given to convert.")] = None,
    fill_missing: Annotated[Optional[float], typer.Option(help="As given to convert.")] = None,
    min_psnr: Annotated[float, typer.Option(help="Lossy encodings: lowest PSNR accepted, dB.")] = 30.0,
    full: Annotated[bool, typer.Option(
        help="Derive every chunk of the lower scales again, not a sample of each scale.")] = False,
    downscaling_method: Downscaling = "auto",
    outside_value: OutsideValue = None,
    *,
    run: RunOptions,
) -> None:
    """Check an output against its input: scale 0 voxel for voxel, the lower scales derived
    again from the scale below, every chunk of every scale decoded."""
    from .annotations import verify_collection  # (imported here: it registers its command)

    if verify_collection(input, output, run):  # an annotation collection and its table
        return
    with reported_errors(run.debug):
        report = verify_output(input, run.at(output), ignore_scaling=ignore_scaling, resolution=resolution,
                               input_orientation=input_orientation, fill_missing=fill_missing,
                               min_psnr=min_psnr, full=full, outside_value=outside_value,
                               downsampling_method=None if downscaling_method == "auto"
                               else downscaling_method)
    psnr = f", scale 0 PSNR {report.min_psnr:.1f} dB" if report.min_psnr != float("inf") else ""
    summary_line = (f"{output}: {report.scales} scales, {report.chunks} chunks checked, "
                    f"{report.absent} absent (read as zeros){psnr}")
    if report.ok:
        typer.echo(f"{summary_line}: ok", err=True)
        return
    typer.echo(f"streamconv: error: {report.problems[0]}"
               + (f" (and {len(report.problems) - 1} more problems)" if len(report.problems) > 1 else ""),
               err=True)
    raise typer.Exit(1)
