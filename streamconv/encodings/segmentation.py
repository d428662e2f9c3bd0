"""`compressed_segmentation` through the reference encoder (PyPI `compressed-segmentation`),
which is compiled and byte-identical to Neuroglancer's and tensorstore's.

The package crashes (segfault, 2.3.3) on 4-D arrays, so channels are encoded one by one and the
multi-channel header (format notes 4.1: one offset per channel, in words from the file start) is
written here.

A chunk whose every block holds one label (the inside of regions, background) is encoded here
with numpy, in the same words as the reference encoder, which would look every voxel up in a hash
table (three times slower: docs/benchmarks.md). tests/test_encodings.py holds the two
byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import compressed_segmentation as cseg
import numpy as np

from ..errors import DataError, UsageError
from .base import CodecBase, CodecOptions


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
            uniform = _uniform_blocks(channel, self.block_size)
            if uniform is not None:
                streams.append(uniform)
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


def _uniform_blocks(channel: np.ndarray, block: tuple[int, int, int]) -> np.ndarray | None:
    """The words of one channel's stream if every block of `channel` (z, y, x, C order) holds a
    single label and the chunk is a whole number of blocks; else None (the reference encoder's
    turn). Each block then has 0 encoding bits and a one-label table, written where the label
    first appears (in block order: x fastest) and pointed to again by later blocks: the reference
    encoder's table cache."""
    (bx, by, bz), (z, y, x) = block, channel.shape
    if z % bz or y % by or x % bx:
        return None
    blocks = channel.reshape(z // bz, bz, y // by, by, x // bx, bx)
    first = blocks[:, :1, :, :1, :, :1]
    # the first plane of each block first: a chunk with mixed blocks is usually refused there
    if not (blocks[:, :1] == first).all() or not (blocks == first).all():
        return None
    values = first.reshape(-1)
    n, words = values.size, values.dtype.itemsize // 4
    _, at, inverse = np.unique(values, return_index=True, return_inverse=True)
    if 2 * n + words * len(at) >= 1 << 24:  # offsets over 24 bits: the reference encoder refuses
        return None
    rank = np.empty(len(at), np.int64)
    rank[np.argsort(at)] = np.arange(len(at))  # order of first appearance
    first_seen = np.zeros(n, np.int64)
    first_seen[at] = 1
    header = np.empty((n, 2), np.uint32)
    header[:, 0] = 2 * n + words * rank[inverse.reshape(-1)]  # the table's offset; 0 bits
    header[:, 1] = 2 * n + words * (np.cumsum(first_seen) - first_seen)  # where the block's data starts
    tables = values[np.sort(at)].astype(values.dtype.newbyteorder("<")).view("<u4")
    return np.concatenate([header.reshape(-1), tables])
