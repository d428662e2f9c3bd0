"""Where chunk bytes go. A store maps keys (`/`-separated paths) to bytes.

Local directories today; object stores and shard files plug in behind the same four calls.
Stores are picklable so that worker processes write their own chunks.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Iterator, Protocol

from .errors import NoSpaceError, OutputError


class Store(Protocol):
    url: str

    def write(self, key: str, data: bytes | memoryview, durable: bool = False) -> None:
        """Store `data` under `key` atomically: a reader sees the old value or the new, never half.
        `durable`: on disk before this returns, even across a power loss (for info and job
        records; chunks are made durable in batches by the journal)."""

    def read(self, key: str) -> bytes | None:
        """The bytes under `key`, or None when there are none."""

    def delete(self, key: str) -> None:
        """Remove `key` and everything below it, if present."""

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys directly below `prefix`."""


class LocalStore:
    """A directory on a local filesystem; writes go to a temporary name, then rename."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def write(self, key: str, data: bytes | memoryview, durable: bool = False) -> None:
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            if durable:
                _fsync_dir(path.parent)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _output_error(path, exc) from exc

    def read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _output_error(self._path(key), exc) from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self._path(prefix)
        if base.is_dir():
            for name in sorted(os.listdir(base)):
                yield f"{prefix.rstrip('/')}/{name}" if prefix else name


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable: fsync the directory that holds the name."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _output_error(path: Path, exc: OSError) -> OutputError:
    if exc.errno == errno.ENOSPC:
        return NoSpaceError(f"{path.parent}: no space left on the output device")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"{path.parent}: output is not writable ({exc.strerror})")
    return OutputError(f"{path}: cannot write ({exc.strerror or exc})")


class HttpStore:
    """A precomputed volume served over http(s), read only (convert-chunks, verify)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def read(self, key: str) -> bytes | None:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/{key}", timeout=60) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            if exc.code in (403, 404):  # what Neuroglancer reads as "no chunk here"
                return None
            raise OutputError(f"{self.url}/{key}: HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise OutputError(f"{self.url}/{key}: {getattr(exc, 'reason', exc)}") from exc

    def write(self, key: str, data: bytes | memoryview, durable: bool = False) -> None:
        raise OutputError(f"{self.url}: http locations are read only")

    def delete(self, key: str) -> None:
        raise OutputError(f"{self.url}: http locations are read only")

    def list(self, prefix: str = "") -> Iterator[str]:
        return iter(())


def open_store(url: str | os.PathLike) -> Store:
    """The store for a location: a local path, or an http(s) URL (read only)."""
    text = os.fspath(url)
    if text.startswith(("http://", "https://")):
        return HttpStore(text)
    return LocalStore(text)
