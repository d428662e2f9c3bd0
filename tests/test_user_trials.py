"""What a new user met trying real files and bad inputs (issue 28), one test per point, with
the inputs the issue names."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tensorstore as ts
from cli_reference import commands, help_text
from nilearn.datasets import MNI152_FILE_PATH
from test_bad_input import truncated_gz
from test_stacks import make_bad_stack

import streamconv
from streamconv.engine import estimate
from streamconv.errors import OutputError

STREAMCONV = str(Path(sys.executable).with_name("streamconv"))
NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


def streamconv_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([STREAMCONV, *map(str, args)], capture_output=True, text=True)


def one_error_line(result: subprocess.CompletedProcess, *words: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert lines[0].startswith("streamconv: error: ") and "internal error" not in lines[0], lines
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def read_scale(out: Path, scale: int) -> np.ndarray:
    spec = {"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": f"{out}/"},
            "scale_index": scale}
    return ts.open(spec).result().read().result()


# Point 1: verify holds NaN equal to NaN, at scale 0 and where a lower scale averages a NaN.

def test_verify_accepts_an_output_holding_nan_in_every_scale(tmp_path):
    data = np.arange(8000, dtype=np.float32).reshape(20, 20, 20)
    data[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "nanonly.nii")
    out = tmp_path / "o"
    assert streamconv_cli("convert", tmp_path / "nanonly.nii", out, "-q").returncode == 0
    result = streamconv_cli("verify", tmp_path / "nanonly.nii", out)
    assert result.returncode == 0, result.stderr
    # several scales, the NaN averaged into each of them
    streamconv.convert(tmp_path / "nanonly.nii", tmp_path / "small", chunk_size=8, workers=0)
    report = streamconv.verify(tmp_path / "nanonly.nii", tmp_path / "small", full=True)
    assert report.ok and report.scales == 3, report.problems
    assert all(np.isnan(read_scale(tmp_path / "small", k)[0, 0, 0, 0]) for k in (1, 2))
    # a wrong value is still found
    (tmp_path / "bad").mkdir()
    data[5, 5, 5] = -1
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "bad" / "nanonly.nii")
    assert not streamconv.verify(tmp_path / "bad" / "nanonly.nii", out).ok


def test_verify_accepts_nibabels_resampled_anat_moved(tmp_path):
    path = NIBABEL_DATA / "resampled_anat_moved.nii"
    assert np.isnan(np.asarray(nib.load(path).dataobj)).sum() == 153
    streamconv.convert(path, tmp_path / "o", chunk_size=8, workers=0)
    report = streamconv.verify(path, tmp_path / "o", full=True)
    assert report.ok and report.scales > 1, report.problems


# Point 3: a run that fails before it writes a chunk leaves nothing behind in a new output;
# an output that existed is left as it was.

def test_a_truncated_gzip_leaves_no_output_behind(tmp_path):
    """Cut inside its first slab: nothing written. (Cut after some chunks, as test_bad_input's
    truncated_gz is, the output keeps them and is resumable.)"""
    whole = Path(MNI152_FILE_PATH).read_bytes()
    (tmp_path / "short.nii.gz").write_bytes(whole[:len(whole) // 20])
    out = tmp_path / "out"
    one_error_line(streamconv_cli("convert", tmp_path / "short.nii.gz", out), "short.nii.gz")
    assert not out.exists()
    # cut after some chunks were written: they are kept, and the job record to resume them
    # (in one process: with workers, whether a slab's chunks are written before the read fails
    # depends on the machine's load)
    one_error_line(streamconv_cli("convert", truncated_gz(tmp_path), out, "--workers", "0"), "short.nii.gz")
    assert (out / ".streamconv" / "job.json").exists() and any(out.glob("*/0-64_0-64_0-64"))


def test_a_stack_with_a_damaged_section_leaves_no_output_behind(tmp_path):
    stack, culprit = make_bad_stack(tmp_path, "damaged")
    for workers in ("0", "2"):
        out = tmp_path / f"out{workers}"
        one_error_line(streamconv_cli("convert", stack, out, "--resolution", "1um", "--workers", workers),
                       culprit)
        assert not out.exists()
        again = streamconv_cli("convert", stack, out, "--resolution", "1um", "--workers", workers)
        assert "resuming" not in again.stderr


def test_the_free_space_refusal_leaves_no_output_and_an_existing_one_as_it_was(tmp_path, monkeypatch):
    data = np.arange(32 * 32 * 32, dtype=np.uint16).reshape(32, 32, 32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii")
    monkeypatch.setattr(estimate, "free_space", lambda output: (10_000, 4096))
    with pytest.raises(OutputError, match="free"):
        streamconv.convert(tmp_path / "v.nii", tmp_path / "out", workers=0, chunk_size=16)
    assert not (tmp_path / "out").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="free"):
        streamconv.convert(tmp_path / "v.nii", existing, workers=0, chunk_size=16)
    assert (existing / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OutputError, match="free"):
        streamconv.convert(tmp_path / "v.nii", empty, workers=0, chunk_size=16)
    assert empty.is_dir()


# Point 4: numpy's warnings do not leak.

def test_float64_beyond_float32_becomes_infinite_without_numpy_warnings(tmp_path):
    data = np.zeros((8, 8, 8), np.float64)
    data[0, 0, 0], data[1, 1, 1], data[2, 2, 2] = 1e300, -1e300, 0.5
    path = tmp_path / "huge.nii"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    for workers in ("0", "2"):
        out = tmp_path / f"out{workers}"
        result = streamconv_cli("convert", path, out, "-q", "--workers", workers)
        assert result.returncode == 0 and result.stderr == "", result.stderr
        stored = read_scale(out, 0)[..., 0]
        assert stored[0, 0, 0] == np.inf and stored[1, 1, 1] == -np.inf and stored[2, 2, 2] == 0.5


# Point 2: a missing or unreadable file of any reader is one `error:` line naming it.

@pytest.mark.parametrize("header", ["analyze.hdr", "nifti1.hdr", "nifti2.hdr"])
def test_a_header_without_its_img_is_one_line_naming_the_img(tmp_path, header):
    out = tmp_path / "out"
    line = one_error_line(streamconv_cli("convert", NIBABEL_DATA / header, out), header.replace(".hdr", ".img"),
                          "no such file")
    assert header in line and not out.exists()
    streamconv.convert(NIBABEL_DATA / "anatomical.nii", out, workers=0)
    one_error_line(streamconv_cli("verify", NIBABEL_DATA / header, out), header.replace(".hdr", ".img"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_img_is_one_line_naming_it(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)
    nib.save(nib.AnalyzeImage(data, np.eye(4)), tmp_path / "pair.hdr")
    (tmp_path / "pair.img").chmod(0)
    one_error_line(streamconv_cli("convert", tmp_path / "pair.hdr", tmp_path / "out"), "pair.img",
                   "permission denied")


# Point 5: --ignore-scaling reads the stored values of every format nibabel scales, and is
# refused in one line where they mean nothing without the scaling (MINC).

@pytest.mark.parametrize("name", ["scaled+tlrc.HEAD", "phantom_varscale.PAR", "anatomical.nii"])
def test_ignore_scaling_stores_the_values_as_stored(tmp_path, name):
    image = nib.load(NIBABEL_DATA / name)
    raw = np.asanyarray(image.dataobj.get_unscaled())
    held = getattr(image.dataobj, "file_like", None)
    getattr(held, "close", lambda: None)()  # PAR/REC's proxy holds the .REC open
    out = tmp_path / "out"
    result = streamconv_cli("convert", NIBABEL_DATA / name, out, "--ignore-scaling", "--voxel-order", "file",
                            "-q", "--workers", "0")  # the file's voxel order: compared with its array
    assert result.returncode == 0, result.stderr
    stored = read_scale(out, 0)
    assert stored.dtype == raw.dtype.newbyteorder("=")
    assert np.array_equal(stored, raw.reshape(stored.shape))
    assert streamconv_cli("verify", NIBABEL_DATA / name, out, "--ignore-scaling").returncode == 0
    if name != "anatomical.nii":  # scaled: without the option, float32 scaled values
        assert streamconv_cli("verify", NIBABEL_DATA / name, out).returncode == 1


def test_ignore_scaling_is_refused_for_minc(tmp_path):
    result = streamconv_cli("convert", NIBABEL_DATA / "small.mnc", tmp_path / "out", "--ignore-scaling")
    assert result.returncode == 2
    one_error_line(result, "small.mnc", "--ignore-scaling", "MINC")
    assert not (tmp_path / "out").exists()


# Point 8: flags that only switch something on have no --no- twin in --help; the spellings
# scripts use keep working, the old twins included.

BOTH_SIDES_MEAN_SOMETHING = {"--resume / --no-resume", "--gzip / --no-gzip", "--browser / --no-browser"}


@pytest.mark.parametrize("command", commands())
def test_help_offers_no_twin_of_an_on_only_flag(command):
    text = help_text(command)
    pairs = set(re.findall(r"(--[\w-]+ / --no-[\w-]+)", text))
    assert pairs <= BOTH_SIDES_MEAN_SOMETHING, pairs
    defaults = set(re.findall(r"\[default:\s+(no-[\w-]+)\]", text))
    assert defaults <= {"no-gzip"} and "--no-no-" not in text, defaults


def test_no_colon_suffix_reads_as_one_flag_and_names_manifests_without_colons(tmp_path):
    assert "--no-colon-suffix  Name the manifests" in help_text("link-mesh-fragments")
    out = tmp_path / "seg"
    (out / "mesh").mkdir(parents=True)
    (out / "info").write_text('{"type": "segmentation", "data_type": "uint8", "num_channels": 1, "mesh": "mesh", '
                              '"scales": [{"key": "1", "size": [4, 4, 4], "resolution": [1, 1, 1], '
                              '"chunk_sizes": [[4, 4, 4]], "encoding": "raw"}]}')
    (tmp_path / "f.csv").write_text("10,frag\n")
    for flags, manifest in [(["--no-colon-suffix"], "10"), ([], "10:0"), (["--no-no-colon-suffix"], "10:0")]:
        result = streamconv_cli("link-mesh-fragments", *flags, tmp_path / "f.csv", out)
        assert result.returncode == 0, result.stderr
        assert (out / "mesh" / manifest).exists()


def test_the_old_no_twins_are_still_accepted(tmp_path):
    data = np.arange(10 * 10 * 10, dtype=np.uint8).reshape(10, 10, 10)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii")
    out = tmp_path / "out"
    twins = ["--no-debug", "--no-overwrite", "--no-skip-empty", "--no-ignore-scaling", "--no-meshes"]
    assert streamconv_cli("convert", tmp_path / "v.nii", out, "-q", *twins).returncode == 0
    assert streamconv_cli("verify", tmp_path / "v.nii", out, "--no-full", "--no-debug").returncode == 0
    # a twin undoes the flag before it: a different job is refused, not overwritten
    refused = streamconv_cli("convert", tmp_path / "v.nii", out, "-q", "--chunk-size", "8", "--overwrite",
                             "--no-overwrite")
    one_error_line(refused, "--overwrite")
    assert streamconv_cli("convert", tmp_path / "v.nii", out, "-q", "--chunk-size", "8", "--overwrite").returncode == 0
    one_error_line(streamconv_cli("convert", tmp_path / "v.nii", out, "--no-such-flag"), "--no-such-flag")
