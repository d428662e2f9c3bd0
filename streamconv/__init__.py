"""streamconv: brain-imaging volumes to the Neuroglancer precomputed format, streamed.

The API is imported on first use (PEP 562): the command line starts by importing this package,
and the CLI must be able to turn a Ctrl-C into its one line before numpy and the engine load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .convert import Report, convert
    from .convert_chunks import convert_chunks
    from .errors import DataError, OutputError, StreamconvError, UsageError
    from .verify import VerifyReport, verify

_HOME = {"convert": "convert", "Report": "convert", "convert_chunks": "convert_chunks",
         "verify": "verify", "VerifyReport": "verify", "StreamconvError": "errors",
         "UsageError": "errors", "DataError": "errors", "OutputError": "errors"}

__all__ = ["convert", "convert_chunks", "verify", "Report", "VerifyReport", "StreamconvError",
           "UsageError", "DataError", "OutputError"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'streamconv' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
