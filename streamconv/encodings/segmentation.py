"""`compressed_segmentation` through the reference encoder (PyPI `compressed-segmentation`),
which is compiled and byte-identical to Neuroglancer's and tensorstore's.

The package crashes (segfault, 2.3.3) on 4-D arrays, so channels are encoded one by one and the
multi-channel header (format notes 4.1: one offset per channel, in words from the file start) is
written here.

A chunk whose blocks hold few labels each (one inside regions and background, two or three where
a smooth boundary crosses) is encoded with numpy (`cseg_blocks.py`), in the same words as the
reference encoder, which looks every voxel up in a hash table and is slower (docs/benchmarks.md).
tests/test_encodings.py holds the two byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import compressed_segmentation as cseg
import numpy as np

from ..errors import DataError, UsageError
from .base import CodecBase, CodecOptions
from .cseg_blocks import encode_blocks


@dataclass(frozen=True)
class CompressedSegmentation(CodecBase):
    block_size: tuple[int, int, int] = (8, 8, 8)
    name = "compressed_segmentation"

    @classmethod
    def check(cls, dtype: np.dtype, channels: int, volume_type: str) -> None:
        if dtype.name not in ("uint32", "uint64"):
            raise UsageError(f"compressed_segmentation stores uint32 or uint64 labels, not "
                             f"{dtype.name} (8 and 16-bit segmentations are widened to uint32)")

    @classmethod
    def stored_dtype(cls, dtype: np.dtype, volume_type: str) -> np.dtype:
        """8 and 16-bit unsigned labels are widened to uint32, the narrowest type it stores."""
        if volume_type == "segmentation" and dtype.kind == "u" and dtype.itemsize < 4:
            return np.dtype("uint32")
        return np.dtype(dtype)

    @classmethod
    def configure(cls, options: CodecOptions) -> CompressedSegmentation:
        block = tuple(options.cseg_block_size)
        if len(block) != 3 or min(block) < 1:
            raise UsageError(f"--cseg-block-size needs three positive numbers, got {block}")
        return cls((block[0], block[1], block[2]))

    @classmethod
    def from_info(cls, members: dict) -> CompressedSegmentation:
        block = tuple(members.get("compressed_segmentation_block_size", (8, 8, 8)))
        if len(block) != 3 or not all(isinstance(b, int) and not isinstance(b, bool)
                                      and 1 <= b <= 1024 for b in block):
            raise DataError(f"compressed_segmentation_block_size {list(block)[:4]} is not three "
                            "integers from 1 to 1024")
        return cls((block[0], block[1], block[2]))

    def encode(self, chunk: np.ndarray) -> bytes:
        labels = chunk if chunk.dtype in (np.uint32, np.uint64) else chunk.astype(np.uint32)
        streams = []
        for k in range(len(labels)):
            channel = np.ascontiguousarray(labels[k])  # the one copy: a chunk is a box of its slab
            few = encode_blocks(channel, self.block_size)
            if few is not None:
                streams.append(few)
                continue
            # A channel (z, y, x) in C order is (x, y, z) in Fortran order: the package's 'F' layout.
            # Each single-channel stream starts with its own header word (1): drop it.
            streams.append(np.frombuffer(cseg.compress(channel.T, block_size=self.block_size, order="F"),
                                         np.uint32)[1:])
        offsets = np.cumsum([len(streams)] + [len(s) for s in streams[:-1]], dtype=np.uint32)
        return np.concatenate([offsets, *streams]).tobytes()

    def decode(self, data: bytes, shape: tuple[int, int, int, int], dtype: np.dtype) -> np.ndarray:
        c, z, y, x = shape
        stored = np.uint64 if np.dtype(dtype).itemsize == 8 else np.uint32
        if len(data) % 4:
            raise DataError("compressed_segmentation chunk is not a whole number of words")
        words = np.frombuffer(data, np.uint32)
        offsets = [int(o) for o in words[:c]] + [len(words)]
        if len(words) < c or offsets[0] != c or any(a > b for a, b in zip(offsets, offsets[1:])):
            raise DataError("compressed_segmentation chunk has a bad channel header")
        out = np.empty(shape, dtype)
        for k in range(c):
            stream = np.concatenate([np.ones(1, np.uint32), words[offsets[k]:offsets[k + 1]]])
            try:
                labels = cseg.decompress(stream.tobytes(), (x, y, z), stored, block_size=self.block_size,
                                         order="F")
            except Exception as exc:  # the package raises plain exceptions for bad streams
                raise DataError(f"not a compressed_segmentation chunk ({exc})") from exc
            out[k] = np.asarray(labels).reshape((x, y, z), order="F").T
        return out

    def info(self) -> dict:
        return {"encoding": "compressed_segmentation",
                "compressed_segmentation_block_size": list(self.block_size)}

