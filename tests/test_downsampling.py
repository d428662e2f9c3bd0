"""The downsampling kernels (kernels/downsampling.py) against the reference, by hypothesis:
every stored type, factor, method and channel count on small odd shapes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import DTYPES, values
from reference import downsample as reference_downsample

from streamconv.kernels.downsampling import downsample


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
