"""Codecs: round trips over odd shapes, compressed_segmentation byte for byte against the
reference package and the format notes' worked examples, and tensorstore reading our bytes."""

from __future__ import annotations

import json

import compressed_segmentation as cseg
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import read_scale

from streamconv.encodings import (
    GZIP,
    check_encoding,
    gzip_compress,
    gzip_decompress,
    make_codec,
    stored_dtype,
)
from streamconv.errors import UsageError

shapes = st.tuples(st.integers(1, 4), st.integers(1, 40), st.integers(1, 40), st.integers(1, 40))


def round_trip(name: str, chunk: np.ndarray, **params) -> np.ndarray:
    codec = make_codec(name, **params)
    return codec.decode(bytes(codec.encode(chunk)), chunk.shape, chunk.dtype)


@settings(max_examples=60, deadline=None)
@given(shape=shapes, dtype=st.sampled_from(["uint8", "int16", "uint32", "uint64", "float32"]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_raw_round_trips(shape, dtype, seed):
    chunk = np.random.default_rng(seed).integers(0, 200, shape).astype(dtype)
    assert np.array_equal(round_trip("raw", chunk), chunk)


@settings(max_examples=60, deadline=None)
@given(shape=shapes, dtype=st.sampled_from(["uint8", "uint16"]), seed=st.integers(0, 2 ** 32 - 1))
def test_png_round_trips_exactly(shape, dtype, seed):
    chunk = np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    assert np.array_equal(round_trip("png", chunk), chunk)


@settings(max_examples=60, deadline=None)
@given(z=st.integers(1, 40), y=st.integers(1, 40), x=st.integers(1, 40),
       channels=st.sampled_from([1, 3]), plane=st.sampled_from(["xy", "xz"]), seed=st.integers(0, 2 ** 16))
def test_jpeg_is_exact_on_flat_chunks_and_close_on_smooth_ones(z, y, x, channels, plane, seed):
    flat = np.full((channels, z, y, x), 77, np.uint8)
    assert np.array_equal(round_trip("jpeg", flat, jpeg_plane=plane), flat)
    zz, yy, xx = np.meshgrid(np.arange(z), np.arange(y), np.arange(x), indexing="ij")
    # colours differ by a constant: JPEG halves the chroma resolution, so a smooth image is one
    # whose chroma is smooth too (hypothesis found 34 dB on a 9x2 image of varying hue)
    smooth = np.stack([(100 + 40 * np.sin(xx / 7) * np.cos(yy / 9 + seed) + zz + 20 * c) for c in range(channels)])
    smooth = smooth.astype(np.uint8)
    got = round_trip("jpeg", smooth, jpeg_plane=plane)
    mse = np.mean((got.astype(float) - smooth) ** 2)
    assert mse == 0 or 10 * np.log10(255 ** 2 / mse) >= 35


@settings(max_examples=80, deadline=None)
@given(shape=shapes, dtype=st.sampled_from(["uint32", "uint64"]), distinct=st.sampled_from([1, 2, 5, 40, 600]),
       block=st.sampled_from([(8, 8, 8), (4, 4, 4), (3, 5, 2), (2, 2, 1)]), seed=st.integers(0, 2 ** 32 - 1))
def test_compressed_segmentation_matches_the_reference_package_byte_for_byte(shape, dtype, distinct, block, seed):
    rng = np.random.default_rng(seed)
    high = 2 ** 40 if dtype == "uint64" else 2 ** 32 - 1
    pool = rng.integers(0, high, distinct, dtype=np.uint64, endpoint=True).astype(dtype)
    chunk = pool[rng.integers(0, distinct, shape)]
    data = bytes(make_codec("compressed_segmentation", cseg_block_size=block).encode(chunk))
    assert data == reference_cseg(chunk, block)
    assert np.array_equal(round_trip("compressed_segmentation", chunk, cseg_block_size=block), chunk)


def reference_cseg(chunk: np.ndarray, block: tuple[int, int, int]) -> bytes:
    """The reference package, channel by channel (it crashes on 4-D input), with the header of 4.1."""
    streams = [np.frombuffer(cseg.compress(np.asfortranarray(chunk[k].T), block_size=block, order="F"),
                             np.uint32) for k in range(chunk.shape[0])]
    assert all(s[0] == 1 for s in streams)
    offsets, at = [], chunk.shape[0]
    for s in streams:
        offsets.append(at)
        at += len(s) - 1
    return np.concatenate([np.array(offsets, np.uint32)] + [s[1:] for s in streams]).tobytes()


@settings(max_examples=80, deadline=None)
@given(grid=st.tuples(st.integers(1, 2), st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)),
       dtype=st.sampled_from(["uint32", "uint64"]), distinct=st.sampled_from([1, 2, 5, 300]),
       block=st.sampled_from([(8, 8, 8), (4, 4, 4), (3, 5, 2), (2, 2, 1)]),
       change=st.sampled_from(["none", "one voxel", "ragged"]), seed=st.integers(0, 2 ** 32 - 1))
def test_compressed_segmentation_of_uniform_blocks_matches_the_reference(grid, dtype, distinct, block, change, seed):
    """Chunks made of one-label blocks (encoded with numpy, not the package), cut out of a larger
    slab as the engine does; one changed voxel or a ragged edge sends them to the package."""
    rng = np.random.default_rng(seed)
    high = 2 ** 40 if dtype == "uint64" else 2 ** 32 - 1
    pool = rng.integers(0, high, distinct, dtype=np.uint64, endpoint=True).astype(dtype)
    chunk = pool[rng.integers(0, distinct, grid)].repeat(block[2], 1).repeat(block[1], 2).repeat(block[0], 3)
    if change == "one voxel":
        chunk[tuple(rng.integers(0, n) for n in chunk.shape)] += 1
    elif change == "ragged":
        chunk = chunk[:, :, :, :max(1, chunk.shape[3] - 1)]
    assert_cseg_of_a_cut_chunk(chunk, block)


@settings(max_examples=80, deadline=None)
@given(grid=st.tuples(st.integers(1, 2), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)),
       dtype=st.sampled_from(["uint32", "uint64"]), most=st.sampled_from([2, 3, 4, 5, 16, 17]),
       block=st.sampled_from([(8, 8, 8), (4, 4, 4), (3, 5, 2), (2, 2, 1)]), seed=st.integers(0, 2 ** 32 - 1))
def test_compressed_segmentation_of_blocks_of_few_labels_matches_the_reference(grid, dtype, most, block, seed):
    """Chunks as an atlas's boundaries make them: each block holds one label or a few (up to
    `most`: 2-3 as on a smooth boundary, up to 16 for the numpy encoder, 17 for the package's
    turn), drawn from a small pool so that blocks share tables; cut out of a larger slab."""
    rng = np.random.default_rng(seed)
    high = 2 ** 40 if dtype == "uint64" else 2 ** 32 - 1
    pool = rng.integers(0, high, 20, dtype=np.uint64, endpoint=True).astype(dtype)
    c, nz, ny, nx = grid
    bx, by, bz = block
    chunk = np.empty((c, nz * bz, ny * by, nx * bx), dtype)
    for k, iz, iy, ix in np.ndindex(c, nz, ny, nx):
        labels = rng.choice(pool, rng.integers(1, most + 1), replace=False)
        chunk[k, iz * bz:(iz + 1) * bz, iy * by:(iy + 1) * by, ix * bx:(ix + 1) * bx] = \
            labels[rng.integers(0, len(labels), (bz, by, bx))] if rng.random() < 0.6 else labels[0]
    assert_cseg_of_a_cut_chunk(chunk, block)


def words(hexes: str) -> list[int]:
    return [int(h, 16) for h in hexes.replace(" ", "").split(",")]


@pytest.mark.parametrize("values, dtype, size, block, expected", [
    ([4, 3, 5, 4, 1, 3, 3, 3], "uint32", (2, 2, 2), (2, 2, 1), "1, 02000005, 4, 01000009, 8, 61, 3, 4, 5, e, 1, 3"),
    ([4, 3, 5, 4, 1, 3, 3, 3], "uint64", (2, 2, 2), (2, 2, 1),
     "1, 02000005, 4, 0100000c, b, 61, 3,0, 4,0, 5,0, e, 1,0, 3,0"),
    ([4] * 4 + [3] * 4 + [3] * 4 + [4] * 4, "uint32", (2, 2, 4), (2, 2, 1), "1, 8, 8, 9, 9, 9, a, 8, a, 4, 3"),
    ([7, 8, 9, 7, 8, 9], "uint32", (3, 2, 1), (2, 2, 1), "1, 01000005, 4, 7, 7, a, 7, 8, 9"),
])
def test_compressed_segmentation_worked_examples(values, dtype, size, block, expected):
    """Format notes 4.4, examples A to D (values listed x fastest)."""
    chunk = np.ascontiguousarray(np.array(values, dtype).reshape(size, order="F").T)[None]
    data = make_codec("compressed_segmentation", cseg_block_size=block).encode(chunk)
    assert list(np.frombuffer(data, np.uint32)) == words(expected)


def test_compressed_segmentation_two_channels_example_e():
    chunk = np.ascontiguousarray(np.array([4, 3, 5, 4, 1, 3, 3, 3], "uint32").reshape((2, 2, 2), order="F").T)
    data = np.frombuffer(make_codec("compressed_segmentation", cseg_block_size=(2, 2, 1)).encode(
        np.stack([chunk, chunk])), np.uint32)
    one = words("1, 02000005, 4, 01000009, 8, 61, 3, 4, 5, e, 1, 3")
    assert list(data) == [2, 2 + len(one) - 1] + one[1:] + one[1:]


def test_gzip_is_rfc1952_and_round_trips():
    data = gzip_compress(b"chunk bytes" * 100)
    assert data[:2] == b"\x1f\x8b" and gzip_decompress(data) == b"chunk bytes" * 100
    assert GZIP.key("8_8_8/0-64_0-64_0-64") == "8_8_8/0-64_0-64_0-64.gz"  # the file a chunk sink writes


@pytest.mark.parametrize("name, dtype, channels, kind", [
    ("jpeg", "uint16", 1, "image"), ("jpeg", "uint8", 2, "image"), ("jpeg", "uint8", 1, "segmentation"),
    ("png", "float32", 1, "image"), ("png", "uint8", 5, "image"),
    ("compressed_segmentation", "uint8", 1, "image"), ("compressed_segmentation", "float32", 1, "image"),
])
def test_illegal_combinations_are_refused(name, dtype, channels, kind):
    with pytest.raises(UsageError):
        check_encoding(name, np.dtype(dtype), channels, kind)


def test_small_label_types_widen_for_compressed_segmentation():
    assert stored_dtype("compressed_segmentation", np.dtype("uint8"), "segmentation") == np.uint32
    assert stored_dtype("compressed_segmentation", np.dtype("uint64"), "segmentation") == np.uint64
    assert stored_dtype("raw", np.dtype("uint8"), "segmentation") == np.uint8


@pytest.mark.parametrize("name, dtype, channels", [
    ("jpeg", "uint8", 1), ("jpeg", "uint8", 3), ("png", "uint8", 1), ("png", "uint16", 1),
    ("png", "uint8", 3), ("compressed_segmentation", "uint32", 1), ("compressed_segmentation", "uint64", 1),
    ("compressed_segmentation", "uint32", 2), ("compressed_segmentation", "uint64", 2),
])
def test_tensorstore_reads_what_we_encode(tmp_path, name, dtype, channels):
    """A one-scale volume of 20 x 13 x 7 in 16^3 chunks (edge chunks clipped), written by hand."""
    rng = np.random.default_rng(3)
    size = (20, 13, 7)
    if name == "jpeg":
        x, y, z = np.meshgrid(*(np.arange(n) for n in size), indexing="ij")
        volume = np.stack([100 + 30 * np.sin(x / 5 + c) + y for c in range(channels)], -1).astype(dtype)
    else:
        volume = rng.integers(0, 6, size + (channels,)).astype(dtype) * (2 ** 33 if dtype == "uint64" else 3)
    codec = make_codec(name, cseg_block_size=(8, 8, 8))
    info = {"@type": "neuroglancer_multiscale_volume", "type": "image", "data_type": dtype,
            "num_channels": channels, "scales": [{"key": "s0", "size": list(size), "voxel_offset": [0, 0, 0],
                                                  "resolution": [1, 1, 1], "chunk_sizes": [[16, 16, 16]],
                                                  **codec.info()}]}
    (tmp_path / "info").write_text(json.dumps(info))
    (tmp_path / "s0").mkdir()
    for x0 in (0, 16):
        x1 = min(x0 + 16, size[0])
        chunk = np.ascontiguousarray(volume[x0:x1].transpose(3, 2, 1, 0))
        (tmp_path / "s0" / f"{x0}-{x1}_0-13_0-7").write_bytes(bytes(codec.encode(chunk)))
    got = read_scale(tmp_path, 0)
    if name == "jpeg":
        mse = np.mean((got.astype(float) - volume) ** 2)
        assert 10 * np.log10(255 ** 2 / max(mse, 1e-9)) >= 35
    else:
        assert np.array_equal(got, volume)


def assert_cseg_of_a_cut_chunk(chunk: np.ndarray, block: tuple[int, int, int]) -> None:
    """`chunk` encoded as a box cut out of a larger slab (strided, as band tasks see it): the
    reference encoder's bytes, and decoded back whole."""
    slab = np.zeros(chunk.shape[:1] + tuple(n + 3 for n in chunk.shape[1:]), chunk.dtype)
    slab[:, 1:-2, 2:-1, 3:] = chunk
    view = slab[:, 1:-2, 2:-1, 3:]
    data = bytes(make_codec("compressed_segmentation", cseg_block_size=block).encode(view))
    assert data == reference_cseg(chunk, block)
    assert np.array_equal(round_trip("compressed_segmentation", view, cseg_block_size=block), chunk)
