"""Local files written whole or not at all: the pieces of `LocalStore` that write (its
stream writer, which copies ranges in the kernel, and the error a failed write becomes)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

from ..encodings.base import Encoded
from ..errors import NoSpaceError, OutputError


class LocalWriter:
    """A temporary file beside the target (`.<name>.<pid>.tmp`, swept by a resume) renamed
    over it at commit."""

    def __init__(self, path: Path, resolve: Callable[[str], Path]) -> None:
        self.path, self.resolve = path, resolve
        self._sources: dict[str, int] = {}  # open files copied from (a shard's segments)
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise output_error(path, exc) from exc
        self._pending: list[Encoded] = []
        self._size = 0

    def write(self, data: Encoded) -> None:
        """Written in pieces of about 1 MiB: small chunks need not cost a system call each."""
        self._pending.append(data)
        self._size += len(data)
        if self._size >= 1 << 20:
            self._flush()

    def _flush(self) -> None:
        try:
            write_fd(self.fd, b"".join(self._pending), durable=False)
        except OSError as exc:
            self.abort()
            raise output_error(self.path, exc) from exc
        self._pending, self._size = [], 0

    def copy(self, source: str, start: int, stop: int) -> None:
        self._flush()
        try:
            if source not in self._sources:
                if len(self._sources) >= 64:
                    self._close_sources()
                self._sources[source] = os.open(self.resolve(source), os.O_RDONLY)
            fd = self._sources[source]
            while start < stop:
                n = _copy_range(fd, self.fd, start, stop)
                if n == 0:
                    raise OutputError(f"{self.resolve(source)}: shorter than {stop} bytes")
                start += n
        except OSError as exc:
            self.abort()
            raise output_error(self.path, exc) from exc

    def _close_sources(self) -> None:
        for fd in self._sources.values():
            os.close(fd)
        self._sources.clear()

    def commit(self, durable: bool = False) -> None:
        self._flush()
        self._close_sources()
        try:
            if durable:
                os.fsync(self.fd)
            os.close(self.fd)
            os.replace(self.tmp, self.path)
            if durable:
                fsync_dir(self.path.parent)
        except OSError as exc:
            self.tmp.unlink(missing_ok=True)
            raise output_error(self.path, exc) from exc

    def abort(self) -> None:
        self._close_sources()
        try:
            os.close(self.fd)
        except OSError:
            pass
        self.tmp.unlink(missing_ok=True)


def _copy_range(src: int, dst: int, start: int, stop: int) -> int:
    """Bytes [start, ...) of `src` appended to `dst`, in the kernel where it can (Linux's
    copy_file_range), else through a buffer; returns how many."""
    if hasattr(os, "copy_file_range"):
        try:
            return os.copy_file_range(src, dst, stop - start, start)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
    data = os.pread(src, min(stop - start, 1 << 20), start)
    write_fd(dst, data, durable=False)
    return len(data)


def write_fd(fd: int, data: Encoded, durable: bool) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    if durable:
        os.fsync(fd)


def fsync_dir(directory: Path) -> None:
    """Make a new name durable: fsync the directory that holds it."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def output_error(path: Path, exc: OSError) -> OutputError:
    if exc.errno == errno.ENOSPC:
        return NoSpaceError(f"{path.parent}: no space left on the output device")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"{path.parent}: output is not writable ({exc.strerror})")
    return OutputError(f"{path}: cannot write ({exc.strerror or exc})")
