"""Every file of nibabel's own test data that `nibabel.load` opens as an image, through `convert`
and `verify`, held against nibabel's array (docs/cli.md: "Volumes" and "Stored data type");
the files refused say why in one `error:` line naming the file (issue 28).

Conversions run in-process (`--workers 0`): the files are small and a pool would cost more
than the work (the whole module takes a few seconds)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tensorstore as ts

import streamconv

DATA = Path(nib.__file__).parent / "tests" / "data"
STREAMCONV = str(Path(sys.executable).with_name("streamconv"))


def _images() -> list[str]:
    """The files of DATA that nibabel.load opens (it reads the header only)."""
    names = []
    for path in sorted(DATA.iterdir()):
        if not path.is_file():
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                nib.load(path)
        except Exception:  # not an image, or one nibabel refuses: not ours to test here
            continue
        names.append(path.name)
    return names


IMAGES = _images()

#: files nibabel opens that we refuse, and what the one line must say
REFUSED = {
    "analyze.hdr": ["analyze.img", "no such file"],  # nibabel ships the header without its .img
    "nifti1.hdr": ["nifti1.img", "no such file"],
    "nifti2.hdr": ["nifti2.img", "no such file"],
    "row_major.dconn.nii": ["row_major.dconn.nii", "3-D"],  # CIFTI-2: a matrix, not a volume
}

#: 4-D MINC with time as the first dimension: which axes are spatial is being decided by
#: issue 24 (24a: MINC axis order with world-space placement, issue 28 point 6); today time
#: becomes x. Converted and verified below, not held against nibabel's array until then.
MINC_TIME_FIRST = {"minc1_4d.mnc", "minc2_4d.mnc", "minc2-4d-d.mnc"}  # time is the first axis, then space


def test_nibabel_still_ships_the_files_this_module_names():
    assert len(IMAGES) >= 25 and set(REFUSED) | MINC_TIME_FIRST <= set(IMAGES)


def expected_array(path: Path) -> np.ndarray:
    """nibabel's array as the output stores it: [x, y, z, channel] in RAS voxel order (`convert`'s
    default), reoriented here with nibabel's own `io_orientation`/`apply_orientation`; MINC's
    spatial axes are its `*space` dimensions, wherever the file puts them, and a fourth axis
    becomes the channels (trailing axes of length one dropped); floats (scaled data too) are
    float32, everything else its own type in native byte order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel's complaints about minc2_baddim.mnc's header
        image = nib.load(path)
    array = np.asanyarray(image.dataobj)
    held = getattr(image.dataobj, "file_like", None)
    if hasattr(held, "close"):
        held.close()  # nibabel's PAR/REC proxy holds the .REC open
    names = getattr(getattr(image.dataobj, "minc_file", None), "_dim_names", None)
    if names is not None and len(names) == array.ndim:
        spatial = [a for a, n in enumerate(names) if str(n).endswith("space")]
        array = array.transpose(*spatial, *(a for a in range(array.ndim) if a not in spatial))
    array = nib.orientations.apply_orientation(array, nib.orientations.io_orientation(image.affine))
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3:
        array = array[..., np.newaxis]
    dtype = np.dtype(np.float32) if array.dtype.kind == "f" else array.dtype.newbyteorder("=")
    return array.astype(dtype)


@pytest.mark.parametrize("name", [n for n in IMAGES if n not in REFUSED])
def test_converts_verifies_and_equals_nibabels_array(tmp_path, name):
    path = DATA / name
    out = tmp_path / "out"
    with warnings.catch_warnings():
        # nibabel's complaints about odd headers (minc2_baddim.mnc) come to our log, not here
        warnings.simplefilter("ignore")
        streamconv.convert(path, out, workers=0, chunk_size=16)
        report = streamconv.verify(path, out, full=True)
    assert report.ok, report.problems
    stored = ts.open({"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": f"{out}/"},
                      "scale_index": 0}).result().read().result()
    want = expected_array(path)
    assert stored.dtype == want.dtype and stored.shape == want.shape
    assert np.array_equal(stored, want, equal_nan=want.dtype.kind == "f")


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_with_one_line_naming_the_cause(tmp_path, name):
    out = tmp_path / "out"
    result = subprocess.run([STREAMCONV, "convert", str(DATA / name), str(out), "--workers", "0"],
                            capture_output=True, text=True)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("streamconv: error: ") and "internal error" not in lines[0]
    assert all(word in lines[0] for word in REFUSED[name]), lines[0]
    assert not out.exists()
