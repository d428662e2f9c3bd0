"""Bad input and bad flags: the expected exit code, one line on stderr, no traceback, and no
temporary or partial files left in the output."""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tensorstore as ts
from nilearn.datasets import MNI152_FILE_PATH

import streamconv
from streamconv.errors import DataError
from streamconv.format import dtypes

STREAMCONV = str(Path(sys.executable).with_name("streamconv"))


def save(path: Path, data: np.ndarray, dtype: object = None) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4), dtype=dtype), path)
    return path


def truncated_nii(tmp: Path) -> Path:
    path = save(tmp / "whole.nii", np.ones((40, 40, 40), np.uint8))
    (tmp / "short.nii").write_bytes(path.read_bytes()[:30000])
    return tmp / "short.nii"


def truncated_gz(tmp: Path) -> Path:
    data = Path(MNI152_FILE_PATH).read_bytes()
    (tmp / "short.nii.gz").write_bytes(data[: len(data) // 2])
    return tmp / "short.nii.gz"


def corrupt_gz(tmp: Path) -> Path:
    raw = bytearray(gzip.decompress(Path(MNI152_FILE_PATH).read_bytes()))
    packed = bytearray(gzip.compress(bytes(raw)))
    packed[len(packed) // 2: len(packed) // 2 + 64] = b"\xff" * 64
    (tmp / "corrupt.nii.gz").write_bytes(bytes(packed))
    return tmp / "corrupt.nii.gz"


def text_file(tmp: Path) -> Path:
    (tmp / "notes.nii").write_text("this is not an image\n")
    return tmp / "notes.nii"


def complex_volume(tmp: Path) -> Path:
    return save(tmp / "complex.nii", np.zeros((4, 4, 4), np.complex64))


def int64_out_of_range(tmp: Path) -> Path:
    data = np.zeros((4, 4, 4), np.int64)
    data[0, 0, 0], data[1, 1, 1] = -(2 ** 40), 2 ** 40
    return save(tmp / "int64.nii", data, dtype=np.int64)


def zero_size(tmp: Path) -> Path:
    return save(tmp / "empty.nii", np.zeros((0, 4, 4), np.uint8))


BAD_DATA = [truncated_nii, truncated_gz, corrupt_gz, text_file, complex_volume, int64_out_of_range,
            zero_size]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([STREAMCONV, "convert", *args], capture_output=True, text=True)


def assert_one_line(result: subprocess.CompletedProcess, code: int, *words: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("streamconv: error:"), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


def assert_no_partial_files(out: Path) -> None:
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert not (out / "info").exists()


@pytest.mark.parametrize("make", BAD_DATA, ids=lambda f: f.__name__)
def test_bad_data_exits_1_with_one_line(tmp_path, make):
    path = make(tmp_path)
    out = tmp_path / "out"
    result = run(str(path), str(out), "--workers", "2")
    assert_one_line(result, 1, path.name)
    assert_no_partial_files(out)


@pytest.mark.parametrize("flags, words", [
    (["--chunk-size", "3"], ["power of two"]),
    (["--chunk-size", "0"], ["power of two"]),
    (["--memory", "1MiB"], ["below", "needs"]),
    (["--memory", "lots"], ["size"]),
    (["--workers", "-1"], ["--workers"]),
    (["--type", "segmentation", "--resolution", "1,2"], ["resolution"]),
    (["--input-orientation", "RIA"], ["slice stacks"]),
    (["--max-scales", "0"], ["--max-scales"]),
])
def test_bad_flags_exit_2_before_writing_anything(tmp_path, flags, words):
    out = tmp_path / "out"
    result = run(MNI152_FILE_PATH, str(out), *flags)
    assert_one_line(result, 2, *words)
    assert not out.exists()


def test_headers_nibabel_repairs_give_one_line_per_complaint_naming_the_file(tmp_path):
    """nibabel says what it repairs through its own logger (with its own handler, propagating to
    ours) and through `warnings`: one line each, naming the file, and the conversion goes on."""
    path = save(tmp_path / "odd.nii", np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6))
    header = bytearray(path.read_bytes())
    header[252:254] = (7).to_bytes(2, "little")  # qform_code: not a code
    struct.pack_into("<f", header, 80, -1.0)  # pixdim[1]: a negative voxel size
    path.write_bytes(bytes(header))
    for workers in ("0", "2"):
        result = run(str(path), str(tmp_path / f"out{workers}"), "-q", "--workers", workers)
        assert result.returncode == 0, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 2 and all(line.startswith(f"{path}: ") for line in lines), result.stderr
        assert any("qform_code 7" in line for line in lines) and any("pixdim" in line for line in lines)


def test_segmentation_of_float_data_is_refused(tmp_path):
    path = save(tmp_path / "f.nii", np.zeros((4, 4, 4), np.float32))
    assert_one_line(run(str(path), str(tmp_path / "out"), "--type", "segmentation"), 2, "integer")


def test_a_read_only_output_exits_1(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output directory should go")
    assert_one_line(run(MNI152_FILE_PATH, str(blocker / "out")), 1)


def test_int64_that_fits_is_stored_narrow_and_bool_is_refused(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.int64).reshape(4, 5, 6) * 1000
    path = save(tmp_path / "ok64.nii", data, dtype=np.int64)
    report = streamconv.convert(path, tmp_path / "out", workers=0)
    assert report.plan is not None
    spec = {"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": f"{tmp_path}/out/"}}
    stored = ts.open(spec).result()
    assert stored.dtype.name == "uint32"
    assert np.array_equal(stored.read().result()[..., 0], data)
    with pytest.raises(DataError, match="bool"):
        dtypes.output_dtype(np.dtype(bool), lambda: (0, 1))


def test_nan_and_inf_are_stored_as_they_are_and_average_as_numpy_does(tmp_path):
    data = np.ones((4, 4, 4), np.float32)
    data[0, 0, 0], data[3, 3, 3] = np.nan, np.inf
    path = save(tmp_path / "nan.nii", data)
    streamconv.convert(path, tmp_path / "out", workers=0, chunk_size=2)
    spec = {"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": f"{tmp_path}/out/"}}
    full = ts.open({**spec, "scale_index": 0}).result().read().result()[..., 0]
    half = ts.open({**spec, "scale_index": 1}).result().read().result()[..., 0]
    assert np.array_equal(full, data, equal_nan=True)
    assert np.isnan(half[0, 0, 0]) and half[1, 1, 1] == np.inf and half[1, 0, 0] == 1


@pytest.mark.parametrize("workers", [0, 2])
def test_an_input_cut_short_during_the_conversion_is_a_data_error(tmp_path, workers):
    """Band tasks map an uncompressed NIfTI instead of reading it: a file cut short under them
    (a task then cannot map its planes, or dies of SIGBUS touching them) ends the run with a
    DataError that says so, not an internal error or 'a worker process died'."""
    path = save(tmp_path / "v.nii", np.arange(64 * 64 * 256, dtype=np.uint32).reshape(64, 64, 256) % 7)
    whole = path.stat().st_size

    def cut_after_the_first_band(scales: list) -> object:
        def progress(scale: int, chunks: int, nbytes: int) -> None:
            with open(path, "r+b") as f:
                f.truncate(whole // 2)
        return progress

    with pytest.raises(DataError, match="cut short during the conversion"):
        streamconv.convert(path, tmp_path / "out", workers=workers, chunk_size=16, memory="1GiB",
                           progress=cut_after_the_first_band)
