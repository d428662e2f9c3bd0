"""streamconv: brain-imaging volumes to the Neuroglancer precomputed format, streamed."""

import sys

if sys.argv and sys.argv[0].endswith("/streamconv"):  # the console script: see starting.py
    from .starting import catch_ctrl_c

    catch_ctrl_c()

from .convert import Report, convert
from .convert_chunks import convert_chunks
from .errors import DataError, OutputError, StreamconvError, UsageError
from .verify import VerifyReport, verify

__all__ = ["convert", "convert_chunks", "verify", "Report", "VerifyReport", "StreamconvError",
           "UsageError", "DataError", "OutputError"]
__version__ = "0.1.0"
