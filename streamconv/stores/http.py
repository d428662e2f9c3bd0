"""A precomputed volume served over http(s), read only: convert-chunks and verify read from it,
a sharded one with `Range` requests.

Requests are retried with the object stores' backoff on 429, 5xx and failed connections; a
body is read in bounded pieces, so a hostile server cannot make us allocate more than any
chunk or info can be.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from typing import Any

from ..encodings.base import Encoded
from ..errors import DataError, OutputError
from .base import Capabilities, StreamWriter
from .retry import Retry

MAX_READ = 2 ** 31  # bytes of one key read over the network: a chunk is at most 1 GiB decoded


class HttpStore:
    """A store at an http(s) URL: reads only."""

    can = Capabilities()

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _fetch(self, key: str, headers: dict[str, str] | None = None,
               method: str = "GET") -> tuple[int, bytes, int] | None:
        """(status, body, Content-Length) of a request, retried; None when the key is absent."""
        try:
            return Retry().call(lambda: self._once(key, headers or {}, method), f"{self.url}/{key}: cannot read")
        except urllib.error.HTTPError as exc:
            raise OutputError(f"{self.url}/{key}: HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise OutputError(f"{self.url}/{key}: {getattr(exc, 'reason', exc)}") from exc

    def _once(self, key: str, headers: dict[str, str], method: str) -> tuple[int, bytes, int] | None:
        """One request; HTTP 403 or 404 is None (what Neuroglancer reads as "no chunk here"), 429
        and 5xx are raised as the OSError they are, to be retried."""
        request = urllib.request.Request(f"{self.url}/{key}", headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                body = _read_bounded(response) if method == "GET" else b""
                status, length = response.status, int(response.headers.get("Content-Length") or len(body))
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the connection
            if exc.code in (403, 404):
                return None
            if exc.code == 429 or exc.code >= 500:
                raise  # an OSError: retried
            raise OutputError(f"{self.url}/{key}: HTTP {exc.code}") from exc
        if len(body) > MAX_READ:
            raise DataError(f"{self.url}/{key}: more than {MAX_READ >> 20} MiB, larger than any "
                            "chunk or info can be")
        return status, body, length

    def read(self, key: str) -> bytes | None:
        got = self._fetch(key)
        return None if got is None else got[1]

    def read_range(self, key: str, start: int, stop: int) -> bytes | None:
        """A `Range` request: how a shard is read over http (a server that ignores the header
        sends the whole file)."""
        got = self._fetch(key, {"Range": f"bytes={start}-{stop - 1}"})
        if got is None:
            return None
        status, body, _ = got
        return body if status == 206 else body[start:stop]

    def size(self, key: str) -> int | None:
        got = self._fetch(key, method="HEAD")
        return None if got is None else got[2]

    def writer(self, key: str) -> StreamWriter:
        self._read_only()
        raise AssertionError

    def write_at(self, key: str, pieces: Iterable[tuple[int, Encoded]]) -> None:
        self._read_only()

    def write(self, key: str, data: Encoded, durable: bool = False) -> None:
        self._read_only()

    def write_all(self, items: Iterable[tuple[str, Encoded]]) -> None:
        self._read_only()

    def delete(self, key: str) -> None:
        self._read_only()

    def list(self, prefix: str = "") -> Iterator[str]:
        self._read_only()
        return iter(())

    def create(self, key: str, data: bytes) -> bool:
        self._read_only()
        return False

    def append(self, key: str, data: bytes, durable: bool = False) -> None:
        self._read_only()

    def sync(self) -> None:
        self._read_only()

    def _read_only(self) -> None:
        """Callers check `can` first; this is the guard behind that check."""
        raise OutputError(f"{self.url}: http locations are read only")


def _read_bounded(response: Any) -> bytes:
    """A response's body, read in pieces up to `MAX_READ` + 1 bytes: a hostile server cannot
    make us allocate more (`read(n)` would allocate n bytes at once)."""
    pieces, total = [], 0
    while total <= MAX_READ:
        piece = response.read(min(1 << 20, MAX_READ + 1 - total))
        if not piece:
            break
        pieces.append(piece)
        total += len(piece)
    return b"".join(pieces)
