"""streamconv: brain-imaging volumes to the Neuroglancer precomputed format, streamed."""

import sys

from .starting import catch_ctrl_c, running_as_command, start_fork_server, will_use_workers

if running_as_command():  # before the imports below, which take about half a second
    catch_ctrl_c()
    if will_use_workers(sys.argv[1:]):
        start_fork_server()

from .commands.convert import Report, convert
from .commands.convert_chunks import convert_chunks
from .commands.verify import VerifyReport, verify
from .errors import DataError, OutputError, StreamconvError, UsageError

# The step functions are public as `streamconv.steps` and `streamconv.meshes` (docs/cli.md), the
# names they had before the commands moved into `commands/`; `import streamconv.steps` finds them.
from .commands import meshes, steps  # isort: skip

sys.modules[f"{__name__}.steps"], sys.modules[f"{__name__}.meshes"] = steps, meshes

__all__ = ["convert", "convert_chunks", "verify", "Report", "VerifyReport", "StreamconvError",
           "UsageError", "DataError", "OutputError"]
__version__ = "0.1.0"
