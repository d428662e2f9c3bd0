"""Neuroglancer's multi-resolution mesh format (`neuroglancer_multilod_draco`, spec section 6.4):
the binary manifest of a segment, its Draco fragments, and the Z-curve order of fragments.

A fragment of level of detail `lod` at grid position `p` covers the box
`grid_origin + chunk_shape * 2**lod * [p, p + 1)` in stored-model coordinates; its vertices are
integers in [0, 2**bits) across that box. We quantize them ourselves, then hand the integers to
Draco with a quantization that maps each integer to itself (range 2**bits - 1, origin 0): a
reader that skips Draco's dequantization (Neuroglancer) and one that applies it (DracoPy) both
get the same integers, and two fragments that share a face quantize it to the same points.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MULTILOD_INFO = "neuroglancer_multilod_draco"
MULTILOD_MANIFEST = ".index"  # `<label>.index`, a label's manifest (unsharded)
QUANTIZATION_BITS = 16


@dataclass(frozen=True)
class Lod:
    """The fragments of one level of detail: grid positions (n x 3) and byte sizes, Z-curve order."""

    positions: np.ndarray
    sizes: list[int]


@dataclass(frozen=True)
class Manifest:
    """The `<segment>.index` file of a segment."""

    chunk_shape: tuple[float, float, float]
    grid_origin: tuple[float, float, float]
    lod_scales: list[float]
    lods: list[Lod]

    def to_bytes(self) -> bytes:
        n = len(self.lods)
        parts = [struct.pack("<3f", *self.chunk_shape), struct.pack("<3f", *self.grid_origin),
                 struct.pack("<I", n), np.asarray(self.lod_scales, "<f4").tobytes(),
                 np.zeros((n, 3), "<f4").tobytes(),  # vertex_offsets
                 np.asarray([len(lod.sizes) for lod in self.lods], "<u4").tobytes()]
        for lod in self.lods:
            parts.append(np.ascontiguousarray(np.asarray(lod.positions, "<u4").reshape(-1, 3).T).tobytes())
            parts.append(np.asarray(lod.sizes, "<u4").tobytes())
        return b"".join(parts)

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        """Read a manifest back (tests, and checks of outputs)."""
        chunk_shape = struct.unpack_from("<3f", data, 0)
        grid_origin = struct.unpack_from("<3f", data, 12)
        (n,) = struct.unpack_from("<I", data, 24)
        at = 28
        scales = np.frombuffer(data, "<f4", n, at).tolist()
        at += 4 * n + 12 * n  # the lod scales, then the vertex offsets
        counts = np.frombuffer(data, "<u4", n, at)
        at += 4 * n
        lods = []
        for count in counts:
            positions = np.frombuffer(data, "<u4", 3 * count, at).reshape(3, count).T
            at += 12 * count
            sizes = np.frombuffer(data, "<u4", count, at).tolist()
            at += 4 * count
            lods.append(Lod(positions, sizes))
        if at != len(data):
            raise ValueError(f"manifest of {len(data)} bytes, {at} read")
        return cls(chunk_shape, grid_origin, scales, lods)


def zorder(positions: np.ndarray) -> np.ndarray:
    """The permutation that sorts grid positions (n x 3, x y z) along the Z curve, x the
    fastest-varying bit, as Neuroglancer expects."""
    codes = np.zeros(len(positions), np.uint64)
    p = np.asarray(positions, np.uint64)
    for bit in range(21):
        for axis in range(3):
            codes |= ((p[:, axis] >> np.uint64(bit)) & np.uint64(1)) << np.uint64(3 * bit + axis)
    return np.argsort(codes, kind="stable")


def encode_fragment(vertices: np.ndarray, faces: np.ndarray, extent: Sequence[float],
                    bits: int = QUANTIZATION_BITS) -> bytes:
    """A Draco mesh of vertices given relative to their fragment's box (stored-model units),
    quantized to integers across `extent`, the box's size."""
    top = 2 ** bits - 1
    quantized = np.clip(np.rint(vertices / np.asarray(extent, np.float64) * top), 0, top)
    import DracoPy

    return bytes(DracoPy.encode(quantized.astype(np.float32), np.asarray(faces, np.uint32),
                                quantization_bits=bits, quantization_range=float(top),
                                quantization_origin=np.zeros(3, np.float32)))


def decode_fragment(data: bytes, extent: Sequence[float], bits: int = QUANTIZATION_BITS
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(vertices relative to the fragment's box, in stored-model units; faces)."""
    import DracoPy

    mesh = DracoPy.decode(data)
    quantized = np.asarray(mesh.points, np.float64).reshape(-1, 3)
    return quantized / (2 ** bits - 1) * np.asarray(extent, np.float64), np.asarray(mesh.faces).reshape(-1, 3)
