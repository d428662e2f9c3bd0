"""`streamconv view`: look at outputs in Neuroglancer, served from this machine."""

from __future__ import annotations

import threading
import webbrowser
from typing import Annotated

import typer

from .app import app
from .options import RunOptions, bundled
from .running import reported_errors


@app.command()
@bundled(run=("debug",))
def view(
    outputs: Annotated[list[str], typer.Argument(help="Output directories to show, one layer each.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 0,
    browser: Annotated[bool, typer.Option(help="Open the URL in a browser (--no-browser: only print it).")] = True,
    *,
    run: RunOptions,
) -> None:
    """Serve outputs and a Neuroglancer client on them, offline, until Ctrl-C."""
    from ..commands.view import serve  # http.server and its email parsers: not for every command's start-up

    with reported_errors(run.debug):
        viewer = serve(outputs, host=host, port=port)
    typer.echo(viewer.url)
    typer.echo("streamconv: serving; Ctrl-C stops", err=True)
    if browser:
        webbrowser.open(viewer.url)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop()
    typer.echo("streamconv: stopped", err=True)
