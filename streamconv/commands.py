"""The command line: a thin typer layer over the library API."""

from __future__ import annotations

import logging
import sys
from enum import Enum
from typing import Annotated, Optional

import typer

from .convert import Report
from .convert import convert as convert_volume
from . import meshes, steps
from .convert_chunks import convert_chunks
from .engine.plan import format_size
from .errors import StreamconvError
from .progress import scale_bars, wanted
from .verify import verify as verify_output

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Convert brain-imaging data to the Neuroglancer precomputed format.")


@app.callback()
def _group() -> None:
    """Convert brain-imaging data to the Neuroglancer precomputed format."""


class VolumeType(str, Enum):
    image = "image"
    segmentation = "segmentation"


class Encoding(str, Enum):
    raw = "raw"
    jpeg = "jpeg"
    png = "png"
    compressed_segmentation = "compressed_segmentation"


class Plane(str, Enum):
    xy = "xy"
    xz = "xz"


class Method(str, Enum):
    average = "average"
    majority = "majority"
    stride = "stride"


Memory = Annotated[Optional[str], typer.Option(
    help="Bound on the memory of the whole process tree, e.g. 512MiB, 8GiB "
         "[default: half of the available memory]")]
Workers = Annotated[Optional[int], typer.Option(
    help="Worker processes [default: CPU count]; 0 runs everything in one process")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log the plan (slabs, workers, memory).")]
Debug = Annotated[bool, typer.Option(help="Show the traceback of an error.")]
Overwrite = Annotated[bool, typer.Option(help="Replace what the output already holds.")]
Resume = Annotated[bool, typer.Option(
    help="Finish an unfinished run of the same step in the output; --no-resume refuses.")]
# neuroglancer-scripts' file options. Their defaults differ: we write flat, uncompressed
# chunks, what Neuroglancer and tensorstore read from any static server (docs/cli.md).
Gzip = Annotated[bool, typer.Option("--gzip/--no-gzip", " /--no-compression",
                                    help="Write gzip-compressed <name>.gz files.")]
CompressLevel = Annotated[int, typer.Option(min=0, max=9, help="gzip compression level.")]
Flat = Annotated[bool, typer.Option(
    "--flat", help="Accepted for neuroglancer-scripts scripts: chunks are always stored flat.")]
IgnoreScaling = Annotated[bool, typer.Option(help="Ignore the header's scl_slope/scl_inter.")]
InputMin = Annotated[Optional[float], typer.Option(
    help="Input value mapped to the lowest value of the output type (with --input-max).")]
InputMax = Annotated[Optional[float], typer.Option(
    help="Input value mapped to the highest value of the output type (1.0 for float32).")]
Mmap = Annotated[bool, typer.Option(
    "--mmap/--load-full-volume", hidden=True,
    help="Accepted for neuroglancer-scripts scripts: volumes are always streamed.")]
OutsideValue = Annotated[Optional[float], typer.Option(
    help="Average downsampling: the value of the voxels past an odd edge (e.g. 255 for a white "
         "background) [default: edge blocks average their voxels only]")]


@app.command()
def convert(
    input: Annotated[str, typer.Argument(help="A volume nibabel reads (NIfTI, MGH/MGZ, MINC, Analyze), "
                                          "or a slice stack: a directory, a quoted glob, a list file or a "
                                          "multi-page TIFF.")],
    output: Annotated[str, typer.Argument(help="Output directory.")],
    memory: Memory = None,
    workers: Workers = None,
    type: Annotated[VolumeType, typer.Option("--type", help="Layer type.")] = VolumeType.image,
    chunk_size: Annotated[int, typer.Option(help="Chunk edge in voxels, a power of two.")] = 64,
    max_scales: Annotated[Optional[int], typer.Option(help="At most this many scales.")] = None,
    downsampling: Annotated[Optional[Method], typer.Option(
        help="[default: average for images, majority for segmentations]")] = None,
    ignore_scaling: Annotated[bool, typer.Option(help="Ignore the header's scl_slope/scl_inter.")] = False,
    resolution: Annotated[Optional[str], typer.Option(
        help="Voxel size X,Y,Z in nm, or with a unit: 20um, 0.02mm,0.02mm,0.04mm")] = None,
    input_orientation: Annotated[Optional[str], typer.Option(
        help="Slice stacks: directions of column, row and slice, e.g. RIA [default: RAS]")] = None,
    fill_missing: Annotated[Optional[float], typer.Option(
        help="Slice stacks: fill missing or unreadable sections with this value")] = None,
    encoding: Annotated[Encoding, typer.Option(help="Chunk encoding.")] = Encoding.raw,
    jpeg_quality: Annotated[int, typer.Option(help="JPEG quality, 1-100.")] = 90,
    jpeg_plane: Annotated[Plane, typer.Option(help="Plane of the JPEG images, as neuroglancer-scripts.")] = Plane.xy,
    cseg_block_size: Annotated[str, typer.Option(help="compressed_segmentation block, X,Y,Z.")] = "8,8,8",
    gzip: Annotated[bool, typer.Option(help="Write gzip-compressed <chunk>.gz files.")] = False,
    outside_value: OutsideValue = None,
    skip_empty: Annotated[bool, typer.Option(help="Do not write chunks that are all zero.")] = False,
    overwrite: Overwrite = False,
    resume: Resume = True,
    quiet: Quiet = False,
    verbose: Verbose = False,
    debug: Debug = False,
) -> None:
    """Convert a volume or slice stack: info, full-resolution chunks and every scale, in one pass."""
    _logging(verbose)
    with _errors(debug), scale_bars(wanted(quiet)) as progress:
        report = convert_volume(
            input, output, volume_type=type.value, chunk_size=chunk_size, max_scales=max_scales,
            downsampling_method=downsampling.value if downsampling else None,
            outside_value=outside_value, memory=memory,
            workers=workers, ignore_scaling=ignore_scaling, resolution=resolution,
            input_orientation=input_orientation, fill_missing=fill_missing,
            encoding=encoding.value, jpeg_quality=jpeg_quality, jpeg_plane=jpeg_plane.value,
            cseg_block_size=_triple(cseg_block_size, "--cseg-block-size"), gzip=gzip, skip_empty=skip_empty,
            overwrite=overwrite, resume=resume, progress=progress)
    _summary(report, quiet)


def _summary(report: Report, quiet: bool) -> None:
    if quiet:
        return
    resumed = (f" (resumed: {report.skipped_slabs + report.replayed_slabs} slabs were done, "
               f"{report.replayed_slabs} read back)" if report.resumed else "")
    typer.echo(f"{report.output}: {len(report.scales)} scales, {report.chunks_written} chunks, "
               f"{format_size(report.bytes_written)} in {report.seconds:.1f} s{resumed}", err=True)


@app.command("convert-chunks")
def convert_chunks_command(
    source: Annotated[str, typer.Argument(help="A precomputed volume: a directory or an http(s) URL.")],
    destination: Annotated[str, typer.Argument(help="The directory to write the re-encoded chunks to.")],
    encoding: Annotated[Optional[Encoding], typer.Option(
        help="Target encoding of every scale [default: from the destination's info]")] = None,
    copy_info: Annotated[bool, typer.Option(help="Keep the source's encoding (and copy its info).")] = False,
    jpeg_quality: Annotated[int, typer.Option(help="JPEG quality, 1-100.")] = 90,
    jpeg_plane: Annotated[Plane, typer.Option(help="Plane of the JPEG images.")] = Plane.xy,
    cseg_block_size: Annotated[str, typer.Option(help="compressed_segmentation block, X,Y,Z.")] = "8,8,8",
    gzip: Gzip = False,
    flat: Flat = False,
    memory: Memory = None,
    workers: Workers = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Re-encode an existing pyramid into a new directory (as neuroglancer-scripts' convert-chunks)."""
    with _errors(debug):
        done = convert_chunks(source, destination, encoding=encoding.value if encoding else None,
                              copy_info=copy_info, jpeg_quality=jpeg_quality, jpeg_plane=jpeg_plane.value,
                              cseg_block_size=_triple(cseg_block_size, "--cseg-block-size"), gzip=gzip,
                              memory=memory, workers=workers)
    if not quiet:
        typer.echo(f"{destination}: {done.chunks - done.absent} chunks re-encoded "
                   f"({done.absent} absent), {format_size(done.bytes_written)}", err=True)


@app.command()
def verify(
    input: Annotated[str, typer.Argument(help="The input the output was converted from.")],
    output: Annotated[str, typer.Argument(help="A precomputed volume on disk, ours or another tool's.")],
    ignore_scaling: Annotated[bool, typer.Option(help="As given to convert.")] = False,
    resolution: Annotated[Optional[str], typer.Option(help="As given to convert.")] = None,
    input_orientation: Annotated[Optional[str], typer.Option(help="As given to convert.")] = None,
    fill_missing: Annotated[Optional[float], typer.Option(help="As given to convert.")] = None,
    min_psnr: Annotated[float, typer.Option(help="Lossy encodings: lowest PSNR accepted, dB.")] = 30.0,
    debug: Debug = False,
) -> None:
    """Check an output against its input: scale 0 voxel for voxel, every chunk of every scale."""
    with _errors(debug):
        report = verify_output(input, output, ignore_scaling=ignore_scaling, resolution=resolution,
                               input_orientation=input_orientation, fill_missing=fill_missing,
                               min_psnr=min_psnr)
    psnr = f", scale 0 PSNR {report.min_psnr:.1f} dB" if report.min_psnr != float("inf") else ""
    summary = (f"{output}: {report.scales} scales, {report.chunks} chunks checked, "
               f"{report.absent} absent (read as zeros){psnr}")
    if report.ok:
        typer.echo(f"{summary}: ok", err=True)
        return
    typer.echo(f"streamconv: error: {report.problems[0]}"
               + (f" (and {len(report.problems) - 1} more problems)" if len(report.problems) > 1 else ""),
               err=True)
    raise typer.Exit(1)


class DownscalingMethod(str, Enum):
    auto = "auto"
    average = "average"
    majority = "majority"
    stride = "stride"


Downscaling = Annotated[DownscalingMethod, typer.Option(
    help="auto: majority for segmentations, average for images.")]


@app.command("volume-to-precomputed")
def volume_to_precomputed(
    volume_filename: Annotated[str, typer.Argument(help="A volume nibabel reads.")],
    dest_url: Annotated[str, typer.Argument(help="The dataset directory (its info from generate-scales-info).")],
    generate_info: Annotated[bool, typer.Option(
        help="Write DEST_URL/info_fullres.json from the volume's header, then stop.")] = False,
    ignore_scaling: IgnoreScaling = False,
    input_min: InputMin = None,
    input_max: InputMax = None,
    mmap: Mmap = False,
    gzip: Gzip = False,
    compresslevel: CompressLevel = 6,
    flat: Flat = False,
    memory: Memory = None,
    workers: Workers = None,
    overwrite: Overwrite = False,
    resume: Resume = True,
    quiet: Quiet = False,
    verbose: Verbose = False,
    debug: Debug = False,
) -> None:
    """Write a volume's full-resolution chunks into the dataset that DEST_URL/info describes
    (values cast to its data type), as neuroglancer-scripts' volume-to-precomputed."""
    _logging(verbose)
    input_range = _input_range(input_min, input_max)
    with _errors(debug):
        if generate_info:
            path = steps.generate_info(volume_filename, dest_url, ignore_scaling=ignore_scaling,
                                       input_range=input_range)
            if not quiet:
                typer.echo(f"{path}: written; check it, then run generate-scales-info", err=True)
            return
        with scale_bars(wanted(quiet)) as progress:
            report = steps.write_full_resolution(
                volume_filename, dest_url, ignore_scaling=ignore_scaling, input_range=input_range,
                gzip=gzip, compresslevel=compresslevel, memory=memory, workers=workers,
                overwrite=overwrite, resume=resume, progress=progress)
    _summary(report, quiet)


@app.command("slices-to-precomputed")
def slices_to_precomputed(
    slice_dirs: Annotated[list[str], typer.Argument(
        help="The slices: a directory, a quoted glob, a list file or a multi-page TIFF.")],
    dest_url: Annotated[str, typer.Argument(help="The dataset directory (its info from generate-scales-info).")],
    input_orientation: Annotated[str, typer.Option(
        help="Directions of column, row and slice, e.g. RIA (see convert).")] = "RAS",
    fill_missing: Annotated[Optional[float], typer.Option(
        help="Fill missing or unreadable sections with this value.")] = None,
    gzip: Gzip = False,
    compresslevel: CompressLevel = 6,
    flat: Flat = False,
    memory: Memory = None,
    workers: Workers = None,
    overwrite: Overwrite = False,
    resume: Resume = True,
    quiet: Quiet = False,
    verbose: Verbose = False,
    debug: Debug = False,
) -> None:
    """Write the full-resolution chunks of a slice stack into the dataset that DEST_URL/info
    describes, as neuroglancer-scripts' slices-to-precomputed."""
    _logging(verbose)
    if len(slice_dirs) != 1:
        raise typer.BadParameter("one slice stack (several stacks as channels are not supported)",
                                 param_hint="SLICE_DIRS")
    source = slice_dirs[0]
    with _errors(debug), scale_bars(wanted(quiet)) as progress:
        report = steps.write_full_resolution(
            source, dest_url, input_orientation=input_orientation, fill_missing=fill_missing,
            gzip=gzip, compresslevel=compresslevel, memory=memory, workers=workers,
            overwrite=overwrite, resume=resume, progress=progress)
    _summary(report, quiet)


@app.command("generate-scales-info")
def generate_scales_info(
    fullres_info: Annotated[str, typer.Argument(help="The full-resolution info (info_fullres.json).")],
    dest_url: Annotated[str, typer.Argument(help="The dataset directory: DEST_URL/info is written.")],
    max_scales: Annotated[Optional[int], typer.Option(help="At most this many scales.")] = None,
    target_chunk_size: Annotated[int, typer.Option(help="Chunk edge in voxels, a power of two.")] = 64,
    type: Annotated[Optional[VolumeType], typer.Option(
        "--type", help="[default: from FULLRES_INFO, else image]")] = None,
    encoding: Annotated[Optional[Encoding], typer.Option(
        help="[default: from FULLRES_INFO, else raw]")] = None,
    jpeg_plane: Annotated[Plane, typer.Option(help="Plane of the JPEG images.")] = Plane.xy,
    overwrite: Overwrite = False,
    debug: Debug = False,
) -> None:
    """Plan every scale of the pyramid and write DEST_URL/info, with the rules of convert."""
    with _errors(debug):
        info = steps.generate_scales_info(
            fullres_info, dest_url, max_scales=max_scales, target_chunk_size=target_chunk_size,
            volume_type=type.value if type else None, encoding=encoding.value if encoding else None,
            jpeg_plane=jpeg_plane.value, overwrite=overwrite)
    typer.echo(f"{dest_url.rstrip('/')}/info: {len(info['scales'])} scales", err=True)


@app.command("scale-stats")
def scale_stats(
    url: Annotated[str, typer.Argument(help="The dataset directory (with its info).")] = ".",
    workers: Workers = None,
    debug: Debug = False,
) -> None:
    """Per scale: chunks and uncompressed size; the memory the engine needs; the estimated disk
    use of each encoding (from a sample of the full-resolution chunks, once they exist)."""
    with _errors(debug):
        stats = steps.scale_stats(url, workers=workers)
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
def compute_scales(
    work_dir: Annotated[str, typer.Argument(help="The dataset directory, with its full-resolution chunks.")],
    downscaling_method: Downscaling = DownscalingMethod.auto,
    outside_value: OutsideValue = None,
    gzip: Gzip = False,
    compresslevel: CompressLevel = 6,
    flat: Flat = False,
    memory: Memory = None,
    workers: Workers = None,
    overwrite: Overwrite = False,
    resume: Resume = True,
    quiet: Quiet = False,
    verbose: Verbose = False,
    debug: Debug = False,
) -> None:
    """Compute every lower scale of WORK_DIR/info from the full-resolution chunks on disk."""
    _logging(verbose)
    with _errors(debug), scale_bars(wanted(quiet)) as progress:
        report = steps.compute_scales(
            work_dir, downscaling_method=downscaling_method.value, outside_value=outside_value,
            gzip=gzip, compresslevel=compresslevel, memory=memory, workers=workers,
            overwrite=overwrite, resume=resume, progress=progress)
    _summary(report, quiet)


@app.command("volume-to-precomputed-pyramid")
def volume_to_precomputed_pyramid(
    volume_filename: Annotated[str, typer.Argument(help="A volume nibabel reads.")],
    dest_url: Annotated[str, typer.Argument(help="Output directory.")],
    ignore_scaling: IgnoreScaling = False,
    input_min: InputMin = None,
    input_max: InputMax = None,
    mmap: Mmap = False,
    type: Annotated[VolumeType, typer.Option("--type", help="Layer type.")] = VolumeType.image,
    encoding: Annotated[Encoding, typer.Option(help="Chunk encoding.")] = Encoding.raw,
    downscaling_method: Downscaling = DownscalingMethod.auto,
    outside_value: OutsideValue = None,
    gzip: Gzip = False,
    compresslevel: CompressLevel = 6,
    flat: Flat = False,
    memory: Memory = None,
    workers: Workers = None,
    overwrite: Overwrite = False,
    resume: Resume = True,
    quiet: Quiet = False,
    verbose: Verbose = False,
    debug: Debug = False,
) -> None:
    """convert for a volume, under neuroglancer-scripts' name and options."""
    _logging(verbose)
    method = None if downscaling_method is DownscalingMethod.auto else downscaling_method.value
    with _errors(debug), scale_bars(wanted(quiet)) as progress:
        report = convert_volume(
            volume_filename, dest_url, volume_type=type.value, downsampling_method=method,
            outside_value=outside_value, memory=memory, workers=workers,
            ignore_scaling=ignore_scaling, input_range=_input_range(input_min, input_max),
            encoding=encoding.value, gzip=gzip, compresslevel=compresslevel,
            overwrite=overwrite, resume=resume, progress=progress)
    _summary(report, quiet)


@app.command("mesh-to-precomputed")
def mesh_to_precomputed(
    input_mesh: Annotated[str, typer.Argument(help="A GIfTI surface, or an OBJ, PLY, STL, OFF or VTK mesh (mm).")],
    dest_url: Annotated[str, typer.Argument(help="The dataset directory (with its info).")],
    mesh_dir: Annotated[Optional[str], typer.Option(
        help="Sub-directory of the meshes; must match the info's \"mesh\" [default: mesh]")] = None,
    mesh_name: Annotated[Optional[str], typer.Option(
        help="Name of the fragment file [default: the input's name without extension]")] = None,
    coord_transform: Annotated[Optional[str], typer.Option(
        help="Affine applied to the coordinates: 12 or 16 numbers, row-major, translation in mm.")] = None,
    gzip: Gzip = False,
    compresslevel: CompressLevel = 6,
    debug: Debug = False,
) -> None:
    """Write a mesh as a legacy precomputed fragment (vertices in nm), as neuroglancer-scripts."""
    with _errors(debug):
        key = meshes.mesh_to_precomputed(input_mesh, dest_url, coord_transform=coord_transform,
                                         mesh_dir=mesh_dir, mesh_name=mesh_name, gzip=gzip,
                                         compresslevel=compresslevel)
    typer.echo(f"{dest_url.rstrip('/')}/{key}: written; link it to a label with "
               "link-mesh-fragments", err=True)


@app.command("link-mesh-fragments")
def link_mesh_fragments(
    input_csv: Annotated[str, typer.Argument(help="CSV rows: label, fragment name, fragment name...")],
    dest_url: Annotated[str, typer.Argument(help="The dataset directory (with its info).")],
    no_colon_suffix: Annotated[bool, typer.Option(
        help="Name the manifests <label> instead of <label>:0 (filesystems without colons).")] = False,
    debug: Debug = False,
) -> None:
    """Write the manifests that link each label of a segmentation to its mesh fragments."""
    with _errors(debug):
        count = meshes.link_mesh_fragments(input_csv, dest_url, colon_suffix=not no_colon_suffix)
    typer.echo(f"{dest_url}: {count} labels linked to their fragments", err=True)


def _input_range(input_min: float | None, input_max: float | None) -> tuple[float, float] | None:
    if input_max is None:
        if input_min is not None:
            raise typer.BadParameter("--input-min needs --input-max", param_hint="--input-min")
        return None
    return (input_min or 0.0, input_max)


def _triple(text: str, option: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise typer.BadParameter(f"{option} takes three integers X,Y,Z, got {text!r}")
    return values  # type: ignore[return-value]


def _logging(verbose: bool) -> None:
    logging.basicConfig(format="%(message)s", level=logging.INFO if verbose else logging.WARNING,
                        stream=sys.stderr)


class _errors:
    """Turn errors into one line on stderr and an exit code; a traceback only with --debug."""

    def __init__(self, debug: bool) -> None:
        self.debug = debug

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
        if exc is None or self.debug:
            return False
        if isinstance(exc, StreamconvError):
            typer.echo(f"streamconv: error: {exc}", err=True)
            raise typer.Exit(exc.exit_code)
        if isinstance(exc, KeyboardInterrupt):
            typer.echo("streamconv: interrupted", err=True)
            raise typer.Exit(130)
        if isinstance(exc, Exception):
            message = " ".join(str(exc).split()) or type(exc).__name__
            typer.echo(f"streamconv: internal error: {message} (rerun with --debug for details)", err=True)
            raise typer.Exit(1)
        return False


def main() -> None:
    app()
