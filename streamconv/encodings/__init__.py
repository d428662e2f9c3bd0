"""Chunk codecs: a (channel, z, y, x) array to the bytes of one chunk file, and back.

Each codec is a small frozen value (picklable: workers get it with their task). `ChunkFormat`
adds the optional gzip step and decides the file name (`<name>.gz` on local disk, the
neuroglancer-scripts and cloud-volume convention).
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import DataError, UsageError
from .images import Jpeg, Png
from .raw import Raw
from .segmentation import CompressedSegmentation

ENCODINGS = ("raw", "jpeg", "png", "compressed_segmentation")


class Codec(Protocol):
    name: str

    def encode(self, chunk: np.ndarray) -> bytes | memoryview:
        """Bytes of one chunk file for `chunk`, shaped (channels, z, y, x)."""

    def decode(self, data: bytes, shape: tuple[int, int, int, int], dtype: np.dtype) -> np.ndarray:
        """The (channels, z, y, x) array of `shape` stored in `data`."""

    def info(self) -> dict:
        """The per-scale info members this encoding needs."""


def make_codec(name: str, *, jpeg_quality: int = 90, jpeg_plane: str = "xy",
               cseg_block_size: tuple[int, int, int] = (8, 8, 8)) -> Codec:
    if name == "raw":
        return Raw()
    if name == "jpeg":
        if not 1 <= jpeg_quality <= 100 or jpeg_plane not in ("xy", "xz"):
            raise UsageError("--jpeg-quality is 1 to 100 and --jpeg-plane xy or xz")
        return Jpeg(jpeg_quality, jpeg_plane)
    if name == "png":
        return Png()
    if name == "compressed_segmentation":
        if len(cseg_block_size) != 3 or min(cseg_block_size) < 1:
            raise UsageError(f"--cseg-block-size needs three positive numbers, got {cseg_block_size}")
        return CompressedSegmentation(tuple(cseg_block_size))  # type: ignore[arg-type]
    raise UsageError(f"--encoding must be one of {', '.join(ENCODINGS)}, got {name!r}")


def codec_for_scale(scale_info: dict) -> Codec:
    """The codec that reads a scale, from its info members."""
    name = scale_info.get("encoding", "raw")
    if name not in ENCODINGS:
        raise DataError(f"encoding {name!r} is not supported (known: {', '.join(ENCODINGS)})")
    block = tuple(scale_info.get("compressed_segmentation_block_size", (8, 8, 8)))
    return make_codec(name, cseg_block_size=block)  # type: ignore[arg-type]


def stored_dtype(name: str, dtype: np.dtype, volume_type: str) -> np.dtype:
    """The data type an encoding stores: compressed_segmentation widens 8/16-bit labels."""
    if name == "compressed_segmentation" and volume_type == "segmentation" and dtype.kind == "u" \
            and dtype.itemsize < 4:
        return np.dtype("uint32")
    return np.dtype(dtype)


def check_encoding(name: str, dtype: np.dtype, channels: int, volume_type: str) -> None:
    """Refuse, before any work, a combination that readers cannot read (format notes 1.3)."""
    dt = np.dtype(dtype).name
    if name == "jpeg" and (dt != "uint8" or channels not in (1, 3) or volume_type == "segmentation"):
        raise UsageError(f"jpeg stores uint8 images of 1 or 3 channels, not {volume_type} {dt} "
                         f"with {channels} channel(s)")
    if name == "png" and (dt not in ("uint8", "uint16") or not 1 <= channels <= 4):
        raise UsageError(f"png stores uint8 or uint16 with 1 to 4 channels, not {dt} with {channels}")
    if name == "compressed_segmentation" and dt not in ("uint32", "uint64"):
        raise UsageError(f"compressed_segmentation stores uint32 or uint64 labels, not {dt} "
                         "(8 and 16-bit segmentations are widened to uint32)")


def gzip_compress(data: bytes | memoryview, level: int = 6) -> bytes:
    """RFC 1952 gzip (what readers expect), never a bare zlib stream; reproducible (mtime 0)."""
    return gzip.compress(bytes(data), compresslevel=level, mtime=0)


def gzip_decompress(data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"not gzip data ({exc})") from exc


@dataclass(frozen=True)
class ChunkFormat:
    """How one scale's chunks are stored: the codec, and whether files are gzipped."""

    codec: Codec
    gzip: bool = False
    level: int = 6  # gzip compression level

    def key(self, scale_key: str, name: str) -> str:
        return f"{scale_key}/{name}.gz" if self.gzip else f"{scale_key}/{name}"

    def encode(self, chunk: np.ndarray) -> bytes | memoryview:
        data = self.codec.encode(chunk)
        return gzip_compress(data, self.level) if self.gzip else data

    def decode(self, data: bytes, shape: tuple[int, int, int, int], dtype: np.dtype) -> np.ndarray:
        return self.codec.decode(gzip_decompress(data) if self.gzip else data, shape, dtype)


__all__ = ["Codec", "ChunkFormat", "ENCODINGS", "make_codec", "codec_for_scale", "stored_dtype",
           "check_encoding", "gzip_compress", "gzip_decompress", "Raw", "Jpeg", "Png",
           "CompressedSegmentation"]
