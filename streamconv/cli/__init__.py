"""The command line: a thin typer layer over the library API.

Only this package imports typer and rich; the library (`streamconv` outside `cli/`) takes plain
arguments and a progress callback. Commands are registered in the order `--help` lists them:
the one-pass commands (`convert`), the viewer (`view`), neuroglancer-scripts' step-by-step
commands (`steps`), then the meshes (`meshes`). Options several commands share are defined
once, in `options`. Help is click's plain formatting (rich's panels wrapped every description
into fragments in an 80-column terminal); docs/reference.md is generated from it.
"""

from __future__ import annotations

from .app import app

# Importing a command module registers its commands with `app`, and --help lists them in this
# order: keep it.
from . import convert  # noqa: F401  isort: skip
from . import view  # noqa: F401  isort: skip
from . import steps  # noqa: F401  isort: skip
from . import meshes  # noqa: F401  isort: skip

__all__ = ["app", "main"]


def main() -> None:
    """The `streamconv` console script."""
    app()
