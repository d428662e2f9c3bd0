"""streamconv: brain-imaging volumes to the Neuroglancer precomputed format, streamed."""

from .convert import Report, convert
from .errors import DataError, OutputError, StreamconvError, UsageError

__all__ = ["convert", "Report", "StreamconvError", "UsageError", "DataError", "OutputError"]
__version__ = "0.1.0"
