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


MAX_DECOMPRESSED = 2 ** 30 + 2 ** 20  # a chunk is at most 1 GiB (info.MAX_CHUNK_BYTES)


def gzip_decompress(data: bytes, zlib_too: bool = False) -> bytes:
    """The members of a gzip file, decompressed to at most `MAX_DECOMPRESSED` bytes: a small
    hostile file cannot expand into all of memory. `zlib_too`: a zlib stream is accepted as
    well (neuroglancer-scripts writes those where shards want gzip)."""
    out: list[bytes] = []
    total = 0
    try:
        while True:
            stream = zlib.decompressobj(wbits=47 if zlib_too else 31)  # 47: either header
            piece = stream.decompress(data, MAX_DECOMPRESSED + 1 - total)
            total += len(piece)
            out.append(piece)
            if total > MAX_DECOMPRESSED:
                raise DataError(f"gzip data expands to more than {MAX_DECOMPRESSED >> 20} MiB")
            if not stream.eof:
                raise DataError("not gzip data (truncated)")
            data = stream.unused_data.lstrip(b"\0")  # members may follow
            if not data:
                return b"".join(out)
    except zlib.error as exc:
        raise DataError(f"not gzip data ({exc})") from None


@dataclass(frozen=True)
class NoCompression:
    suffix = ""

    def key(self, key: str) -> str:
        return key

    def encode(self, data: Encoded) -> Encoded:
        return data

    def decode(self, data: bytes) -> bytes:
        return data

    def as_gzip(self) -> Gzip:
        """This run's gzip step where an info asks for gzip regardless (a sharded scale's
        `data_encoding` in the step commands): the default level."""
        return GZIP


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

    def as_gzip(self) -> Gzip:
        return self


Compression = NoCompression | Gzip
NO_COMPRESSION = NoCompression()
GZIP = Gzip()


def compression(gzip: bool, level: int = 6) -> Compression:
    """The step for the command line's --gzip and --compresslevel."""
    return Gzip(level) if gzip else NO_COMPRESSION
