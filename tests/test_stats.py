"""Value statistics (`stats.json`): gathered during the conversion, held against numpy on every
scale as tensorstore reads it back: exact minimum, maximum, NaN and infinity counts, and
percentiles within one histogram bin of numpy's."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from reference import read_scale

import streamconv
from streamconv.kernels.stats import EXACT, SAMPLED_PLANES, SAMPLED_ROWS, Meter, Sampling, measure
from streamconv.layout.statsfile import PERCENTILES, VERSION, channel_json


def check_channel(stored: dict, values: np.ndarray) -> None:
    """One channel's statistics against numpy on the same values."""
    values = values.ravel()
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    assert stored["voxels"] == values.size
    assert stored["nan"] == int(np.isnan(values).sum()) if values.dtype.kind == "f" else stored["nan"] == 0
    assert stored["inf"] == int(np.isinf(values).sum()) if values.dtype.kind == "f" else stored["inf"] == 0
    if finite.size == 0:
        assert stored["min"] is None and stored["max"] is None
        return
    assert stored["min"] == finite.min() and stored["max"] == finite.max()
    hist = stored["histogram"]
    lower, upper = np.array(hist["lower"]), np.array(hist["upper"])
    assert sum(hist["count"]) == finite.size == hist["sampled"]
    ordered = np.sort(finite)
    for p in PERCENTILES:
        ours = stored["percentiles"][f"{p:g}"]
        rank = p / 100 * (finite.size - 1)
        below, above = ordered[int(np.floor(rank))], ordered[int(np.ceil(rank))]
        # numpy's percentile lies between these two values; ours within the bins that hold them
        low = lower[np.searchsorted(upper, below)]
        high = upper[np.searchsorted(lower, above, side="right") - 1]
        assert low <= ours <= high, (p, ours, low, high)
        if hist["exact"]:
            assert ours == pytest.approx(np.percentile(finite.astype(np.float64), p))  # int8: no overflow


def test_statistics_of_every_scale_equal_numpys(tmp_path):
    """A float volume with NaN, infinities, a constant region and an all-NaN corner; read
    back scale by scale."""
    rng = np.random.default_rng(3)
    data = (rng.standard_normal((70, 52, 37)) * 3 - 1).astype(np.float32)
    data[5:30, 5:30, 5:30] = 2.5  # constant
    data[0:2, 0:2, 0:2] = np.nan  # a whole 2x2x2 block: NaN on the next scale too
    data[40, 7, 9] = np.nan
    data[60, 50, 30] = np.inf
    data[61, 50, 30] = -np.inf
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "f.nii")
    streamconv.convert(tmp_path / "f.nii", tmp_path / "out", chunk_size=16, workers=2)
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    info = json.loads((tmp_path / "out" / "info").read_text())
    assert stats["version"] == VERSION and stats["data_type"] == "float32"
    assert [s["key"] for s in stats["scales"]] == [s["key"] for s in info["scales"]]
    assert len(info["scales"]) >= 3
    for level, scale in enumerate(stats["scales"]):
        stored = read_scale(tmp_path / "out", level)
        check_channel(scale["channels"][0], np.asarray(stored[..., 0]))
    assert stats["scales"][0]["channels"][0]["nan"] == 9


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "int32", "uint32", "int64"])
def test_integer_volumes_with_a_constant_region_and_two_channels(tmp_path, dtype):
    rng = np.random.default_rng(5)
    info = np.iinfo(dtype)
    low, high = max(info.min, -40000), min(info.max, 70000)
    data = rng.integers(low, high, (33, 20, 17, 2), endpoint=True).astype(dtype)
    data[:10, :10, :10, 1] = high  # constant
    nib.save(nib.Nifti1Image(data, np.eye(4), dtype=data.dtype), tmp_path / "i.nii")
    streamconv.convert(tmp_path / "i.nii", tmp_path / "out", chunk_size=8, workers=0)
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    for level, scale in enumerate(stats["scales"]):
        stored = np.asarray(read_scale(tmp_path / "out", level))
        for c in range(2):
            check_channel(scale["channels"][c], stored[..., c])


FLOATS = st.floats(-1e6, 1e6, width=32) | st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30])


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 2), st.integers(1, 5), st.integers(1, 7), st.integers(1, 9)),
              elements=FLOATS))
def test_a_band_of_floats(values):
    """The band kernel on its own: any float values, signed zeros, denormals, NaN, infinities."""
    for c, channel in enumerate(measure(values, EXACT)):
        check_channel(channel_json(channel, values.dtype), values[c])


@settings(max_examples=40, deadline=None)
@given(arrays(st.sampled_from([np.uint8, np.int8, np.int16, np.uint16, np.int32]),
              st.tuples(st.just(1), st.integers(1, 4), st.integers(1, 9), st.integers(1, 9))))
def test_a_band_of_integers(values):
    check_channel(channel_json(measure(values, EXACT)[0], values.dtype), values[0])


@pytest.mark.parametrize("dtype", ["float32", "uint8", "uint16"])
@pytest.mark.parametrize("planes", [1, SAMPLED_PLANES])
def test_a_sampled_histogram_keeps_exact_limits_and_counts(dtype, planes):
    """Large scales count every 8th row (of every 8th plane) in the histogram; min, max, NaN and
    infinities stay exact, even where they lie on rows and planes the histogram skips."""
    rng = np.random.default_rng(7)
    values = (rng.standard_normal((1, 6, 16, 20)) * 10 + 100).astype(dtype)
    values[0, 2, 1, 3] = 240  # row 1: not counted in the histogram
    values[0, 2, 3, 3] = 1
    if dtype == "float32":
        values[0, 3, 2, 4] = -np.inf
        values[0, 4, 5, 5] = np.nan
    stored = channel_json(measure(values, Sampling(SAMPLED_ROWS, planes))[0], values.dtype)
    finite = values[np.isfinite(values)]
    specials = int(dtype == "float32")
    assert (stored["min"], stored["max"], stored["nan"], stored["inf"]) == (1, 240, specials, specials)
    assert finite.min() == 1 and finite.max() == 240
    counted = len(range(0, 6, planes)) * 2 * 20
    assert stored["histogram"]["sampled"] == sum(hist for hist in stored["histogram"]["count"]) == counted


def test_a_segmentation_has_no_statistics_and_a_dry_run_writes_none(tmp_path: Path):
    labels = np.zeros((8, 8, 8), np.uint8)
    labels[2:5, 2:5, 2:5] = 3
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "l.nii")
    streamconv.convert(tmp_path / "l.nii", tmp_path / "seg", volume_type="segmentation", workers=0)
    assert not (tmp_path / "seg" / "stats.json").exists()


def test_a_sampled_scale_counts_the_same_voxels_whatever_the_chunks_and_bands(tmp_path: Path):
    """Scale 0 of 2.2M voxels: its histogram counts the voxels whose y is a multiple of 8 (taken
    once per band): the same with chunks of 32 and of 8 (bands of other heights); a
    uint8 volume reaching 0 and 255 early keeps exact limits."""
    rng = np.random.default_rng(11)
    data = rng.integers(20, 200, (131, 130, 130), endpoint=True).astype(np.uint8)
    data[3, 4, 5], data[110, 1, 100] = 0, 255  # on rows the histogram does not count
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "u.nii")
    expected = np.bincount(data[:, ::SAMPLED_ROWS, :].ravel(), minlength=256)
    for name, options in {"a": {"chunk_size": 32}, "b": {"chunk_size": 8}}.items():
        streamconv.convert(tmp_path / "u.nii", tmp_path / name, workers=0, **options)
        scale = json.loads((tmp_path / name / "stats.json").read_text())["scales"][0]
        assert (scale["rows_step"], scale["planes_step"]) == (SAMPLED_ROWS, 1)
        channel = scale["channels"][0]
        assert (channel["min"], channel["max"], channel["voxels"]) == (0, 255, data.size)
        hist = channel["histogram"]
        assert hist["sampled"] == sum(hist["count"]) == data[:, ::SAMPLED_ROWS, :].size
        assert dict(zip(hist["lower"], hist["count"])) == {v: int(n) for v, n in enumerate(expected) if n}


@pytest.mark.parametrize("dtype", ["float32", "uint16"])
def test_a_sample_is_the_same_whatever_the_bands(dtype):
    """Bands starting anywhere (not on a multiple of the steps) sample the voxels of the scale
    whose y and z are multiples of the steps: their merge equals the whole's."""
    rng = np.random.default_rng(13)
    values = (rng.standard_normal((1, 21, 30, 9)) * 50 + 300).astype(dtype)
    sample = Sampling(SAMPLED_ROWS, 2)
    whole = measure(values, sample)[0]
    meter = Meter(values.dtype, sample)
    for z0, z1, y0, y1 in [(0, 5, 0, 30), (5, 21, 0, 13), (5, 21, 13, 30)]:
        band = values[:, z0:z1, y0:y1]
        meter.add(np.ascontiguousarray(band))
        meter.sample(band, (0, y0, z0))
    (parts,) = meter.result() or []
    assert whole.sampled == parts.sampled == values[:, ::2, ::SAMPLED_ROWS].size
    assert (whole.bins.tolist(), whole.counts.tolist()) == (parts.bins.tolist(), parts.counts.tolist())
    assert (whole.minimum, whole.maximum) == (parts.minimum, parts.maximum) == (values.min(), values.max())
