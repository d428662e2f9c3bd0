"""neuroglancer-scripts' step-by-step commands, under their names and options: info, the
full-resolution chunks, the lower scales, each a separate run (docs/workflow.md), and
`volume-to-precomputed-pyramid`, which is `convert` under neuroglancer-scripts' name."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..commands import steps as library
from ..commands.convert import convert as convert_volume
from ..units import format_size
from .app import app
from .options import (
    ChunkEncoding,
    ChunkSize,
    DatasetDir,
    Downscaling,
    Encoding,
    FileOptions,
    JpegPlane,
    LayerType,
    MaxScales,
    OutsideValue,
    PlannedDataset,
    RunOptions,
    VolumeFile,
    VolumeOptions,
    VolumeType,
    bundled,
)
from .running import engine_run, reported_errors, start_logging, summary


@app.command("volume-to-precomputed")
@bundled()
def volume_to_precomputed(
    volume_filename: VolumeFile,
    dest_url: PlannedDataset,
    generate_info: Annotated[bool, typer.Option(
        "--generate-info", help="Write DEST_URL/info_fullres.json from the volume's header, then stop.")] = False,
    sharding: Annotated[Optional[str], typer.Option(
        "--sharding", metavar="MINISHARD,SHARD,PRESHIFT",
        help="Sharded chunks, bits in neuroglancer-scripts' order: with --generate-info written into "
             "info_fullres.json (every scale gets it); when writing, the info's must match.")] = None,
    *,
    volume: VolumeOptions,
    files: FileOptions,
    run: RunOptions,
) -> None:
    """Write a volume's full-resolution chunks into the dataset that DEST_URL/info describes
    (values cast to its data type), as neuroglancer-scripts' volume-to-precomputed."""
    reading = volume.reading()
    if generate_info:
        start_logging(run)
        with reported_errors(run.debug):
            path = library.generate_info(volume_filename, run.at(dest_url), **reading, sharding=sharding,
                                         gzip=files.gzip)
        if not run.quiet:
            typer.echo(f"{path}: written; check it, then run generate-scales-info", err=True)
        return
    with engine_run(run) as progress:
        report = library.write_full_resolution(
            volume_filename, run.at(dest_url), **reading, **files.written(), **run.engine(),
            progress=progress, sharding=sharding)
    summary(report, run)


@app.command("slices-to-precomputed")
@bundled()
def slices_to_precomputed(
    slice_dirs: Annotated[list[str], typer.Argument(
        help="The slices: a directory, a quoted glob, a list file or a multi-page TIFF.")],
    dest_url: PlannedDataset,
    input_orientation: Annotated[str, typer.Option(
        help="Directions of column, row and slice, e.g. RIA (see convert).")] = "RAS",
    fill_missing: Annotated[Optional[float], typer.Option(
        help="Fill missing or unreadable sections with this value.")] = None,
    *,
    files: FileOptions,
    run: RunOptions,
) -> None:
    """Write the full-resolution chunks of a slice stack into the dataset that DEST_URL/info
    describes, as neuroglancer-scripts' slices-to-precomputed."""
    if len(slice_dirs) != 1:
        raise typer.BadParameter("one slice stack (several stacks as channels are not supported)",
                                 param_hint="SLICE_DIRS")
    with engine_run(run) as progress:
        report = library.write_full_resolution(
            slice_dirs[0], run.at(dest_url), input_orientation=input_orientation, fill_missing=fill_missing,
            **files.written(), **run.engine(), progress=progress)
    summary(report, run)


@app.command("generate-scales-info")
@bundled(run=("overwrite", "debug", "storage_option"))
def generate_scales_info(
    fullres_info: Annotated[str, typer.Argument(help="The full-resolution info (info_fullres.json).")],
    dest_url: Annotated[str, typer.Argument(help="The dataset directory: DEST_URL/info is written.")],
    max_scales: MaxScales = None,
    target_chunk_size: ChunkSize = 64,
    type: Annotated[Optional[VolumeType], typer.Option(
        "--type", help="[default: from FULLRES_INFO, else image]")] = None,
    encoding: Annotated[Optional[Encoding], typer.Option(
        help="[default: from FULLRES_INFO, else raw]")] = None,
    jpeg_plane: JpegPlane = "xy",
    *,
    run: RunOptions,
) -> None:
    """Plan every scale of the pyramid and write DEST_URL/info, with the rules of convert."""
    with reported_errors(run.debug):
        info = library.generate_scales_info(
            fullres_info, run.at(dest_url), max_scales=max_scales, target_chunk_size=target_chunk_size,
            volume_type=type, encoding=encoding, jpeg_plane=jpeg_plane, overwrite=run.overwrite)
    typer.echo(f"{dest_url.rstrip('/')}/info: {len(info.scales)} scales", err=True)


@app.command("scale-stats")
@bundled(run=("workers", "debug", "storage_option"))
def scale_stats(url: DatasetDir = ".", *, run: RunOptions) -> None:
    """Per scale: chunks and uncompressed size; the memory the engine needs; the estimated disk
    use of each encoding (from a sample of the full-resolution chunks, once they exist)."""
    with reported_errors(run.debug):
        stats = library.scale_stats(run.at(url), workers=run.workers)
    for key, chunks, size in stats.scales:
        typer.echo(f"Scale {key}: {chunks:,d} chunks, raw uncompressed size {format_size(size)}")
    typer.echo("---")
    typer.echo(f"Total: {sum(c for _, c, _ in stats.scales):,d} chunks, raw uncompressed size "
               f"{format_size(sum(s for _, _, s in stats.scales))}")
    typer.echo(f"Memory with {stats.workers} workers: at least {format_size(stats.memory_minimum)}, "
               f"{format_size(stats.memory_comfortable)} for the fastest plan")
    if stats.disk:
        typer.echo(f"Estimated disk use, from {stats.sampled_chunks} full-resolution chunks:")
        for name, size in sorted(stats.disk.items(), key=lambda item: item[1]):
            typer.echo(f"  {name}: {format_size(size)}")
    else:
        typer.echo("Estimated disk use per encoding: after the full-resolution chunks are written")


@app.command("compute-scales")
@bundled()
def compute_scales(
    work_dir: Annotated[str, typer.Argument(help="The dataset directory, with its full-resolution chunks.")],
    downscaling_method: Downscaling = "auto",
    outside_value: OutsideValue = None,
    *,
    files: FileOptions,
    run: RunOptions,
) -> None:
    """Compute every lower scale of WORK_DIR/info from the full-resolution chunks on disk."""
    with engine_run(run) as progress:
        report = library.compute_scales(
            run.at(work_dir), downsampling_method=downscaling_method, outside_value=outside_value,
            **files.written(), **run.engine(), progress=progress)
    summary(report, run)


@app.command("volume-to-precomputed-pyramid")
@bundled()
def volume_to_precomputed_pyramid(
    volume_filename: VolumeFile,
    dest_url: Annotated[str, typer.Argument(help="Output directory.")],
    *,
    volume: VolumeOptions,
    type: LayerType = "image",
    encoding: ChunkEncoding = "raw",
    downscaling_method: Downscaling = "auto",
    outside_value: OutsideValue = None,
    files: FileOptions,
    run: RunOptions,
) -> None:
    """convert for a volume, under neuroglancer-scripts' name and options (and its voxel order:
    the file's)."""
    reading = volume.reading()
    with engine_run(run) as progress:
        report = convert_volume(
            volume_filename, run.at(dest_url), volume_type=type, voxel_order="file",
            downsampling_method=None if downscaling_method == "auto" else downscaling_method,
            outside_value=outside_value, encoding=encoding, **reading, **files.written(),
            **run.engine(), progress=progress)
    summary(report, run)
