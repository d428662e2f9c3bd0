"""Hypothesis: odd shapes (1-voxel edges, sizes not multiples of the chunk), every stored
type, channels, anisotropy and methods, end to end (the kernels alone: test_downsampling.py)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import DTYPES, check_pyramid, values

import streamconv


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
