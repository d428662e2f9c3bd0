"""A precomputed volume served over http(s), read only: convert-chunks and verify read from it,
a sharded one with `Range` requests."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

from .encodings.base import Encoded
from .errors import OutputError
from .storage import Capabilities, StreamWriter


class HttpStore:
    """A store at an http(s) URL: reads only."""

    can = Capabilities()

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _fetch(self, key: str, headers: dict[str, str] | None = None,
               method: str = "GET") -> tuple[int, bytes, int] | None:
        """(status, body, Content-Length) of a request, None when the key is absent: HTTP 403
        or 404, what Neuroglancer reads as "no chunk here"."""
        request = urllib.request.Request(f"{self.url}/{key}", headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                body = response.read() if method == "GET" else b""
                return response.status, body, int(response.headers.get("Content-Length") or len(body))
        except urllib.error.HTTPError as exc:
            exc.close()  # its response: a socket otherwise left to the garbage collector
            if exc.code in (403, 404):
                return None
            raise OutputError(f"{self.url}/{key}: HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise OutputError(f"{self.url}/{key}: {getattr(exc, 'reason', exc)}") from exc

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

    def write(self, key: str, data: Encoded, durable: bool = False) -> None:
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
