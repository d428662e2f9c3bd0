"""`streamconv convert-chunks`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..commands.convert_chunks import convert_chunks
from ..units import format_size
from .app import app
from .options import CsegBlockSize, Encoding, FileOptions, JpegPlane, JpegQuality, RunOptions, ShardSize, bundled, xyz
from .running import reported_errors


@app.command("convert-chunks")
@bundled(files=("gzip", "compresslevel", "flat"),
         run=("memory", "workers", "overwrite", "quiet", "debug", "storage_option"))
def convert_chunks_command(
    source: Annotated[str, typer.Argument(help="A precomputed volume: a directory or an http(s) URL.")],
    destination: Annotated[str, typer.Argument(help="The directory to write the re-encoded chunks to.")],
    encoding: Annotated[Optional[Encoding], typer.Option(
        help="Target encoding of every scale [default: from the destination's info]")] = None,
    copy_info: Annotated[bool, typer.Option(
        "--copy-info", help="Keep the source's encoding (and copy its info).")] = False,
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
                              gzip=files.gzip, compresslevel=files.compresslevel, sharding=sharding,
                              shard_size=shard_size,
                              memory=run.memory, workers=run.workers, overwrite=run.overwrite)
    if not run.quiet:
        typer.echo(f"{destination}: {done.chunks - done.absent} chunks re-encoded "
                   f"({done.absent} absent), {format_size(done.bytes_written)}", err=True)
