"""What a codec is: the protocol the engine and readers use, and defaults most codecs share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, TypeVar

import numpy as np

Encoded = bytes | bytearray | memoryview  # what codecs and compression steps hand back
C = TypeVar("C", bound="CodecBase")


@dataclass(frozen=True)
class CodecOptions:
    """The command line's codec options; each codec takes the ones that concern it."""

    jpeg_quality: int = 90
    jpeg_plane: str = "xy"
    cseg_block_size: tuple[int, int, int] = (8, 8, 8)


class Codec(Protocol):
    name: ClassVar[str]

    def encode(self, chunk: np.ndarray) -> Encoded:
        """Bytes of one chunk file for `chunk`, shaped (channels, z, y, x)."""

    def decode(self, data: bytes, shape: tuple[int, int, int, int], dtype: np.dtype) -> np.ndarray:
        """The (channels, z, y, x) array of `shape` stored in `data`."""

    def info(self) -> dict:
        """The per-scale info members this encoding needs."""

    def check_chunk_size(self, chunk_size: tuple[int, int, int]) -> None:
        """Raise UsageError if chunks of this (x, y, z) size cannot be encoded."""

    def voxel_bytes(self, dtype: np.dtype, channels: int) -> int | None:
        """Bytes per voxel of every encoded chunk when they are known before encoding (raw),
        else None: a shard whose chunk sizes are known is laid out ahead and written in place."""

    @classmethod
    def check(cls, dtype: np.dtype, channels: int, volume_type: str) -> None:
        """Raise UsageError unless readers can read this data in this encoding."""

    @classmethod
    def stored_dtype(cls, dtype: np.dtype, volume_type: str) -> np.dtype:
        """The type data of `dtype` is stored as."""

    @classmethod
    def configure(cls, options: CodecOptions) -> Codec:
        """The codec for the command line's options."""

    @classmethod
    def from_info(cls, members: dict) -> Codec:
        """The codec that reads a scale with these info members."""


class CodecBase:
    """Defaults: any type, stored as it is, no parameters."""

    name: ClassVar[str]

    def info(self) -> dict:
        return {"encoding": self.name}

    def check_chunk_size(self, chunk_size: tuple[int, int, int]) -> None:
        return None

    def voxel_bytes(self, dtype: np.dtype, channels: int) -> int | None:
        return None

    @classmethod
    def check(cls, dtype: np.dtype, channels: int, volume_type: str) -> None:
        return None

    @classmethod
    def stored_dtype(cls, dtype: np.dtype, volume_type: str) -> np.dtype:
        return np.dtype(dtype)

    @classmethod
    def configure(cls: type[C], options: CodecOptions) -> C:
        return cls()

    @classmethod
    def from_info(cls: type[C], members: dict) -> C:
        return cls()
