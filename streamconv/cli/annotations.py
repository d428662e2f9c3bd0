"""`streamconv annotations TABLE OUTPUT`: a table of points, lines, boxes or ellipsoids as a
precomputed annotation collection (docs/annotations.md)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..annotations.job import DEFAULT_LIMIT
from ..units import format_size
from .app import app
from .options import (
    AnnotationColumn,
    AnnotationCoordinates,
    AnnotationLimit,
    AnnotationRelationship,
    AnnotationSharding,
    AnnotationTypeOption,
    RunOptions,
    annotation_options,
    bundled,
)
from .running import reported_errors, start_logging


@app.command("annotations")
@bundled(run=("memory", "workers", "overwrite", "quiet", "verbose", "debug"))
def annotations_command(
    table: Annotated[str, typer.Argument(
        help="CSV or TSV (a header line), JSON Lines, JSON, or Parquet (pip install streamconv[parquet]).")],
    output: Annotated[str, typer.Argument(help="The annotation collection's directory.")],
    type: AnnotationTypeOption = None,
    column: AnnotationColumn = None,
    relationship: AnnotationRelationship = None,
    coordinates: AnnotationCoordinates = "voxel",
    image: Annotated[Optional[str], typer.Option(
        help="The image output the annotations belong to: its voxel size, offset and transform.json")] = None,
    resolution: Annotated[Optional[str], typer.Option(
        help="Voxel size in nm (X,Y,Z, or one value; units allowed: 20um) [default: the image's]")] = None,
    limit: AnnotationLimit = DEFAULT_LIMIT,
    sharding: AnnotationSharding = "auto",
    *,
    run: RunOptions,
) -> None:
    """Write a table of annotations as a precomputed annotation collection: spatially indexed,
    sharded, in bounded memory; resumes an interrupted run."""
    from ..annotations import write_annotations

    start_logging(run)
    with reported_errors(run.debug):
        options = annotation_options(type, column, relationship, coordinates, limit, sharding, image, resolution)
        report = write_annotations(table, output, options, memory=run.memory, workers=run.workers,
                                   overwrite=run.overwrite)
    if run.quiet:
        return
    if report.complete:
        typer.echo(f"{output}: already complete ({report.annotations} annotations); nothing to do", err=True)
        return
    resumed = " (resumed)" if report.resumed else ""
    typer.echo(f"{output}: {report.annotations} {report.type} annotations in {report.levels} levels, "
               f"{report.files} files, {format_size(report.bytes_written)} in {report.seconds:.1f} s, "
               f"peak memory {format_size(report.peak_memory)}{resumed}", err=True)


def verify_collection(table: str, output: str, run: RunOptions) -> bool:
    """`verify TABLE OUTPUT` when OUTPUT is an annotation collection: its own checks, with the
    options of its job record. False when OUTPUT is not a collection (a volume's checks follow)."""
    from ..annotations.check import verify_annotations
    from ..annotations.reader import read_collection_info
    from ..stores import open_store

    with reported_errors(run.debug):
        store = open_store(run.at(output))
        if read_collection_info(store) is None:
            return False
        check = verify_annotations(table, output, store)
    if check.ok:
        typer.echo(f"{output}: {check.rows} annotations found by id, in the spatial index ({check.levels} "
                   "levels) and under their segments: ok", err=True)
        return True
    typer.echo(f"streamconv: error: {check.problems[0]}"
               + (f" (and {len(check.problems) - 1} more problems)" if len(check.problems) > 1 else ""), err=True)
    raise typer.Exit(1)
