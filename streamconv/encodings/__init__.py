"""Chunk codecs: a (channel, z, y, x) array to the bytes of one chunk file, and back.

`CODECS` is the one registry of encodings: each codec class declares its name, the data it
can store (`check`, `stored_dtype`) and how it is configured from the command line's options
(`configure`) or from a scale of an `info` file (`from_info`). Everything that lists or picks
encodings (the CLI's choices, `scale-stats`, the readers) goes through it.

A codec value is small and frozen (picklable: workers get it with their task). `ChunkFormat`
puts a codec and a bytes-to-bytes step (`GZIP`, or `NO_COMPRESSION`) together; the step also
decides the file name suffix (`<name>.gz`, the neuroglancer-scripts and cloud-volume
convention on local disk).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError, UsageError
from .base import Codec, CodecOptions, Encoded
from .compression import GZIP, NO_COMPRESSION, Compression, Gzip, compression, gzip_compress, gzip_decompress
from .images import Jpeg, Png
from .raw import Raw
from .segmentation import CompressedSegmentation

CODECS: dict[str, type[Codec]] = {c.name: c for c in (Raw, Jpeg, Png, CompressedSegmentation)}
ENCODINGS = tuple(CODECS)


def codec_class(name: str) -> type[Codec]:
    try:
        return CODECS[name]
    except KeyError:
        raise UsageError(f"--encoding must be one of {', '.join(ENCODINGS)}, got {name!r}") from None


def make_codec(name: str, **options: Any) -> Codec:
    """The codec `name` configured from command-line options (jpeg_quality, jpeg_plane,
    cseg_block_size); options another codec takes are ignored."""
    return codec_class(name).configure(CodecOptions(**options))


def codec_for_scale(members: dict) -> Codec:
    """The codec that reads a scale, from its info members (`encoding` and its parameters)."""
    name = members.get("encoding", "raw")
    if name not in CODECS:
        raise DataError(f"encoding {name!r} is not supported (known: {', '.join(ENCODINGS)})")
    return CODECS[name].from_info(members)


def stored_dtype(name: str, dtype: np.dtype, volume_type: str) -> np.dtype:
    """The data type an encoding stores (compressed_segmentation widens 8/16-bit labels)."""
    return codec_class(name).stored_dtype(np.dtype(dtype), volume_type)


def check_encoding(name: str, dtype: np.dtype, channels: int, volume_type: str) -> None:
    """Refuse, before any work, a combination that readers cannot read (format notes 1.3)."""
    codec_class(name).check(np.dtype(dtype), channels, volume_type)


@dataclass(frozen=True)
class ChunkFormat:
    """How one scale's chunks are stored: the codec, then a bytes-to-bytes compression step,
    which also gives the file name its suffix."""

    codec: Codec
    compression: Compression = NO_COMPRESSION

    def encode(self, chunk: np.ndarray) -> Encoded:
        return self.compression.encode(self.codec.encode(chunk))

    def decode(self, data: bytes, shape: tuple[int, int, int, int], dtype: np.dtype) -> np.ndarray:
        return self.codec.decode(self.compression.decode(data), shape, dtype)


__all__ = ["Codec", "CodecOptions", "Encoded", "CODECS", "ENCODINGS", "ChunkFormat", "Compression", "Gzip", "GZIP",
           "NO_COMPRESSION", "compression", "make_codec", "codec_class", "codec_for_scale", "stored_dtype",
           "check_encoding", "gzip_compress", "gzip_decompress", "Raw", "Jpeg", "Png",
           "CompressedSegmentation"]
