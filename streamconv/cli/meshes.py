"""The mesh commands of neuroglancer-scripts: a mesh to a legacy precomputed fragment, and the
manifests that link each label of a segmentation to its fragments."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .. import meshes as library
from .app import app
from .options import Dataset, FileOptions, RunOptions, bundled
from .running import reported_errors

# The options that place a fragment: its directory, its name, its coordinates.
MeshDir = Annotated[Optional[str], typer.Option(
    help="Sub-directory of the meshes; must match the info's \"mesh\" [default: mesh]")]
MeshName = Annotated[Optional[str], typer.Option(
    help="Name of the fragment file [default: the input's name without extension]")]
CoordTransform = Annotated[Optional[str], typer.Option(
    help="Affine applied to the coordinates: 12 or 16 numbers, row-major, translation in mm.")]


@app.command("mesh-to-precomputed")
@bundled(files=("gzip", "compresslevel"), run=("debug",))
def mesh_to_precomputed(
    input_mesh: Annotated[str, typer.Argument(
        help="A GIfTI surface, or an OBJ, PLY, STL, OFF or VTK mesh (mm).")],
    dest_url: Dataset,
    mesh_dir: MeshDir = None,
    mesh_name: MeshName = None,
    coord_transform: CoordTransform = None,
    *,
    files: FileOptions,
    run: RunOptions,
) -> None:
    """Write a mesh as a legacy precomputed fragment (vertices in nm), as neuroglancer-scripts."""
    with reported_errors(run.debug):
        key = library.mesh_to_precomputed(input_mesh, dest_url, coord_transform=coord_transform,
                                          mesh_dir=mesh_dir, mesh_name=mesh_name, gzip=files.gzip,
                                          compresslevel=files.compresslevel)
    typer.echo(f"{dest_url.rstrip('/')}/{key}: written; link it to a label with "
               "link-mesh-fragments", err=True)


@app.command("link-mesh-fragments")
@bundled(run=("debug",))
def link_mesh_fragments(
    input_csv: Annotated[str, typer.Argument(help="CSV rows: label, fragment name, fragment name...")],
    dest_url: Dataset,
    no_colon_suffix: Annotated[bool, typer.Option(
        help="Name the manifests <label> instead of <label>:0 (filesystems without colons).")] = False,
    *,
    run: RunOptions,
) -> None:
    """Write the manifests that link each label of a segmentation to its mesh fragments."""
    with reported_errors(run.debug):
        count = library.link_mesh_fragments(input_csv, dest_url, colon_suffix=not no_colon_suffix)
    typer.echo(f"{dest_url}: {count} labels linked to their fragments", err=True)
