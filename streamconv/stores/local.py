"""`LocalStore`: a directory on a local filesystem, written atomically (an unnamed file linked
in place, or a renamed temporary file), its writer and file helpers in `localfiles.py`."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..encodings.base import Encoded
from ..errors import OutputError
from .base import Capabilities, StreamWriter
from .localfiles import LocalWriter, fsync_dir, output_error, write_fd


class LocalStore:
    """A directory on a local filesystem; each write appears whole under its name or not at all."""

    can = Capabilities(write=True, list=True, lock=True, append=True, sync=True, write_at=True)

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self._unnamed = hasattr(os, "O_TMPFILE")
        self._real: set[str] = set()  # directories below the root found not to be links

    def _path(self, key: str) -> Path:
        """The file of a key. Keys come from checked infos (`info.check_key`); a directory on
        the way that is a symbolic link (planted in a shared directory, say) is refused, so
        that nothing is written or deleted outside the output by following it."""
        path = self.root / key
        parts = key.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            directory = "/".join(parts[:depth])
            if directory in self._real:
                continue
            if (self.root / directory).is_symlink():
                raise OutputError(f"{self.root / directory}: a symbolic link inside the output; "
                                  "streamconv does not write or delete through links (remove it)")
            if (self.root / directory).is_dir():
                self._real.add(directory)
        return path

    def write(self, key: str, data: Encoded, durable: bool = False) -> None:
        path = self._path(key)
        try:
            try:
                self._write_atomic(path, data, durable)
            except FileNotFoundError:  # the first chunk of a directory
                path.parent.mkdir(parents=True, exist_ok=True)
                self._write_atomic(path, data, durable)
            if durable:
                fsync_dir(path.parent)
        except OSError as exc:
            raise output_error(path, exc) from exc

    def write_all(self, items: Iterable[tuple[str, Encoded]]) -> None:
        """Each written whole under its name, one after the other (a local write returns in
        microseconds: nothing to overlap), each directory checked and opened once and the files
        named relative to it: an unsharded annotation index is 100,000 small files, where the
        path walks of `write` took half the time of the writes (docs/annotations.md)."""
        directories: dict[str, int] = {}
        try:
            for key, data in items:
                parent, _, name = key.rpartition("/")
                if not self._unnamed:
                    self.write(key, data)
                    continue
                where = directories.get(parent)
                if where is None:
                    path = self._path(key)
                    try:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        where = directories[parent] = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
                    except OSError as exc:
                        raise output_error(path, exc) from exc
                if not self._link_unnamed(where, key, name, data):
                    self.write(key, data)
        finally:
            for fd in directories.values():
                os.close(fd)

    def _link_unnamed(self, directory: int, key: str, name: str, data: Encoded) -> bool:
        """`_write_unnamed` of `key` as `name` in its open directory; False where it cannot (then
        `write`)."""
        try:
            fd = os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o644, dir_fd=directory)
        except OSError:
            return False  # `write` finds out why, and says so
        try:
            write_fd(fd, data, False)
            os.link(str(fd), name, src_dir_fd=_own_fds(), dst_dir_fd=directory, follow_symlinks=True)
        except (FileExistsError, FileNotFoundError):
            return False
        except OSError as exc:
            raise output_error(self.root / key, exc) from exc
        finally:
            os.close(fd)
        return True

    def _write_atomic(self, path: Path, data: Encoded, durable: bool) -> None:
        if not self._write_unnamed(path, data, durable):
            self._write_renamed(path, data, durable)

    def _write_unnamed(self, path: Path, data: Encoded, durable: bool) -> bool:
        """Write an unnamed file (O_TMPFILE) and link it in: one directory operation instead of
        create + rename, and a killed writer leaves nothing behind. False where the filesystem or
        platform cannot, or when the name exists (a rewrite on resume): then rename over it."""
        if not self._unnamed:
            return False
        try:
            fd = os.open(path.parent, os.O_TMPFILE | os.O_WRONLY, 0o644)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise  # ENOENT among them: `write` makes the directory
            self._unnamed = False
            return False
        try:
            write_fd(fd, data, durable)
            # linkat(AT_SYMLINK_FOLLOW) on /proc/self/fd/N names the open file; os.link calls
            # linkat, not link, only when given a directory fd.
            os.link(str(fd), path, src_dir_fd=_own_fds(), follow_symlinks=True)
        except FileExistsError:
            return False
        except FileNotFoundError:  # no /proc
            self._unnamed = False
            return False
        finally:
            os.close(fd)
        return True

    def _write_renamed(self, path: Path, data: Encoded, durable: bool) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                write_fd(fd, data, durable)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    def read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise output_error(self._path(key), exc) from exc

    def read_range(self, key: str, start: int, stop: int) -> bytes | None:
        try:
            with open(self._path(key), "rb") as f:
                return os.pread(f.fileno(), stop - start, start)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise output_error(self._path(key), exc) from exc

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def writer(self, key: str) -> StreamWriter:
        return LocalWriter(self._path(key), self._path)

    def write_at(self, key: str, pieces: Iterable[tuple[int, Encoded]]) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                for offset, data in pieces:
                    view = memoryview(data).cast("B")
                    while view:
                        n = os.pwrite(fd, view, offset)
                        view, offset = view[n:], offset + n
            finally:
                os.close(fd)
        except OSError as exc:
            raise output_error(path, exc) from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        if path.is_dir() and not path.is_symlink():
            try:
                shutil.rmtree(path)  # does not follow links inside
            except OSError as exc:  # it names the entry alone, without its directory: name the tree
                raise output_error(path / "-", exc) from exc
            return
        try:
            path.unlink(missing_ok=True)  # a link: the link itself
        except OSError as exc:
            raise output_error(path, exc) from exc

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self._path(f"{prefix.rstrip('/')}/-" if prefix else "-").parent
        if base.is_dir() and not (prefix and base.is_symlink()):
            for name in sorted(os.listdir(base)):
                yield f"{prefix.rstrip('/')}/{name}" if prefix else name

    def create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise output_error(path, exc) from exc
        try:
            write_fd(fd, data, durable=False)
        finally:
            os.close(fd)
        return True

    def append(self, key: str, data: bytes, durable: bool = False) -> None:
        path = self._path(key)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        try:
            try:
                fd = os.open(path, flags, 0o644)
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, flags, 0o644)
            try:
                write_fd(fd, data, durable)
            finally:
                os.close(fd)
        except OSError as exc:
            raise output_error(path, exc) from exc

    def sync(self) -> None:
        """syncfs(2) on the filesystem of the root (Python has no os.syncfs); sync(2) elsewhere."""
        syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
        if syncfs is None:
            os.sync()
            return
        try:
            fd = os.open(self.root, os.O_RDONLY)
        except OSError as exc:
            raise output_error(self.root / "-", exc) from exc
        try:
            if syncfs(fd) != 0:
                err = ctypes.get_errno()
                raise output_error(self.root / "-", OSError(err, os.strerror(err)))
        finally:
            os.close(fd)


_fds: dict[int, int] = {}


def _own_fds() -> int:
    """A directory fd on this process's /proc/self/fd (per pid: a forked child has its own)."""
    pid = os.getpid()
    if pid not in _fds:
        for inherited in _fds.values():
            os.close(inherited)
        _fds.clear()
        _fds[pid] = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    return _fds[pid]
