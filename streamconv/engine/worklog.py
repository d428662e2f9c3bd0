"""What a worker logs travels back to the main process with the result of its read task.

A worker forked from the fork server has none of the run's logging set up: its warnings would go
to stderr through Python's last-resort handler, past the command line's own handler and past
anything the main process counts. A stack filled with `--fill-missing` names the first few
damaged sections and counts the rest (`sources/stack.py`); sections found damaged while a worker
decodes them must count in the same total. So a worker holds its records (`hold`, the pool's
initializer) and a read task returns them (`take`); the coordinator hands them to the main
process's loggers (`replay`) as it takes the task's result, before the run can end. Tasks that
run in the main process (`--workers 0`) log there directly and return nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

_held: list[logging.LogRecord] = []


class _Hold(logging.Handler):
    """Keeps each record as the main process can take it: the message formatted (its arguments
    may not pickle), no traceback object."""

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args, record.exc_info, record.exc_text = record.getMessage(), None, None, None
        _held.append(record)


def hold() -> None:
    """In a worker process: keep what the library logs, for `take`, instead of printing it."""
    logger = logging.getLogger("streamconv")
    logger.addHandler(_Hold())
    logger.propagate = False


def take() -> list[logging.LogRecord]:
    """The records held since the last call (none outside a worker)."""
    records = list(_held)
    _held.clear()
    return records


def replay(records: Iterable[logging.LogRecord] | None) -> None:
    """In the main process: log a worker's records as if logged here (its handlers, its filters)."""
    for record in records or ():
        logging.getLogger(record.name).handle(record)
