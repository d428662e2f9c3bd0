"""`streamconv.steps`: the step functions of commands/steps.py under the name they had before the
commands moved into `commands/` (docs/cli.md): importing this module gives that module."""

import sys

from .commands import steps

sys.modules[__name__] = steps
