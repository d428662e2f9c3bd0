"""`convert --dry-run`: the pyramid, the files and the bytes it predicts are what the run
writes; it writes nothing; a run whose output clearly lacks the space is refused first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import streamconv
from streamconv.engine import estimate
from streamconv.errors import OutputError

STREAMCONV = str(Path(sys.executable).with_name("streamconv"))


@pytest.fixture(scope="module")
def volume(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("estimate") / "vol.nii"
    rng = np.random.default_rng(3)
    nib.save(nib.Nifti1Image(rng.integers(0, 60000, (70, 45, 33), dtype=np.uint16), np.eye(4)), path)
    return path


def written(out: Path, key: str) -> tuple[int, int]:
    files = [p for p in (out / key).iterdir() if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


@pytest.mark.parametrize("options", [{"chunk_size": 16}, {"chunk_size": 8, "max_scales": 3}])
def test_dry_run_predicts_the_files_and_bytes_the_run_writes(tmp_path, volume, options):
    out = tmp_path / "out"
    dry = streamconv.convert(volume, out, workers=2, dry_run=True, **options)
    assert not out.exists()  # nothing written, not even the directory
    cost = dry.estimate
    assert cost is not None and cost.exact and cost.seconds > 0 and cost.disk_free
    run = streamconv.convert(volume, out, workers=2, **options)
    assert [s.key for s in cost.scales] == [s.key for s in run.scales]
    assert sum(s.chunks for s in cost.scales) == run.chunks == run.chunks_written
    for s in cost.scales:
        assert written(out, s.key) == (s.files, s.bytes)
        assert s.disk >= s.bytes
    assert cost.disk_needed == sum(s.disk for s in cost.scales)


@pytest.mark.parametrize("sharding", [{}, {"gzip": True}])
def test_dry_run_of_a_sharded_output_counts_its_shard_files(tmp_path, volume, sharding):
    out = tmp_path / "out"
    options = {"chunk_size": 8, "sharding": "auto", "shard_size": "64KiB", **sharding}
    cost = streamconv.convert(volume, out, workers=2, dry_run=True, **options).estimate
    assert cost is not None and not cost.exact  # the minishard indexes are not counted
    streamconv.convert(volume, out, workers=2, **options)
    assert cost.scales[0].files > 1
    for s in cost.scales:
        files, nbytes = written(out, s.key)
        assert files == s.files and all(p.suffix == ".shard" for p in (out / s.key).iterdir())
        if not sharding:  # raw chunks: their bytes, the shard indexes, a little more
            assert s.bytes < nbytes < s.bytes + 40 * s.chunks + 100


def test_dry_run_on_the_command_line_text_and_json(tmp_path, volume):
    out = tmp_path / "out"
    text = subprocess.run([STREAMCONV, "convert", str(volume), str(out), "--chunk-size", "16", "--dry-run"],
                          capture_output=True, text=True, check=True).stdout
    assert "1000000_1000000_1000000" in text and "disk: needs" in text and "time: about" in text
    result = subprocess.run([STREAMCONV, "convert", str(volume), str(out), "--gzip", "--dry-run", "--json"],
                            capture_output=True, text=True, check=True)
    data = json.loads(result.stdout)
    assert not data["exact"] and data["scales"][0]["files"] == 2 and data["disk_free"] > 0
    assert not out.exists()
    bad = subprocess.run([STREAMCONV, "convert", str(volume), str(out), "--json"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--dry-run" in bad.stderr


def test_a_run_is_refused_when_the_output_clearly_lacks_the_space(tmp_path, volume, monkeypatch):
    monkeypatch.setattr(estimate, "free_space", lambda output: (10_000, 4096))
    with pytest.raises(OutputError, match="needs .* free"):
        streamconv.convert(volume, tmp_path / "out", workers=0, chunk_size=16)
    assert not list((tmp_path / "out").rglob("*0-16*"))


def test_a_run_ends_with_a_summary_and_its_rerun_is_a_no_op(tmp_path, volume):
    """The summary line (files, bytes, time, MiB/s, peak memory); the same command again exits 0
    and writes nothing, so that a workflow manager can rerun a pipeline."""
    out = tmp_path / "out"
    command = [STREAMCONV, "convert", str(volume), str(out), "--chunk-size", "16", "--workers", "2"]
    first = subprocess.run(command, capture_output=True, text=True, check=True)
    line = first.stderr.strip().splitlines()[-1]
    assert "60 files" in line and "MiB/s" in line and "peak memory" in line and " s (" in line
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = subprocess.run([*command[:-1], "1"], capture_output=True, text=True)  # other --workers
    assert again.returncode == 0 and "already complete" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == mtimes


def test_view_refuses_a_directory_without_an_info_in_one_line(tmp_path):
    result = subprocess.run([STREAMCONV, "view", "--no-browser", str(tmp_path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "no info" in result.stderr
