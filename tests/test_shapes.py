"""Hypothesis: odd shapes (1-voxel edges, sizes not multiples of the chunk), every stored
type, channels, anisotropy and methods, end to end and kernel by kernel."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import check_pyramid
from reference import downsample as reference_downsample

import streamconv
from streamconv.kernels.downsampling import downsample

DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "float32"]


def values(rng: np.random.Generator, shape: tuple, dtype: str, distinct: int | None) -> np.ndarray:
    if distinct:  # labels: few distinct values, so majority has real ties
        info = np.iinfo(dtype)
        pool = rng.integers(info.min, info.max, distinct, dtype=dtype, endpoint=True)
        return pool[rng.integers(0, distinct, shape)]
    if dtype == "float32":
        return rng.normal(0, 100, shape).astype(dtype)
    info = np.iinfo(dtype)
    high = min(info.max, 2 ** 50)  # the float64 reference cannot hold larger uint64 means
    return rng.integers(info.min, high, shape, dtype=dtype, endpoint=True)


@st.composite
def volumes(draw):
    shape = tuple(draw(st.integers(1, 40)) for _ in range(3))
    dtype = draw(st.sampled_from(DTYPES))
    method = draw(st.sampled_from(["average", "majority", "stride"]))
    channels = 1 if method == "majority" else draw(st.integers(1, 3))
    voxel = draw(st.sampled_from([(1, 1, 1), (1, 1, 4), (2, 1, 1), (0.5, 0.5, 3)]))
    chunk = draw(st.sampled_from([4, 8, 16]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    distinct = draw(st.sampled_from([2, 3, 7])) if method == "majority" and dtype != "float32" else None
    return shape, dtype, method, channels, voxel, chunk, seed, distinct


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(volumes())
def test_any_shape_type_and_method_round_trips(case):
    shape, dtype, method, channels, voxel, chunk, seed, distinct = case
    rng = np.random.default_rng(seed)
    data = values(rng, shape + (channels,), dtype, distinct)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.nii"
        nib.save(nib.Nifti1Image(data if channels > 1 else data[..., 0],
                                 np.diag(list(voxel) + [1]), dtype=np.dtype(dtype)), path)
        streamconv.convert(path, Path(tmp) / "out", workers=0, chunk_size=chunk,
                           downsampling_method=method)
        info = json.loads((Path(tmp) / "out" / "info").read_text())
        last = info["scales"][-1]
        assert all(n <= c for n, c in zip(last["size"], last["chunk_sizes"][0]))  # fits one chunk
        check_pyramid(Path(tmp) / "out", data, method, info)


@settings(max_examples=150, deadline=None)
@given(shape=st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9)),
       factor=st.sampled_from([(2, 2, 2), (2, 2, 1), (1, 2, 2), (2, 1, 1), (1, 1, 1)]),
       dtype=st.sampled_from(DTYPES), method=st.sampled_from(["average", "majority", "stride"]),
       channels=st.integers(1, 2), seed=st.integers(0, 2 ** 32 - 1))
def test_kernels_match_the_reference(shape, factor, dtype, method, channels, seed):
    rng = np.random.default_rng(seed)
    distinct = 3 if method == "majority" and dtype != "float32" else None
    xyzc = values(rng, shape + (channels,), dtype, distinct)
    got = downsample(np.ascontiguousarray(xyzc.transpose(3, 2, 1, 0)), factor, method)
    want = reference_downsample(xyzc, factor, method).transpose(3, 2, 1, 0)
    if dtype == "float32":
        np.testing.assert_allclose(got, want, rtol=1e-6)
    else:
        np.testing.assert_array_equal(got, want)


@settings(max_examples=60, deadline=None)
@given(shape=st.tuples(st.integers(1, 17), st.integers(1, 17), st.integers(1, 17)),
       factor=st.sampled_from([(2, 2, 2), (2, 2, 1), (1, 2, 2), (2, 1, 1)]),
       dtype=st.sampled_from([d for d in DTYPES if d != "float32"]), cell=st.integers(1, 5),
       noise=st.sampled_from([0.0, 0.05, 0.3]), seed=st.integers(0, 2 ** 32 - 1))
def test_majority_of_blocky_labels_matches_the_reference(shape, factor, dtype, cell, noise, seed):
    """Regions of `cell` voxels with a few flipped voxels: mostly uniform blocks and some mixed
    ones in one plane, the case the counting vote handles (random labels are voted by sorting)."""
    rng = np.random.default_rng(seed)
    coarse = values(rng, tuple(-(-n // cell) for n in shape) + (1,), dtype, 4)
    xyzc = coarse.repeat(cell, 0).repeat(cell, 1).repeat(cell, 2)[:shape[0], :shape[1], :shape[2]]
    flip = rng.random(xyzc.shape) < noise
    xyzc[flip] = values(rng, xyzc.shape, dtype, 4)[flip]
    got = downsample(np.ascontiguousarray(xyzc.transpose(3, 2, 1, 0)), factor, "majority")
    want = reference_downsample(xyzc, factor, "majority").transpose(3, 2, 1, 0)
    np.testing.assert_array_equal(got, want)


def test_uint64_average_is_exact_where_float64_is_not():
    big = np.array([2 ** 64 - 1, 2 ** 64 - 3], dtype=np.uint64).reshape(1, 1, 1, 2)
    assert downsample(big, (2, 1, 1), "average")[0, 0, 0, 0] == 2 ** 64 - 2
    halves = np.array([2 ** 60 + 1, 2 ** 60 + 2], dtype=np.uint64).reshape(1, 1, 1, 2)
    assert downsample(halves, (2, 1, 1), "average")[0, 0, 0, 0] == 2 ** 60 + 2  # 1.5: to even


def test_skip_empty_leaves_zero_chunks_out_and_readers_see_zeros(tmp_path):
    data = np.zeros((40, 20, 20), np.uint16)
    data[:8, :8, :8] = 7
    path = tmp_path / "sparse.nii"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    report = streamconv.convert(path, tmp_path / "out", workers=0, chunk_size=8, skip_empty=True)
    assert report.chunks_written < report.chunks
    assert len(list((tmp_path / "out" / "1000000_1000000_1000000").iterdir())) == 1
    info = json.loads((tmp_path / "out" / "info").read_text())
    check_pyramid(tmp_path / "out", data[..., None], "average", info)


def test_float64_is_stored_as_float32(tmp_path):
    data = np.linspace(-1, 1, 5 * 6 * 7).reshape(5, 6, 7)
    path = tmp_path / "f64.nii"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    report = streamconv.convert(path, tmp_path / "out", workers=0)
    info = json.loads((tmp_path / "out" / "info").read_text())
    assert info["data_type"] == "float32" and report.chunks_written == 1
    check_pyramid(tmp_path / "out", data.astype(np.float32)[..., None], "average", info)
