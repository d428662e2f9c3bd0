"""Chunk codecs: a (channel, z, y, x) array to the bytes of one chunk file, and back."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .errors import DataError


class Codec(Protocol):
    name: str

    def encode(self, chunk: np.ndarray) -> bytes | memoryview:
        """Bytes of one chunk file for `chunk`, shaped (channels, z, y, x)."""

    def decode(self, data: bytes, shape: tuple[int, int, int, int], dtype: np.dtype) -> np.ndarray:
        """The (channels, z, y, x) array of `shape` stored in `data`."""


class RawCodec:
    """`raw`: little-endian values, x fastest then y, z, channel: the C-order bytes of (c, z, y, x)."""

    name = "raw"

    def encode(self, chunk: np.ndarray) -> memoryview:
        # One copy: the contiguous array's own buffer is what gets written.
        return memoryview(np.ascontiguousarray(chunk, dtype=chunk.dtype.newbyteorder("<"))).cast("B")

    def decode(self, data: bytes, shape: tuple[int, int, int, int], dtype: np.dtype) -> np.ndarray:
        expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if len(data) != expected:
            raise DataError(f"raw chunk of {len(data)} bytes, expected {expected} for shape {shape}")
        return np.frombuffer(data, np.dtype(dtype).newbyteorder("<")).reshape(shape).astype(dtype)


CODECS: dict[str, Codec] = {"raw": RawCodec()}


def get_codec(name: str) -> Codec:
    try:
        return CODECS[name]
    except KeyError:
        raise DataError(f"encoding {name!r} is not supported (known: {', '.join(CODECS)})") from None
