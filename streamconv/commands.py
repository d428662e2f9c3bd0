"""The command line: a thin typer layer over the library API."""

from __future__ import annotations

import logging
import sys
from enum import Enum
from typing import Annotated, Optional

import typer

from .convert import convert as convert_volume
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
    skip_empty: Annotated[bool, typer.Option(help="Do not write chunks that are all zero.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace what the output already holds.")] = False,
    resume: Annotated[bool, typer.Option(
        help="Finish an unfinished run of the same conversion in OUTPUT; --no-resume refuses.")] = True,
    quiet: Quiet = False,
    verbose: Verbose = False,
    debug: Debug = False,
) -> None:
    """Convert a volume or slice stack: info, full-resolution chunks and every scale, in one pass."""
    _logging(verbose)
    with _errors(debug), scale_bars(wanted(quiet)) as progress:
        report = convert_volume(
            input, output, volume_type=type.value, chunk_size=chunk_size, max_scales=max_scales,
            downsampling_method=downsampling.value if downsampling else None, memory=memory,
            workers=workers, ignore_scaling=ignore_scaling, resolution=resolution,
            input_orientation=input_orientation, fill_missing=fill_missing,
            encoding=encoding.value, jpeg_quality=jpeg_quality, jpeg_plane=jpeg_plane.value,
            cseg_block_size=_triple(cseg_block_size, "--cseg-block-size"), gzip=gzip, skip_empty=skip_empty,
            overwrite=overwrite, resume=resume, progress=progress)
    if not quiet:
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
    gzip: Annotated[bool, typer.Option(help="Write gzip-compressed <chunk>.gz files.")] = False,
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
