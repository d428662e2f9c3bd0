"""An input file, local or behind a URL (`s3://`, `gs://`, `http(s)://`, anything fsspec opens):
what a volume reader needs from it, so that a remote volume is read with ranged requests as it
is needed, never downloaded whole first.

A file says whether it has a local path (`local_path`): libraries that want a file name get
it, and a remote file is opened as a stream instead.
"""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from ..errors import DataError
from ..stores.location import Location, Where
from ..stores.retry import Retry

#: how much a remote stream reads per request: few requests, little memory
REMOTE_BLOCK = 8 << 20


class InputFile(Protocol):
    name: str  # for messages

    @property
    def local_path(self) -> str | None:
        """A name on this machine, or None."""

    def exists(self) -> bool: ...

    def size(self) -> int: ...

    def pread(self, buf: memoryview, offset: int) -> int:
        """Read into `buf` from `offset`; the bytes read (fewer only at the end of the file)."""

    def stream(self) -> io.BufferedIOBase:
        """The file's bytes from the start, decompressed when its name ends in `.gz`."""

    def open(self) -> BinaryIO:
        """The file's bytes as stored, seekable: for decoders that read a header."""

    def read(self) -> bytes:
        """The whole file, as stored."""

    def identity(self) -> dict:
        """What identifies this version of the file, for the journal."""


class LocalFile:
    """A file on this machine: pread (stateless, so safe in many processes at once)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.name = str(self.path)

    @property
    def local_path(self) -> str | None:
        return self.name

    def exists(self) -> bool:
        return self.path.is_file()

    def size(self) -> int:
        return self.path.stat().st_size

    def pread(self, buf: memoryview, offset: int) -> int:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            done = 0
            while done < len(buf):
                n = os.preadv(fd, [buf[done:]], offset + done)
                if n == 0:
                    break
                done += n
            return done
        finally:
            os.close(fd)

    def stream(self) -> io.BufferedIOBase:
        from nibabel.openers import ImageOpener  # gzip, bz2, zstd by extension

        opened: Any = ImageOpener(self.name, "rb")
        return opened

    def open(self) -> BinaryIO:
        return open(self.path, "rb")

    def read(self) -> bytes:
        return self.path.read_bytes()

    def identity(self) -> dict:
        st = self.path.stat()
        return {"path": str(self.path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class RemoteFile:
    """A file behind a URL, read with ranged requests (retried as the stores retry)."""

    def __init__(self, location: Location, retry: Retry | None = None) -> None:
        self.location, self.name, self.retry = location, location.url, retry or Retry()
        self._fs: Any = None
        self._info: dict | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fs": None}  # a worker opens its own filesystem

    @property
    def local_path(self) -> str | None:
        return None

    @property
    def fs(self) -> Any:
        if self._fs is None:
            import fsspec

            self._fs = fsspec.filesystem(self.location.scheme, **self.location.options.kwargs())
        return self._fs

    def _stat(self) -> dict:
        if self._info is None:
            self._info = self.retry.call(lambda: self.fs.info(self.name), f"{self.name}: cannot read")
        return self._info

    def exists(self) -> bool:
        try:
            return self._stat().get("type", "file") == "file"
        except FileNotFoundError:
            return False

    def size(self) -> int:
        return int(self._stat()["size"])

    def pread(self, buf: memoryview, offset: int) -> int:
        end = min(offset + len(buf), self.size())
        if end <= offset:
            return 0
        data = self.retry.call(lambda: self.fs.cat_file(self.name, start=offset, end=end),
                               f"{self.name}: cannot read bytes {offset}-{end}")
        buf[:len(data)] = data
        return len(data)

    def stream(self) -> io.BufferedIOBase:
        raw = self.fs.open(self.name, "rb", block_size=REMOTE_BLOCK, cache_type="readahead")
        if not self.name.endswith(".gz"):
            return raw
        opened: Any = gzip.GzipFile(fileobj=raw, mode="rb")
        return opened

    def open(self) -> BinaryIO:
        opened: Any = self.fs.open(self.name, "rb", block_size=1 << 16)  # headers are small
        return opened

    def read(self) -> bytes:
        data: bytes = self.retry.call(lambda: self.fs.cat_file(self.name), f"{self.name}: cannot read")
        return data

    def identity(self) -> dict:
        info = self._stat()
        version = next((str(info[k]) for k in ("ETag", "etag", "generation", "mtime", "LastModified")
                        if info.get(k) is not None), None)
        return {"url": self.name, "size": self.size(), "version": version}


def open_input(where: Where) -> InputFile:
    """A local file for a path or `file://` URL; a remote one for any other URL."""
    location = Location.of(where)
    if location.is_local:
        return LocalFile(location.path)
    return RemoteFile(location)


def missing(file: InputFile) -> DataError:
    return DataError(f"{file.name}: no such file")


def open_data_file(where: Where, header: str) -> InputFile:
    """The file that holds the voxels of `header` (an Analyze or NIfTI pair's `.img`): refused
    here, in one line naming it, when it is missing or unreadable, rather than by the first read."""
    file = open_input(where)
    if file.name == header:
        return file
    if not file.exists():
        raise DataError(f"{file.name}: no such file (the image data of {header})")
    if file.local_path is not None and not os.access(file.local_path, os.R_OK):
        raise DataError(f"{file.name}: permission denied (the image data of {header}); make the "
                        "file readable to this user")
    return file
