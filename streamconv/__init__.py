"""streamconv: brain-imaging volumes to the Neuroglancer precomputed format, streamed."""

import sys

from .starting import catch_ctrl_c, running_as_command, start_fork_server, will_use_workers

if running_as_command():  # before the imports below, which take about half a second
    catch_ctrl_c()
    if will_use_workers(sys.argv[1:]):
        start_fork_server()

from .convert import Report, convert
from .convert_chunks import convert_chunks
from .errors import DataError, OutputError, StreamconvError, UsageError
from .verify import VerifyReport, verify

__all__ = ["convert", "convert_chunks", "verify", "Report", "VerifyReport", "StreamconvError",
           "UsageError", "DataError", "OutputError"]
__version__ = "0.1.0"
