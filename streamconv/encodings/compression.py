"""Bytes-to-bytes steps after the codec: none, or gzip. A step also names the file (`.gz`)."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass

from ..errors import DataError
from .base import Encoded


def gzip_compress(data: Encoded, level: int = 6) -> bytes:
    """RFC 1952 gzip (what readers expect), never a bare zlib stream; reproducible (mtime 0)."""
    return gzip.compress(bytes(data), compresslevel=level, mtime=0)


def gzip_decompress(data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"not gzip data ({exc})") from exc


@dataclass(frozen=True)
class NoCompression:
    suffix = ""

    def key(self, key: str) -> str:
        return key

    def encode(self, data: Encoded) -> Encoded:
        return data

    def decode(self, data: bytes) -> bytes:
        return data


@dataclass(frozen=True)
class Gzip:
    """gzip members (RFC 1952) in `<name>.gz` files: what cloud-volume and neuroglancer-scripts
    write on local disk, and what a server sends with `Content-Encoding: gzip`."""

    level: int = 6
    suffix = ".gz"

    def key(self, key: str) -> str:
        return key + self.suffix

    def encode(self, data: Encoded) -> bytes:
        return gzip_compress(data, self.level)

    def decode(self, data: bytes) -> bytes:
        return gzip_decompress(data)


Compression = NoCompression | Gzip
NO_COMPRESSION = NoCompression()
GZIP = Gzip()


def compression(gzip: bool, level: int = 6) -> Compression:
    """The step for the command line's --gzip and --compresslevel."""
    return Gzip(level) if gzip else NO_COMPRESSION
