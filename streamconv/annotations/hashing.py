"""MurmurHash3_x86_128 of many uint64 at once (numpy): the shard hash of annotation ids and
segment ids (the scalar `sharding.murmur` hashes one id in pure Python: 10 million ids would
take minutes), and the seeded draws that place annotations in the levels of the spatial index.
For 8-byte keys the hash is only its tail and finalisation; `tests/test_annotations.py` holds
it against the scalar one."""

from __future__ import annotations

import numpy as np

_M32 = np.uint64(0xFFFFFFFF)
_C1, _C2, _C3 = np.uint64(0x239B961B), np.uint64(0xAB0E9789), np.uint64(0x38B34AE5)


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return ((x << np.uint64(r)) | (x >> np.uint64(32 - r))) & _M32


def _fmix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(16))
    h = (h * np.uint64(0x85EBCA6B)) & _M32
    h = h ^ (h >> np.uint64(13))
    h = (h * np.uint64(0xC2B2AE35)) & _M32
    return h ^ (h >> np.uint64(16))


def murmur64(values: np.ndarray, seed: int = 0) -> np.ndarray:
    """The low 64 bits (h1 | h2 << 32) of MurmurHash3_x86_128 of each value's 8 little-endian
    bytes, as uint64."""
    v = np.asarray(values, np.uint64)
    with np.errstate(over="ignore"):
        k1, k2 = v & _M32, v >> np.uint64(32)
        s = np.uint64(seed & 0xFFFFFFFF)
        h1, h2 = np.full_like(v, s), np.full_like(v, s)
        h3, h4 = np.full_like(v, s), np.full_like(v, s)
        k2 = (_rotl((k2 * _C2) & _M32, 16) * _C3) & _M32
        h2 = h2 ^ k2
        k1 = (_rotl((k1 * _C1) & _M32, 15) * _C2) & _M32
        h1 = h1 ^ k1
        n = np.uint64(8)
        h1, h2, h3, h4 = h1 ^ n, h2 ^ n, h3 ^ n, h4 ^ n
        h1 = (h1 + h2 + h3 + h4) & _M32
        h2, h3, h4 = (h2 + h1) & _M32, (h3 + h1) & _M32, (h4 + h1) & _M32
        h1, h2, h3, h4 = _fmix(h1), _fmix(h2), _fmix(h3), _fmix(h4)
        h1 = (h1 + h2 + h3 + h4) & _M32
        h2 = (h2 + h1) & _M32
    return h1 | (h2 << np.uint64(32))


def uniform(ids: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A draw in [0, 1) per id, the same on every run (a seeded hash of the id), and the hash
    itself (the random order of a cell's annotations)."""
    h = murmur64(ids, seed)
    return (h >> np.uint64(11)).astype(np.float64) * 2.0 ** -53, h
