"""`streamconv.meshes`: the step functions of commands/meshes.py under the name they had before the
commands moved into `commands/` (docs/cli.md): importing this module gives that module."""

import sys

from .commands import meshes

sys.modules[__name__] = meshes
