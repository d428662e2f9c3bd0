"""`streamconv verify`."""

from __future__ import annotations

from typing import Annotated, NoReturn, Optional

import typer

from ..commands.verify import verify as verify_output
from ..errors import DataError
from ..sources.placement import TRANSFORM_JSON
from .app import app
from .options import Downscaling, OutsideValue, RunOptions, bundled
from .running import reported_errors


@app.command()
@bundled(run=("debug", "storage_option"))
def verify(
    input: Annotated[str, typer.Argument(help="The input the output was converted from.")],
    output: Annotated[str, typer.Argument(help="A precomputed volume on disk, ours or another tool's.")],
    ignore_scaling: Annotated[bool, typer.Option("--ignore-scaling", help="As given to convert.")] = False,
    resolution: Annotated[Optional[str], typer.Option(help="As given to convert.")] = None,
    input_orientation: Annotated[Optional[str], typer.Option(help="As given to convert.")] = None,
    fill_missing: Annotated[Optional[float], typer.Option(help="As given to convert.")] = None,
    min_psnr: Annotated[float, typer.Option(help="Lossy encodings: lowest PSNR accepted, dB.")] = 30.0,
    full: Annotated[bool, typer.Option(
        "--full", help="Derive every chunk of the lower scales again, not a sample of each scale.")] = False,
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
    if verify_surfaces(output, run):  # a dataset of meshes alone (mesh-to-precomputed --onto)
        return
    with reported_errors(run.debug):
        report = verify_output(input, run.at(output), ignore_scaling=ignore_scaling, resolution=resolution,
                               input_orientation=input_orientation, fill_missing=fill_missing,
                               min_psnr=min_psnr, full=full, outside_value=outside_value,
                               downsampling_method=None if downscaling_method == "auto"
                               else downscaling_method)
    psnr = f", scale 0 PSNR {report.min_psnr:.1f} dB" if report.min_psnr != float("inf") else ""
    placed = ", transform.json as the header says" if report.placed else ", no transform.json"
    summary_line = (f"{output}: {report.scales} scales, {report.chunks} chunks checked, "
                    f"{report.absent} absent (read as zeros){psnr}{placed}")
    if report.ok:
        typer.echo(f"{summary_line}: ok", err=True)
        return
    fail(report.problems)


def fail(problems: list[str]) -> NoReturn:
    """The first problem on one line (and how many more), exit code 1."""
    typer.echo(f"streamconv: error: {problems[0]}"
               + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""), err=True)
    raise typer.Exit(1)


def verify_surfaces(output: str, run: RunOptions) -> bool:
    """`verify INPUT OUTPUT` when OUTPUT holds meshes alone (an info without scales): its
    transform.json checked (`surface_problems`). False when OUTPUT is a volume (its checks follow)."""
    from ..commands.meshes import surface_problems
    from ..format.mesh_info import ScalelessInfo, parse_mesh_info
    from ..stores import open_store

    with reported_errors(run.debug):
        store = open_store(run.at(output))
        data = store.read("info")
        try:
            if data is None or not isinstance(parse_mesh_info(data, f"{store.url}/info"), ScalelessInfo):
                return False
        except DataError:
            return False  # the volume's checks say what is wrong with it
        image, problems = surface_problems(store)
    if problems:
        fail(problems)
    placed = (f"transform.json as {image}'s" if image else
              "transform.json well-formed" if store.read(TRANSFORM_JSON) is not None else "no transform.json")
    typer.echo(f"{output}: meshes alone, {placed}: ok", err=True)
    return True
