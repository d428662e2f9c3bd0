"""`raw`: little-endian values, x fastest, then y, z, channel."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from .base import CodecBase


@dataclass(frozen=True)
class Raw(CodecBase):
    name = "raw"

    def encode(self, chunk: np.ndarray) -> memoryview:
        # The C-order bytes of (c, z, y, x); one copy, whose buffer is written as it is.
        return np.ascontiguousarray(chunk, dtype=chunk.dtype.newbyteorder("<")).data.cast("B")

    def voxel_bytes(self, dtype: np.dtype, channels: int) -> int | None:
        return np.dtype(dtype).itemsize * channels

    def decode(self, data: bytes, shape: tuple[int, int, int, int], dtype: np.dtype) -> np.ndarray:
        expected = math.prod(shape) * np.dtype(dtype).itemsize
        if len(data) != expected:
            raise DataError(f"raw chunk of {len(data)} bytes, expected {expected} for {shape[::-1]}")
        return np.frombuffer(data, np.dtype(dtype).newbyteorder("<")).reshape(shape).astype(dtype)
