"""MurmurHash3_x86_128 (seed 0), the format's `murmurhash3_x86_128` shard hash: pure Python,
so that no extension module is needed to read or write a volume that other tools hashed."""

from __future__ import annotations

M32 = 0xFFFFFFFF
_C1, _C2, _C3, _C4 = 0x239B961B, 0xAB0E9789, 0x38B34AE5, 0xA1E38B93


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & M32


def _fmix(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    return h ^ (h >> 16)


def _mix(k: int, c: int, r: int, d: int) -> int:
    return (_rotl((k * c) & M32, r) * d) & M32


def murmurhash3_x86_128(data: bytes, seed: int = 0) -> tuple[int, int, int, int]:
    """The four 32-bit words h1..h4 of MurmurHash3_x86_128 of `data`."""
    h = [seed & M32] * 4
    n = len(data)
    whole = n - n % 16
    consts = (_C1, _C2, _C3, _C4)
    rots, adds = (15, 16, 17, 18), (0x561CCD1B, 0x0BCAA747, 0x96CD1C35, 0x32AC3B17)
    hrots = (19, 17, 15, 13)
    for at in range(0, whole, 16):
        ks = [int.from_bytes(data[at + 4 * i:at + 4 * i + 4], "little") for i in range(4)]
        for i in range(4):
            h[i] ^= _mix(ks[i], consts[i], rots[i], consts[(i + 1) % 4])
            h[i] = _rotl(h[i], hrots[i])
            h[i] = (h[i] + h[(i + 1) % 4]) & M32
            h[i] = (h[i] * 5 + adds[i]) & M32
    tail = data[whole:]
    for i in range(3, -1, -1):
        part = tail[4 * i:4 * i + 4]
        if part:
            h[i] ^= _mix(int.from_bytes(part, "little"), consts[i], rots[i], consts[(i + 1) % 4])
    h = [x ^ n for x in h]
    h[0] = (h[0] + h[1] + h[2] + h[3]) & M32
    h[1], h[2], h[3] = ((x + h[0]) & M32 for x in h[1:])
    h = [_fmix(x) for x in h]
    h[0] = (h[0] + h[1] + h[2] + h[3]) & M32
    h[1], h[2], h[3] = ((x + h[0]) & M32 for x in h[1:])
    return h[0], h[1], h[2], h[3]


def murmurhash3_x86_128_low64(value: int) -> int:
    """The shard hash of a uint64: the low 64 bits (h1 | h2 << 32) of the hash of its 8
    little-endian bytes."""
    h1, h2, _, _ = murmurhash3_x86_128(value.to_bytes(8, "little"))
    return h1 | (h2 << 32)
