"""An independent reader of Neuroglancer's multi-resolution meshes, written from the spec
(section 6.4 of the format notes, and section 5 for the sharded variant): the manifest parsed
field by field, the fragments decoded with DracoPy, shards located with a MurmurHash3 written
here and checked against the format notes' test vectors. It shares no code with streamconv's
writer, so a test that reads back through it checks the bytes, not the writer against itself."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import DracoPy
import numpy as np

M32 = 0xFFFFFFFF


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & M32


def _fmix(h: int) -> int:
    h = ((h ^ (h >> 16)) * 0x85EBCA6B) & M32
    h = ((h ^ (h >> 13)) * 0xC2B2AE35) & M32
    return h ^ (h >> 16)


def shard_hash(value: int) -> int:
    """murmurhash3_x86_128 (seed 0) of the 8 little-endian bytes of `value`, low 64 bits. Eight
    bytes are less than one 16-byte block: only the tail step runs (k2 and k1)."""
    c1, c2, c3 = 0x239B961B, 0xAB0E9789, 0x38B34AE5
    h1 = h2 = h3 = h4 = 0
    k1, k2 = value & M32, (value >> 32) & M32
    h2 ^= (_rotl((k2 * c2) & M32, 16) * c3) & M32
    h1 ^= (_rotl((k1 * c1) & M32, 15) * c2) & M32
    h1, h2, h3, h4 = (h ^ 8 for h in (h1, h2, h3, h4))
    h1 = (h1 + h2 + h3 + h4) & M32
    h2, h3, h4 = ((h + h1) & M32 for h in (h2, h3, h4))
    h1, h2, h3, h4 = (_fmix(h) for h in (h1, h2, h3, h4))
    h1 = (h1 + h2 + h3 + h4) & M32
    h2 = (h2 + h1) & M32
    return h1 | h2 << 32


assert [shard_hash(v) for v in (0, 1, 42)] == [0x4772B084E028AE41, 0xE8BD67D616D4CE9A, 0xC20B94F95119F47A]


def read_sharded(mesh_dir: Path, sharding: dict, label: int) -> tuple[bytes, bytes]:
    """(manifest, fragment data) of a segment from its shard: the manifest is the chunk keyed
    by the segment id, the fragments lie just before it, as long as the manifest's sizes say."""
    assert sharding["@type"] == "neuroglancer_uint64_sharded_v1" and sharding["hash"] == "murmurhash3_x86_128"
    mb, sb = sharding["minishard_bits"], sharding["shard_bits"]
    hashed = shard_hash(label >> sharding["preshift_bits"])
    minishard, shard = hashed & ((1 << mb) - 1), (hashed >> mb) & ((1 << sb) - 1)
    name = f"{shard:0{-(-sb // 4)}x}.shard" if sb else "0.shard"
    data = (mesh_dir / name).read_bytes()
    end_of_index = 16 << mb
    start, stop = struct.unpack_from("<QQ", data, 16 * minishard)
    index = data[end_of_index + start:end_of_index + stop]
    if sharding.get("minishard_index_encoding", "raw") == "gzip":
        index = gzip.decompress(index)
    rows = np.frombuffer(index, "<u8").reshape(3, -1)
    ids = np.cumsum(rows[0])
    at = end_of_index
    for cid, delta, size in zip(ids.tolist(), rows[1].tolist(), rows[2].tolist()):
        at += delta
        if cid == label:
            manifest = data[at:at + size]
            if sharding.get("data_encoding", "raw") == "gzip":
                manifest = gzip.decompress(manifest)
            fragments = sum(_fragment_sizes(manifest))
            assert at - fragments >= end_of_index
            return manifest, data[at - fragments:at]
        at += size
    raise KeyError(label)


def _fragment_sizes(manifest: bytes) -> list[int]:
    (num_lods,) = struct.unpack_from("<I", manifest, 24)
    counts = np.frombuffer(manifest, "<u4", num_lods, 28 + 16 * num_lods)
    at, sizes = 28 + 20 * num_lods, []
    for count in counts.tolist():
        sizes += np.frombuffer(manifest, "<u4", count, at + 12 * count).tolist()
        at += 16 * count
    return sizes


def read_multilod(mesh_dir: Path, label: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per level of detail: (vertices in nm, faces) of a segment, all fragments joined."""
    info = json.loads((mesh_dir / "info").read_text())
    assert info["@type"] == "neuroglancer_multilod_draco"
    bits = info["vertex_quantization_bits"]
    transform = np.asarray(info["transform"], np.float64).reshape(3, 4)
    if "sharding" in info:
        index, data = read_sharded(mesh_dir, info["sharding"], label)
    else:
        index = (mesh_dir / f"{label}.index").read_bytes()
        data = (mesh_dir / str(label)).read_bytes()
    chunk_shape = np.asarray(struct.unpack_from("<3f", index, 0))
    grid_origin = np.asarray(struct.unpack_from("<3f", index, 12))
    (num_lods,) = struct.unpack_from("<I", index, 24)
    at = 28 + 4 * num_lods
    vertex_offsets = np.frombuffer(index, "<f4", 3 * num_lods, at).reshape(num_lods, 3)
    at += 12 * num_lods
    per_lod = np.frombuffer(index, "<u4", num_lods, at)
    at += 4 * num_lods
    lods, offset = [], 0
    for lod, count in enumerate(per_lod):
        positions = np.frombuffer(index, "<u4", 3 * count, at).reshape(3, count).T
        at += 12 * count
        sizes = np.frombuffer(index, "<u4", count, at)
        at += 4 * count
        vertices, faces, n = [], [], 0
        for position, size in zip(positions, sizes):
            mesh = DracoPy.decode(data[offset:offset + size])
            offset += int(size)
            q = np.asarray(mesh.points, np.float64).reshape(-1, 3)
            assert q.min() >= 0 and q.max() <= 2 ** bits - 1 and np.all(q == np.rint(q))
            model = grid_origin + vertex_offsets[lod] + chunk_shape * 2 ** lod * (position + q / (2 ** bits - 1))
            vertices.append(model @ transform[:, :3].T + transform[:, 3])
            faces.append(np.asarray(mesh.faces, np.int64).reshape(-1, 3) + n)
            n += len(q)
        lods.append((np.concatenate(vertices), np.concatenate(faces)))
    assert at == len(index) and offset == len(data)
    return lods


def watertight(vertices: np.ndarray, faces: np.ndarray, tolerance: float) -> bool:
    """Closed and consistently oriented: once vertices at the same place are merged, every
    directed edge appears once and its reverse once."""
    keys = np.rint(vertices / tolerance).astype(np.int64)
    _, merged = np.unique(keys, axis=0, return_inverse=True)
    f = merged.reshape(-1)[faces]
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    directed, counts = np.unique(edges, axis=0, return_counts=True)
    if counts.max() != 1:
        return False
    reverse = {tuple(e) for e in directed[:, ::-1].tolist()}
    return all(tuple(e) in reverse for e in directed.tolist())
