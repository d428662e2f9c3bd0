"""streamconv: brain-imaging volumes to the Neuroglancer precomputed format, streamed."""

from .starting import catch_ctrl_c, running_as_command

if running_as_command():  # before the imports below, which take about half a second
    catch_ctrl_c()

from .convert import Report, convert
from .convert_chunks import convert_chunks
from .errors import DataError, OutputError, StreamconvError, UsageError
from .verify import VerifyReport, verify

__all__ = ["convert", "convert_chunks", "verify", "Report", "VerifyReport", "StreamconvError",
           "UsageError", "DataError", "OutputError"]
__version__ = "0.1.0"
