"""Hypothesis runs the same examples on every run (CI stays reproducible); set
HYPOTHESIS_PROFILE=explore to search new ones, with more examples."""

import os
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import settings
from loopback_s3 import S3

import streamconv

settings.register_profile("deterministic", derandomize=True)
settings.register_profile("explore", max_examples=400)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture(scope="session")
def pyramid(tmp_path_factory) -> Path:
    """A small raw pyramid of a volume whose every chunk differs."""
    directory = tmp_path_factory.mktemp("pyramid")
    data = (np.arange(40 * 36 * 30) % 251).astype(np.uint8).reshape(40, 36, 30)
    nib.save(nib.Nifti1Image(data, np.eye(4)), directory / "vol.nii")
    streamconv.convert(directory / "vol.nii", directory / "src", chunk_size=16, workers=0)
    return directory


@pytest.fixture(scope="session")
def aseg(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    """(volume, LUT, labels) of tests/atlas.py: an aseg at 2 mm with a blob the LUT does not name."""
    from atlas import make_aseg

    return make_aseg(tmp_path_factory.mktemp("aseg"))


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    """A moto S3 server on loopback for the tests of one module (tools/loopback_s3.py)."""
    server = S3()
    try:
        yield server
    finally:
        server.server.stop()
