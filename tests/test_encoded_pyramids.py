"""Encodings end to end: convert and convert-chunks, read back with tensorstore."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nilearn.datasets import MNI152_FILE_PATH
from reference import check_pyramid, read_scale
from test_volumes import labels

import streamconv
from streamconv.commands.convert_chunks import convert_chunks
from streamconv.errors import UsageError


def info_of(out: Path) -> dict:
    return json.loads((out / "info").read_text())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


@pytest.fixture(scope="module")
def mni() -> np.ndarray:
    return np.asarray(nib.load(MNI152_FILE_PATH).dataobj)[..., None]


def test_jpeg_mni_has_at_least_40_db(tmp_path, mni):
    streamconv.convert(MNI152_FILE_PATH, tmp_path / "out", encoding="jpeg", workers=2, memory="1GiB")
    assert all(s["encoding"] == "jpeg" for s in info_of(tmp_path / "out")["scales"])
    assert psnr(mni, read_scale(tmp_path / "out", 0)) >= 40


def test_png_and_gzip_round_trip_exactly(tmp_path, mni):
    streamconv.convert(MNI152_FILE_PATH, tmp_path / "png", encoding="png", workers=0)
    check_pyramid(tmp_path / "png", mni, "average", info_of(tmp_path / "png"))
    streamconv.convert(MNI152_FILE_PATH, tmp_path / "gz", gzip=True, workers=0)
    names = list((tmp_path / "gz" / "1000000_1000000_1000000").iterdir())
    assert names and all(p.name.endswith(".gz") and p.read_bytes()[:2] == b"\x1f\x8b" for p in names)
    report = streamconv.verify(MNI152_FILE_PATH, tmp_path / "gz")
    assert report.ok and report.absent == 0


@pytest.mark.parametrize("dtype, high, channels", [("uint32", 2 ** 32 - 1, 1), ("uint64", 2 ** 63, 1),
                                                    ("uint32", 2 ** 32 - 1, 2), ("uint64", 2 ** 40, 2)])
def test_compressed_segmentation_pyramids(tmp_path, dtype, high, channels):
    data = np.stack([labels((45, 38, 29), dtype, high, seed=c) for c in range(channels)], -1)
    path = tmp_path / "labels.nii"
    nib.save(nib.Nifti1Image(data if channels > 1 else data[..., 0], np.eye(4), dtype=np.dtype(dtype)), path)
    kind = "segmentation" if channels == 1 else "image"  # a segmentation has one channel
    streamconv.convert(path, tmp_path / "out", volume_type=kind, encoding="compressed_segmentation",
                       downsampling_method="majority", chunk_size=16, workers=2, memory="1GiB")
    info = info_of(tmp_path / "out")
    assert all(s["compressed_segmentation_block_size"] == [8, 8, 8] for s in info["scales"])
    assert len(info["scales"]) >= 3
    check_pyramid(tmp_path / "out", data, "majority", info)


def test_uint8_segmentation_is_widened_for_compressed_segmentation(tmp_path):
    data = (labels((30, 20, 10), "uint32", 200) % 250).astype(np.uint8)
    path = tmp_path / "small.nii"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    streamconv.convert(path, tmp_path / "out", volume_type="segmentation",
                       encoding="compressed_segmentation", workers=0)
    assert info_of(tmp_path / "out")["data_type"] == "uint32"
    assert np.array_equal(read_scale(tmp_path / "out", 0)[..., 0], data)


def test_illegal_combinations_stop_before_any_work(tmp_path):
    with pytest.raises(UsageError, match="jpeg"):
        streamconv.convert(MNI152_FILE_PATH, tmp_path / "a", encoding="jpeg", volume_type="segmentation")
    with pytest.raises(UsageError, match="compressed_segmentation"):
        streamconv.convert(MNI152_FILE_PATH, tmp_path / "b", encoding="compressed_segmentation")
    with pytest.raises(UsageError, match="65535"):
        streamconv.convert(MNI152_FILE_PATH, tmp_path / "c", encoding="jpeg", chunk_size=512)
    assert not any((tmp_path / name).exists() for name in "abc")


def test_convert_chunks_reencodes_local_and_http_sources(tmp_path, mni):
    streamconv.convert(MNI152_FILE_PATH, tmp_path / "raw", workers=0)
    convert_chunks(tmp_path / "raw", tmp_path / "png", encoding="png", workers=2, memory="1GiB")
    assert all(s["encoding"] == "png" for s in info_of(tmp_path / "png")["scales"])
    check_pyramid(tmp_path / "png", mni, "average", info_of(tmp_path / "png"))

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "png"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        convert_chunks(url, tmp_path / "back", copy_info=True, workers=0)
    finally:
        server.shutdown()
        server.server_close()
    for level in range(3):
        assert np.array_equal(read_scale(tmp_path / "back", level), read_scale(tmp_path / "raw", level))
    with pytest.raises(UsageError, match="--encoding"):
        convert_chunks(tmp_path / "raw", tmp_path / "nowhere", workers=0)


def test_verify_reads_other_tools_layouts(tmp_path, mni):
    """neuroglancer-scripts' default layout: nested x/y/z directories and gzipped files."""
    import gzip

    streamconv.convert(MNI152_FILE_PATH, tmp_path / "flat", workers=0)
    nested = tmp_path / "nested"
    nested.mkdir()
    (nested / "info").write_bytes((tmp_path / "flat" / "info").read_bytes())
    for chunk in (tmp_path / "flat").glob("*/*-*_*-*_*-*"):
        x, y, z = chunk.name.split("_")
        target = nested / chunk.parent.name / x / y / f"{z}.gz"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.compress(chunk.read_bytes()))
    report = streamconv.verify(MNI152_FILE_PATH, nested)
    assert report.ok and report.chunks == 57 and report.absent == 0
    (nested / "1000000_1000000_1000000" / "0-64" / "0-64" / "0-64.gz").write_bytes(gzip.compress(b"junk"))
    assert not streamconv.verify(MNI152_FILE_PATH, nested).ok
