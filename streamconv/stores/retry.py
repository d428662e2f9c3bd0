"""Backoff for transient failures of a remote store or input (throttling, 5xx answers,
dropped connections), on top of the retries of the filesystem's own client: one that outlives
them becomes a `StoreUnavailable` naming the key, and the run stops resumable."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ..errors import StoreUnavailable, one_line

T = TypeVar("T")

#: errors that say nothing will change by asking again
_PERMANENT = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
              NotADirectoryError)
#: exceptions of the HTTP clients under s3fs and gcsfs that are not OSErrors but are transient
_TRANSIENT_NAMES = frozenset({
    "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError",
    "ResponseStreamingError", "IncompleteReadError", "ClientPayloadError", "ServerDisconnectedError",
    "ClientOSError", "ServerTimeoutError", "ClientConnectionError", "TransportError"})


def _attempts() -> int:
    """STREAMCONV_RETRIES in the environment, else 6: fewer to fail fast (tests), more for a
    store known to throttle hard."""
    text = os.environ.get("STREAMCONV_RETRIES", "6")
    return max(1, int(text)) if text.isdigit() else 6


@dataclass(frozen=True)
class Retry:
    """Backoff for transient failures: `attempts` tries, waits doubling from `first` seconds up
    to `longest`, each jittered so that many workers do not come back at the same moment."""

    attempts: int = field(default_factory=_attempts)
    first: float = 0.2
    longest: float = 10.0

    def call(self, op: Callable[[], T], what: str) -> T:
        delay = self.first
        for attempt in range(1, self.attempts + 1):
            try:
                return op()
            except Exception as exc:
                if not transient(exc):
                    raise
                if attempt == self.attempts:
                    raise StoreUnavailable(f"{what}: failed {attempt} times, last: {one_line(exc)}") from exc
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(2 * delay, self.longest)
        raise AssertionError("unreachable")


def transient(exc: BaseException) -> bool:
    """Whether asking again may succeed: a connection or server-side failure, not a missing
    key, a refused permission or a bad request."""
    if isinstance(exc, _PERMANENT):
        return False
    if isinstance(exc, OSError):
        return True
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__)
