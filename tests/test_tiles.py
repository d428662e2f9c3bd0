"""Slabs cut into tiles across the section (issue 25): a plan whose minimum does not grow with the
section's area, and tiled runs that write the bytes of untiled ones, resumed after kills too.

`STREAMCONV_TILE` forces tiles of that size whatever the budget (docs/design.md, "Tiles"), so
that small inputs tile without a budget too small for the test runner itself."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import imagecodecs
import nibabel as nib
import numpy as np
import pytest
from reference import check_pyramid, read_scale
from test_resume import STREAMCONV, files, kill_and_resume

import streamconv


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """40 PNG sections of 150 x 110: with 16^3 chunks, 10 x 7 chunks a section; a background of
    255 on the left and at the bottom, so that some tiles' parts of a section hold one value."""
    directory = tmp_path_factory.mktemp("tiles-stack")
    rng = np.random.default_rng(25)
    base = rng.integers(0, 200, (110, 150), dtype=np.uint8)
    sections = [np.roll(base, 3 * k, axis=1) + (k % 50) for k in range(40)]
    for section in sections:
        section[:, :70] = 255
        section[90:] = 255
    for k, section in enumerate(sections):
        imagecodecs.imwrite(directory / f"s{k:02d}.png", section)
    # RAS: columns along x, rows along y, sections along z
    return directory, np.stack(sections).transpose(2, 1, 0)[..., None]


@pytest.fixture(scope="module")
def labels(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """uint32 labels in blocks, 100 x 90 x 40, in an uncompressed NIfTI (read by region)."""
    path = tmp_path_factory.mktemp("tiles-labels") / "labels.nii"
    x, y, z = np.meshgrid(np.arange(100), np.arange(90), np.arange(40), indexing="ij", sparse=True)
    data = ((x // 12) * 7919 + (y // 9) * 104729 + (z // 5) * 1299709).astype(np.uint32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path, data[..., None]


def tiled(out: Path) -> list:
    """The tiles a run's job record holds (its plan was tiled)."""
    return json.loads((out / ".streamconv" / "job.json").read_text())["job"].get("tiles", [])


CASES = {
    "raw": {"resolution": "20um"},
    "png": {"resolution": "20um", "encoding": "png"},
    "jpeg": {"resolution": "20um", "encoding": "jpeg"},
    "sharded": {"resolution": "20um", "sharding": "auto", "shard_size": "16KiB"},
    "sharded-png": {"resolution": "20um", "sharding": "auto", "shard_size": "16KiB", "encoding": "png"},
    "RIA": {"resolution": "20um", "input_orientation": "RIA"},
    "compressed_segmentation": {"volume_type": "segmentation", "encoding": "compressed_segmentation"},
}


@pytest.mark.parametrize("case", CASES)
def test_a_tiled_run_writes_the_bytes_of_an_untiled_one(case, stack, labels, tmp_path, monkeypatch):
    options = CASES[case]
    source, data = labels if case == "compressed_segmentation" else stack
    streamconv.convert(source, tmp_path / "whole", chunk_size=16, workers=2, **options)
    monkeypatch.setenv("STREAMCONV_TILE", "32")
    streamconv.convert(source, tmp_path / "tiled", chunk_size=16, workers=2, **options)
    assert tiled(tmp_path / "tiled")[0] == [32, 32] and not tiled(tmp_path / "whole")
    assert files(tmp_path / "tiled") == files(tmp_path / "whole")
    info = json.loads((tmp_path / "tiled" / "info").read_text())
    assert len(info["scales"]) >= 3  # tiles nest through scales that gather several tiles
    if case == "jpeg":  # lossy (on noise): scale 0 within the codec's error
        assert np.abs(read_scale(tmp_path / "tiled", 0).astype(int) - data).mean() < 4
    elif case != "RIA":
        method = "majority" if case == "compressed_segmentation" else "average"
        check_pyramid(tmp_path / "tiled", data, method, info)


def test_a_volume_read_by_region_with_any_workers_writes_the_same_bytes(labels, tmp_path, monkeypatch):
    """pread of a tile's rows (workers) and the inline engine (no workers)."""
    source, _ = labels
    streamconv.convert(source, tmp_path / "whole", chunk_size=16, workers=0)
    monkeypatch.setenv("STREAMCONV_TILE", "16")
    for workers in (0, 2):
        streamconv.convert(source, tmp_path / f"tiled{workers}", chunk_size=16, workers=workers)
        assert files(tmp_path / f"tiled{workers}") == files(tmp_path / "whole")


def test_bigbrain_geometry_plans_within_1gib(tmp_path):
    """7,404 sections of 6572 x 5711 (symbolic links to one blank section): whole planes need
    3.4 GiB with 2 workers (tests/test_budget.py); tiles fit 1 GiB. The dry run reads the
    headers, and one section for its time sample."""
    section = tmp_path / "section.png"
    imagecodecs.imwrite(section, np.zeros((5711, 6572), np.uint8))
    sections = tmp_path / "bigbrain"
    sections.mkdir()
    for k in range(7404):
        os.symlink(section, sections / f"s{k:04d}.png")
    args = [STREAMCONV, "convert", str(sections), str(tmp_path / "out"), "--dry-run", "--workers", "2",
            "--resolution", "20um", "--input-orientation", "RIA"]
    done = subprocess.run(args + ["--memory", "1GiB", "-v"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "slabs of 64 planes cut into tiles of" in done.stdout
    assert "scale 7 " in done.stderr and "tiles of" in done.stderr  # -v: the plan, scale by scale
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("encoding", ["raw", "png"])
def test_a_tiled_run_survives_sigkill_at_random_moments(encoding, tmp_path):
    """raw: a volume read by region; png: a stack of PNG sections (decoded once per slab)."""
    rng = np.random.default_rng(7)
    base = rng.integers(0, 200, (200, 240), dtype=np.uint8)
    planes = [np.roll(base, k, axis=1) + (k % 50) for k in range(64)]
    for plane in planes:  # background: tiles whose part of a section is one value
        plane[:, :100] = 255
    if encoding == "raw":
        source = tmp_path / "volume.nii"
        nib.save(nib.Nifti1Image(np.stack(planes, axis=2), np.diag([0.02, 0.02, 0.02, 1])), source)
    else:
        source = tmp_path / "stack"
        source.mkdir()
        for k, plane in enumerate(planes):
            imagecodecs.imwrite(source / f"s{k:03d}.png", plane)
    env = {**os.environ, "STREAMCONV_TILE": "32"}
    args = ["--chunk-size", "16", "--workers", "2", "--encoding", encoding]
    report = kill_and_resume(source, tmp_path / "out", args + (["--resolution", "20um"] if encoding == "png" else []),
                             seed=25, env=env)  # the reference run is untiled: the same bytes
    assert tiled(tmp_path / "out")
    assert report["redone_chunks"] < report["chunks"]


@pytest.mark.parametrize("kind", ["nii", "nii.gz", "nii-LIP", "nii.gz-PSL", "png", "png-RIA"])
def test_a_region_reads_as_the_same_box_of_whole_planes(kind, stack, tmp_path):
    """The seam tiles read through (`Source.read_region`): any box, whichever the source."""
    from streamconv.format.geometry import Box
    from streamconv.sources import open_source
    from streamconv.sources.reorient import Reoriented
    from streamconv.sources.stack import SliceStack

    name, _, code = kind.partition("-")
    if name == "png":
        source = SliceStack(str(stack[0]), code or "RAS", resolution=(1.0, 1.0, 1.0))
    else:
        data = np.random.default_rng(3).integers(0, 255, (37, 29, 21), dtype=np.uint8)
        nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / f"v.{name}")
        source = open_source(tmp_path / f"v.{name}")
        source = Reoriented(source, code) if code else source
    assert source.reads_regions == (name == "nii")
    x, y, z = source.shape
    whole = np.empty((1, z, y, x), source.dtype)
    source.read(0, source.shape[source.stream_axis], whole)
    for box in [Box((1, 2, 1), (x - 2, y - 1, z - 1)), Box((0, 1, 1), (x, y - 1, z - 1)),
                Box((3, 0, 2), (9, y, 5)), Box((0, 0, 0), (x, y, z))]:
        out = np.empty((1, *reversed(box.shape)), source.dtype)
        source.read_region(box, out)
        np.testing.assert_array_equal(out, whole[box.index()])
    source.close()


def test_a_tiled_stack_decodes_each_section_once(stack, tmp_path, monkeypatch):
    """PNG sections cannot be read by region: each is decoded once per slab (into a scratch
    file its tiles read), never once per tile; the scratch is gone at the end."""
    import streamconv.sources.stack as stacks

    decoded: list[str] = []
    decode = stacks.decode
    monkeypatch.setattr(stacks, "decode", lambda s, out=None: decoded.append(s.name) or decode(s, out))
    monkeypatch.setenv("STREAMCONV_TILE", "32")
    streamconv.convert(stack[0], tmp_path / "out", chunk_size=16, workers=0, resolution="20um")
    assert sorted(decoded) == sorted(str(p) for p in stack[0].iterdir())
    assert not (tmp_path / "out" / ".streamconv" / "scratch").exists()
    check_pyramid(tmp_path / "out", stack[1], "average", json.loads((tmp_path / "out" / "info").read_text()))


def test_a_tiled_rgb_stack_with_a_coloured_background_writes_the_bytes_of_an_untiled_one(tmp_path, monkeypatch):
    """A tile's part of a section that holds one colour is kept as that colour, not as bytes of
    the scratch file: every channel of it must come back."""
    rng = np.random.default_rng(31)
    source = tmp_path / "rgb"
    source.mkdir()
    for k in range(20):
        section = rng.integers(0, 200, (70, 90, 3), dtype=np.uint8)
        section[:, :40] = (250, 240, 230)
        imagecodecs.imwrite(source / f"s{k:02d}.png", section)
    streamconv.convert(source, tmp_path / "whole", chunk_size=16, workers=2, resolution="20um")
    monkeypatch.setenv("STREAMCONV_TILE", "32")
    streamconv.convert(source, tmp_path / "tiled", chunk_size=16, workers=2, resolution="20um")
    assert tiled(tmp_path / "tiled") and files(tmp_path / "tiled") == files(tmp_path / "whole")
    scale0 = read_scale(tmp_path / "tiled", 0)
    assert (scale0[:40, :, :, :] == np.array([250, 240, 230], np.uint8)).all()


def test_a_resumed_tiled_run_counts_slab_tiles_not_slabs(tmp_path):
    """Ctrl-C stops a tiled run; the run that resumes it says how many slab tiles (blocks: one tile
    of one slab) were complete, scale by scale out of how many, not "slabs" (its journal counts
    blocks)."""
    import signal
    import time

    volume = tmp_path / "big.nii"
    data = np.random.default_rng(31).integers(0, 255, (160, 160, 160), dtype=np.uint8)
    nib.save(nib.Nifti1Image(data, np.eye(4)), volume)
    out = tmp_path / "out"
    args = [STREAMCONV, "convert", str(volume), str(out), "--chunk-size", "32", "--memory", "300MiB"]
    # STREAMCONV_TILE tiles at any --memory: 5 x 5 tiles a slab of scale 0. (What the run needs
    # counts the main process as it is, which differs by machine: 194 MiB here, 201 MiB on CI.)
    env = {**os.environ, "STREAMCONV_TILE": "32"}
    proc = subprocess.Popen(args, start_new_session=True, stderr=subprocess.PIPE, text=True, env=env)
    journal = out / ".streamconv" / "journal"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (journal.exists() and "slab" in journal.read_text()):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 130 and "resume" in err and "Traceback" not in err, err
    done = sum(line.startswith("slab ") for line in journal.read_text().splitlines())
    resumed = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    tiles = f"{done} slab tile{'s' if done > 1 else ''}"
    assert f"resuming: {tiles} (scale 0: " in resumed.stderr and " of 125" in resumed.stderr, resumed.stderr
    assert f"(resumed: {tiles} {'were' if done > 1 else 'was'} done" in resumed.stderr, resumed.stderr
    assert "slabs were" not in resumed.stderr


def test_the_scratch_goes_where_streamconv_scratch_says_and_is_removed(stack, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    streamconv.convert(stack[0], tmp_path / "whole", chunk_size=16, workers=2, resolution="20um")
    monkeypatch.setenv("STREAMCONV_TILE", "32")
    monkeypatch.setenv("STREAMCONV_SCRATCH", str(elsewhere))
    seen: list[str] = []
    original = os.unlink
    monkeypatch.setattr(os, "unlink", lambda path, *a, **k: seen.append(str(path)) or original(path, *a, **k))
    streamconv.convert(stack[0], tmp_path / "tiled", chunk_size=16, workers=2, resolution="20um")
    assert files(tmp_path / "tiled") == files(tmp_path / "whole")
    assert any(path.startswith(str(elsewhere)) for path in seen)  # the slabs' scratch files lay there
    assert list(elsewhere.iterdir()) == [] and not (tmp_path / "tiled" / ".streamconv" / "scratch").exists()
