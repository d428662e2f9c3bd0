"""The typer application the command modules register their commands with."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Convert brain-imaging data to the Neuroglancer precomputed format.")


@app.callback()
def _group() -> None:
    """Convert brain-imaging data to the Neuroglancer precomputed format."""
