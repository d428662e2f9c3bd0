"""Object stores through fsspec: S3 (s3fs), GCS (gcsfs), and any filesystem fsspec opens
(`memory://` in tests).

An object store differs from a directory in three ways the run has to know, declared in its
`Capabilities`: every PUT is atomic and durable once acknowledged (`durable`: no checkpoints,
and records outlive the machine that wrote them), nothing can be appended to (the journal is
kept as numbered objects instead), and each request costs a round trip (`parallel`: a worker
keeps several chunk writes in flight). The lock is a conditional PUT (`If-None-Match: *` on S3,
`ifGenerationMatch=0` on GCS) where the filesystem offers one; elsewhere `lock` is false and a
run is refused rather than left unprotected.

Transient failures (throttling, 5xx answers, dropped connections) are retried with exponential
backoff, on top of the retries of the filesystem's own client; one that outlives them becomes a
`StoreUnavailable` naming the key, and the run stops resumable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from ..encodings.base import Encoded
from ..errors import OutputError, StoreUnavailable, one_line
from .base import Capabilities, StreamWriter
from .location import Location
from .retry import Retry

T = TypeVar("T")

#: filesystems whose `pipe_file(mode="create")` is a conditional write the server checks
CONDITIONAL_CREATE = frozenset({"s3", "s3a", "gs", "gcs", "memory"})

#: filesystems that live in one process: worker processes would write into their own copy
IN_PROCESS = frozenset({"memory"})

#: how each filesystem is told that a `.gz` object is gzip content (browsers then decompress it)
GZIP_HEADERS: dict[str, dict[str, Any]] = {
    "s3": {"ContentEncoding": "gzip"}, "s3a": {"ContentEncoding": "gzip"},
    "gs": {"fixed_key_metadata": {"content_encoding": "gzip"}},
    "gcs": {"fixed_key_metadata": {"content_encoding": "gzip"}},
}

def _as_bytes(data: Encoded) -> bytes:
    """What the HTTP clients send (a memoryview they may not)."""
    return data if isinstance(data, bytes) else bytes(data)


class ObjectStore:
    """A prefix of a bucket (or of any fsspec filesystem): one object per key."""

    #: chunk writes a worker keeps in flight: enough to hide a request's latency
    PARALLEL = 16

    def __init__(self, location: Location, retry: Retry | None = None) -> None:
        import fsspec

        self.url = location.url.rstrip("/")
        self.location = location
        self.retry = retry or Retry()
        self.protocol = location.scheme
        try:
            cls = fsspec.get_filesystem_class(self.protocol)
        except (ImportError, ValueError) as exc:
            raise OutputError(f"{self.url}: cannot open {self.protocol}:// locations "
                              f"({one_line(exc)}); install streamconv[s3] or streamconv[gcs]") from exc
        self.root = cls._strip_protocol(self.url).rstrip("/")
        self.can = Capabilities(write=True, list=True, lock=self.protocol in CONDITIONAL_CREATE,
                                append=False, sync=False, durable=True, parallel=self.PARALLEL,
                                shared=self.protocol not in IN_PROCESS)
        self._fs: Any = None
        self._pool: ThreadPoolExecutor | None = None

    def __getstate__(self) -> dict:
        """A worker opens its own filesystem and threads (neither survives a pickle)."""
        return {**self.__dict__, "_fs": None, "_pool": None}

    @property
    def fs(self) -> Any:
        if self._fs is None:
            import fsspec

            self._fs = fsspec.filesystem(self.protocol, **self.location.options.kwargs())
        return self._fs

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def _call(self, op: Callable[[], T], verb: str, key: str) -> T:
        """`op` retried, any failure as one line naming the key."""
        what = f"{self.url}/{key}: cannot {verb}"
        try:
            return self.retry.call(op, what)
        except (StoreUnavailable, FileExistsError, FileNotFoundError):
            raise
        except PermissionError as exc:
            raise OutputError(f"{what}: permission denied ({one_line(exc)})") from exc
        except Exception as exc:
            raise OutputError(f"{what} ({one_line(exc)})") from exc

    def write(self, key: str, data: Encoded, durable: bool = False) -> None:
        """One PUT: atomic on every object store, and durable once acknowledged."""
        body = _as_bytes(data)
        extra = GZIP_HEADERS.get(self.protocol, {}) if key.endswith(".gz") else {}
        self._call(lambda: self.fs.pipe_file(self._path(key), body, **extra), "write", key)

    def write_all(self, items: Iterable[tuple[str, Encoded]]) -> None:
        """Many PUTs, `parallel` in flight at once; `items` is consumed as requests finish, so
        at most `parallel` encoded chunks are held. The first failure is raised once the
        requests in flight are done."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.can.parallel, thread_name_prefix="put")
        pending: set[Future[None]] = set()
        failed: list[BaseException] = []

        def settle(futures: set[Future[None]]) -> None:
            failed.extend(e for f in futures if (e := f.exception()) is not None)

        for key, data in items:
            if len(pending) >= self.can.parallel:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                settle(done)
            if failed:
                break
            # bytes now, in this thread: the codec's buffer is freed before the next chunk is
            # encoded, so `parallel` copies are in flight, as the memory plan counts
            pending.add(self._pool.submit(self.write, key, _as_bytes(data)))
        settle(wait(pending).done)
        if failed:
            raise failed[0]

    def read(self, key: str) -> bytes | None:
        try:
            return self._call(lambda: self.fs.cat_file(self._path(key)), "read", key)
        except FileNotFoundError:
            return None

    def read_range(self, key: str, start: int, stop: int) -> bytes | None:
        """A ranged GET: how a shard is read."""
        try:
            return self._call(lambda: self.fs.cat_file(self._path(key), start=start, end=stop), "read", key)
        except FileNotFoundError:
            return None

    def size(self, key: str) -> int | None:
        try:
            return int(self._call(lambda: self.fs.size(self._path(key)), "read", key))
        except FileNotFoundError:
            return None

    def writer(self, key: str) -> StreamWriter:
        return _ObjectWriter(self, key)

    def delete(self, key: str) -> None:
        try:
            self._call(lambda: self.fs.rm(self._path(key), recursive=True), "delete", key)
        except FileNotFoundError:
            pass

    def list(self, prefix: str = "") -> Iterable[str]:
        """Keys and sub-prefixes directly below `prefix`, read fresh (never from a listing
        cached before other processes wrote)."""
        base = self._path(prefix.rstrip("/"))
        try:
            names = self._call(lambda: self.fs.ls(base, detail=False, refresh=True), "list", prefix)
        except FileNotFoundError:
            return []
        start = len(self.root) + 1
        return sorted(n.rstrip("/")[start:] for n in names if n.rstrip("/") != base)

    def create(self, key: str, data: bytes) -> bool:
        """A conditional PUT: fails on the server when the key exists."""
        try:
            self._call(lambda: self.fs.pipe_file(self._path(key), data, mode="create"), "create", key)
        except FileExistsError:
            return False
        return True

    def append(self, key: str, data: bytes, durable: bool = False) -> None:
        raise OutputError(f"{self.url}/{key}: objects cannot be appended to")

    def write_at(self, key: str, pieces: Iterable[tuple[int, Encoded]]) -> None:
        raise OutputError(f"{self.url}/{key}: objects cannot be written in place")

    def sync(self) -> None:
        """Nothing to do: an acknowledged PUT is durable."""


class _ObjectWriter:
    """A value written in pieces to a local temporary file, then uploaded whole at `commit`
    (one PUT, or a multipart upload that becomes visible only when complete): never held in
    memory whole, never half-visible."""

    def __init__(self, store: ObjectStore, key: str) -> None:
        import tempfile

        self.store, self.key = store, key
        self.file = tempfile.NamedTemporaryFile(prefix="streamconv-upload-", delete=False)

    def write(self, data: Encoded) -> None:
        self.file.write(data)

    def copy(self, source: str, start: int, stop: int) -> None:
        data = self.store.read_range(source, start, stop)
        if data is None or len(data) != stop - start:
            raise OutputError(f"{self.store.url}/{source}: shorter than {stop} bytes")
        self.file.write(data)

    def commit(self, durable: bool = False) -> None:
        self.file.close()
        try:
            path = self.store._path(self.key)
            self.store._call(lambda: self.store.fs.put_file(self.file.name, path), "write", self.key)
        finally:
            os.unlink(self.file.name)

    def abort(self) -> None:
        self.file.close()
        os.unlink(self.file.name)
