"""The mesh commands of neuroglancer-scripts: a mesh to a legacy precomputed fragment, and the
manifests that link each label of a segmentation to its fragments."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..commands import meshes as library
from ..commands import steps
from .app import app
from .options import DatasetDir, FileOptions, MeshFormatOption, NamesFile, RunOptions, bundled
from .running import reported_errors, start_logging

# The options that place a fragment: its directory, its name, its coordinates.
MeshDir = Annotated[Optional[str], typer.Option(
    help="Sub-directory of the meshes; must match the info's \"mesh\" [default: mesh]")]
MeshName = Annotated[Optional[str], typer.Option(
    help="Name of the fragment file [default: the input's name without extension]")]
CoordTransform = Annotated[Optional[str], typer.Option(
    help="Affine applied to the coordinates: 12 or 16 numbers, row-major, translation in mm.")]
# neuroglancer-scripts' default for a fragment: gzip (`<name>.gz`, which its server and `view` send
# as Content-Encoding: gzip); --no-gzip writes `<name>`, what any static server sends
# (docs/workflow.md).
MeshGzip = Annotated[bool, typer.Option(
    "--gzip/--no-gzip", " /--no-compression",
    help="Write the fragment gzip-compressed as <name>.gz, as neuroglancer-scripts; --no-gzip: "
         "<name> uncompressed, for a static server.")]
Onto = Annotated[Optional[str], typer.Option(
    help="An image output (often DEST_URL itself): place the mesh's world mm on its voxel grid "
         "by its transform.json (after --coord-transform), so it lies on the image; DEST_URL keeps "
         "a copy of that transform.json (view places it by it).")]


@app.command("mesh-to-precomputed")
@bundled(files=("compresslevel",), run=("debug",))
def mesh_to_precomputed(
    input_mesh: Annotated[str, typer.Argument(
        help="A GIfTI surface, or an OBJ, PLY, STL, OFF or VTK mesh (mm).")],
    dest_url: DatasetDir,
    mesh_dir: MeshDir = None,
    mesh_name: MeshName = None,
    coord_transform: CoordTransform = None,
    onto: Onto = None,
    gzip: MeshGzip = True,
    *,
    files: FileOptions,
    run: RunOptions,
) -> None:
    """Write a mesh as a legacy precomputed fragment (vertices in nm), as neuroglancer-scripts."""
    with reported_errors(run.debug):
        key = library.mesh_to_precomputed(input_mesh, dest_url, coord_transform=coord_transform,
                                          mesh_dir=mesh_dir, mesh_name=mesh_name, gzip=gzip,
                                          compresslevel=files.compresslevel,
                                          onto=onto)
    typer.echo(f"{dest_url.rstrip('/')}/{key}: written; link it to a label with "
               "link-mesh-fragments", err=True)


# neuroglancer-scripts' link-mesh-fragments takes its file options too; its manifests, JSON, are
# never gzipped (nor ours): accepted from its scripts, not offered in --help.
ManifestNoGzip = Annotated[bool, typer.Option("--no-gzip", "--no-compression", hidden=True)]
ManifestLevel = Annotated[int, typer.Option("--compresslevel", min=0, max=9, hidden=True)]


@app.command("link-mesh-fragments")
@bundled(run=("debug",))
def link_mesh_fragments(
    input_csv: Annotated[str, typer.Argument(help="CSV rows: label, fragment name, fragment name...")],
    dest_url: DatasetDir,
    no_colon_suffix: Annotated[bool, typer.Option(
        "--no-colon-suffix",
        help="Name the manifests <label> instead of <label>:0 (filesystems without colons).")] = False,
    no_gzip: ManifestNoGzip = False,
    compresslevel: ManifestLevel = 9,
    *,
    run: RunOptions,
) -> None:
    """Write the manifests that link each label of a segmentation to its mesh fragments."""
    with reported_errors(run.debug):
        count = library.link_mesh_fragments(input_csv, dest_url, colon_suffix=not no_colon_suffix)
    typer.echo(f"{dest_url}: {count} labels linked to their fragments", err=True)


MeshSharding = Annotated[str, typer.Option(
    "--sharding", help="off: two files per label; auto: the meshes packed into shard files keyed "
                       "by label (murmurhash3, as igneous). Multilod only.")]


@app.command("generate-meshes")
@bundled(run=("memory", "workers", "overwrite", "verbose", "debug"))
def generate_meshes(
    dest_url: DatasetDir,
    mesh_format: MeshFormatOption = "multilod",
    sharding: MeshSharding = "off",
    *,
    run: RunOptions,
) -> None:
    """Mesh every label of a segmentation pyramid (zmesh, block by block, from scale 0);
    resumes an interrupted run."""
    start_logging(run)
    with reported_errors(run.debug):
        report = steps.generate_meshes(dest_url, mesh_format=mesh_format, sharding=sharding,
                                       memory=run.memory, workers=run.workers, overwrite=run.overwrite)
    done = "already there: nothing to do" if report.meshes and report.meshes.complete else "written"
    typer.echo(f"{dest_url}: meshes of {report.labels} labels {done}", err=True)


@app.command("add-segment-names")
@bundled(run=("memory", "workers", "verbose", "debug"))
def add_segment_names(
    dest_url: DatasetDir,
    names: NamesFile,
    *,
    run: RunOptions,
) -> None:
    """Name the labels of a segmentation pyramid (its segment properties) from a table."""
    start_logging(run)
    with reported_errors(run.debug):
        report = steps.add_segment_names(dest_url, names, memory=run.memory, workers=run.workers)
    typer.echo(f"{dest_url}: segment names written ({report.labels} labels in the volume)", err=True)
