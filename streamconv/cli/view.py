"""`streamconv view`: look at outputs in Neuroglancer, served from this machine."""

from __future__ import annotations

import json
import threading
import webbrowser
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from .app import app
from .options import RunOptions, bundled
from .running import reported_errors

CLIENT = "https://neuroglancer-demo.appspot.com/"  # Google's public Neuroglancer


@app.command()
@bundled(run=("debug",))
def view(
    outputs: Annotated[list[str], typer.Argument(help="Output directories to show, one layer each.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 0,
    browser: Annotated[bool, typer.Option(help="Open the URL in a browser (--no-browser: only print it).")] = True,
    print_state: Annotated[bool, typer.Option(
        "--print-state", help="Serve nothing: print the viewer state (JSON) and a link that opens it in the "
        "Neuroglancer at --neuroglancer, reading the outputs under --base-url.")] = False,
    base_url: Annotated[Optional[str], typer.Option(
        help="Where the outputs are published, each in a directory of its own name (an https:// address "
        "of a bucket or web server, gs://, s3://); implies --print-state.")] = None,
    neuroglancer: Annotated[str, typer.Option(help="The Neuroglancer client the printed link opens.")] = CLIENT,
    *,
    run: RunOptions,
) -> None:
    """Serve outputs and a Neuroglancer client on them, offline, until Ctrl-C; or print a viewer
    state for a Neuroglancer hosted elsewhere. Outputs with a transform.json are placed in world
    space (millimetres); images get their contrast from stats.json (each channel its own);
    surfaces (mesh-to-precomputed --onto) and annotation collections open as layers too."""
    from ..commands.view import (  # http.server and its email parsers: not for every command's start-up
        hosted_state,
        serve,
    )

    if print_state or base_url is not None:
        from ..commands.viewstate import state_url

        with reported_errors(run.debug):
            if base_url is None:
                raise UsageError("--print-state needs --base-url: where the outputs are published")
            state = hosted_state(outputs, base_url)
        typer.echo(json.dumps(state, indent=2))
        typer.echo(state_url(neuroglancer, state))
        return
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
