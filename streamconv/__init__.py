"""streamconv: brain-imaging volumes to the Neuroglancer precomputed format, streamed."""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

from .errors import DataError, OutputError, StreamconvError, UsageError
from .starting import catch_ctrl_c, running_as_command, start_fork_server, will_use_workers

if running_as_command():  # before the commands are imported, which takes about half a second
    catch_ctrl_c()
    if will_use_workers(sys.argv[1:]):
        start_fork_server()

if TYPE_CHECKING:
    from .commands.convert import Report, convert
    from .commands.convert_chunks import convert_chunks
    from .commands.verify import VerifyReport, verify

# The public functions are imported when first used: a process that imports only part of the
# package (the fork server, which preloads the task code for the workers) does not pay for the
# commands, the annotations and the meshing (0.1 CPU-s; docs/benchmarks.md, curved labels).
# The step functions are public as `streamconv.steps` and `streamconv.meshes` (docs/cli.md), the
# names they had before the commands moved into `commands/` (the modules steps.py and meshes.py
# beside this one make `import streamconv.steps` find them).
_PUBLIC = {"convert": "commands.convert", "Report": "commands.convert",
           "convert_chunks": "commands.convert_chunks", "verify": "commands.verify",
           "VerifyReport": "commands.verify", "steps": "steps", "meshes": "meshes"}


def __getattr__(name: str) -> object:
    where = _PUBLIC.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{where}")
    value = module if where == name else getattr(module, name)
    globals()[name] = value
    return value


__all__ = ["convert", "convert_chunks", "verify", "Report", "VerifyReport", "StreamconvError",
           "UsageError", "DataError", "OutputError"]
__version__ = "0.1.0"
