"""The step-by-step workflow: the commands of neuroglancer-scripts' documentation, typed with
`streamconv` in front, give the files `streamconv convert` writes; side by side with
neuroglancer-scripts itself they give the same voxels."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imagecodecs
import nibabel as nib
import numpy as np
import pytest
from nilearn.datasets import MNI152_FILE_PATH
from reference import downsample as downsample_reference

from streamconv.format.geometry import Box
from streamconv.layout.dataset import open_dataset

BIN = Path(sys.executable).parent
STREAMCONV = str(BIN / "streamconv")


def streamconv(*args: str, code: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run([STREAMCONV, *map(str, args)], capture_output=True, text=True)
    assert result.returncode == code, result.stderr
    return result


def files(out: Path) -> dict[str, bytes]:
    """Every file a reader sees: chunks and info, not our journal or the step's own input, nor
    the placement (a slice stack's steps write none; tests/test_placement.py checks it)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".streamconv" not in p.parts
            and p.name not in ("info_fullres.json", "transform.json", "placement.json")}


def scales(out: Path) -> dict[tuple[float, ...], np.ndarray]:
    """Every scale, decoded, by resolution (keys differ between tools)."""
    volume = open_dataset(out)
    return {s.resolution: volume.read(k, Box((0, 0, 0), s.size)) for k, s in enumerate(volume.scales)}


@pytest.fixture(scope="module")
def labels(tmp_path_factory) -> Path:
    """uint32 labels in blocks of odd sizes, so that majority votes meet ties and edges."""
    path = tmp_path_factory.mktemp("labels") / "labels.nii.gz"
    x, y, z = np.meshgrid(np.arange(150), np.arange(133), np.arange(53), indexing="ij", sparse=True)
    data = ((x // 3) * 7 + (y // 5) * 1009 + (z // 3) * 100003 + 70000).astype(np.uint32)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), path)
    return path


@pytest.fixture(scope="module")
def sections(tmp_path_factory) -> Path:
    """The MNI template as coronal PNG sections (one per y plane, rows running down)."""
    directory = tmp_path_factory.mktemp("sections")
    data = np.asarray(nib.load(MNI152_FILE_PATH).dataobj)
    for y in range(data.shape[1]):
        imagecodecs.imwrite(directory / f"section{y}.png", np.ascontiguousarray(data[:, y, ::-1].T))
    return directory


def test_volume_workflow_gives_the_files_of_convert(tmp_path):
    out, ref = tmp_path / "steps", tmp_path / "convert"
    streamconv("volume-to-precomputed", "--generate-info", MNI152_FILE_PATH, out)
    fullres = json.loads((out / "info_fullres.json").read_text())
    assert fullres["data_type"] == "uint8" and fullres["scales"][0]["size"] == [197, 233, 189]
    streamconv("generate-scales-info", out / "info_fullres.json", out)
    streamconv("volume-to-precomputed", MNI152_FILE_PATH, out)
    streamconv("compute-scales", out)
    streamconv("convert", MNI152_FILE_PATH, ref)
    assert files(out) == files(ref) and len(files(ref)) > 50
    # step 5: compressed chunks in a separate directory, its info from generate-scales-info
    jpeg, jpeg_ref = tmp_path / "jpeg", tmp_path / "convert-jpeg"
    streamconv("generate-scales-info", "--encoding=jpeg", out / "info_fullres.json", jpeg)
    streamconv("convert-chunks", out, jpeg)
    streamconv("convert", MNI152_FILE_PATH, jpeg_ref, "--encoding", "jpeg")
    assert files(jpeg) == files(jpeg_ref)


def test_segmentation_workflow_with_compressed_segmentation(labels, tmp_path):
    out, ref = tmp_path / "steps", tmp_path / "convert"
    streamconv("volume-to-precomputed", "--generate-info", labels, out)
    streamconv("generate-scales-info", "--type=segmentation", "--encoding=compressed_segmentation",
               "--target-chunk-size", "16", out / "info_fullres.json", out)
    streamconv("volume-to-precomputed", labels, out)
    streamconv("compute-scales", "--downscaling-method=majority", out)
    streamconv("convert", labels, ref, "--type", "segmentation", "--encoding",
               "compressed_segmentation", "--chunk-size", "16")
    assert files(out) == files(ref)
    info = json.loads((out / "info").read_text())
    assert {s["encoding"] for s in info["scales"]} == {"compressed_segmentation"}


def test_slices_workflow_as_in_the_bigbrain_example(sections, tmp_path):
    """A hand-written info_fullres.json, RIA sections, a white outside for the averages."""
    out, ref = tmp_path / "steps", tmp_path / "convert"
    out.mkdir()
    (out / "info_fullres.json").write_text(json.dumps({
        "type": "image", "data_type": "uint8", "num_channels": 1,
        "scales": [{"size": [197, 233, 189], "resolution": [1e6, 1e6, 1e6], "voxel_offset": [0, 0, 0]}]}))
    streamconv("generate-scales-info", out / "info_fullres.json", out)
    streamconv("scale-stats", out)
    streamconv("slices-to-precomputed", "--input-orientation", "RIA", sections, out)
    streamconv("compute-scales", "--downscaling-method", "average", "--outside-value", "255", out)
    streamconv("convert", sections, ref, "--input-orientation", "RIA", "--resolution", "1mm",
               "--outside-value", "255")
    assert files(out) == files(ref)
    got = {r: a.transpose(3, 2, 1, 0) for r, a in scales(out).items()}  # as (x, y, z, c)
    full, half = got[(1e6, 1e6, 1e6)], got[(2e6, 2e6, 2e6)]
    assert np.array_equal(full[..., 0], np.asarray(nib.load(MNI152_FILE_PATH).dataobj))
    # the outside value counts in the edge blocks
    padded = np.pad(full, [(0, n % 2) for n in full.shape[:3]] + [(0, 0)], constant_values=255)
    assert np.array_equal(half, downsample_reference(padded, (2, 2, 2), "average"))


def test_scale_stats_counts_chunks_and_estimates_disk(tmp_path):
    out = tmp_path / "out"
    streamconv("convert", MNI152_FILE_PATH, out, "--chunk-size", "32")
    lines = streamconv("scale-stats", out).stdout.splitlines()
    info = json.loads((out / "info").read_text())
    counts = [len(list((out / s["key"]).iterdir())) for s in info["scales"]]
    assert lines[0] == f"Scale 1000000_1000000_1000000: {counts[0]} chunks, raw uncompressed size 8.3 MiB"
    assert f"Total: {sum(counts):,d} chunks" in lines[len(counts) + 1]
    assert any(line.strip().startswith("raw+gzip: ") for line in lines)
    assert any(line.startswith("Memory with") for line in lines)


def test_input_range_maps_values_onto_the_info_type(tmp_path):
    """neuroglancer-scripts' recipe: generate the info, edit data_type, map a float range."""
    path = tmp_path / "float.nii"
    rng = np.random.default_rng(1)
    data = rng.normal(100, 40, (20, 17, 9)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    out = tmp_path / "out"
    streamconv("volume-to-precomputed", "--generate-info", path, out)
    fullres = json.loads((out / "info_fullres.json").read_text())
    assert fullres["data_type"] == "float32"
    fullres["data_type"] = "uint8"
    (out / "info_fullres.json").write_text(json.dumps(fullres))
    streamconv("generate-scales-info", out / "info_fullres.json", out)
    streamconv("volume-to-precomputed", "--input-min", "20", "--input-max", "180", path, out)
    got = scales(out)[(1e6, 1e6, 1e6)][0]
    expected = np.clip(np.rint((data.astype(np.float64) - 20) * 255 / 160), 0, 255).astype(np.uint8)
    assert np.array_equal(got, expected.transpose(2, 1, 0))


def test_steps_refuse_what_would_be_wrong(labels, tmp_path):
    out = tmp_path / "out"
    result = streamconv("volume-to-precomputed", MNI152_FILE_PATH, out, code=2)
    assert "generate-scales-info first" in result.stderr and len(result.stderr.splitlines()) == 1
    streamconv("volume-to-precomputed", "--generate-info", MNI152_FILE_PATH, out)
    streamconv("generate-scales-info", out / "info_fullres.json", out)
    result = streamconv("volume-to-precomputed", labels, out, code=1)  # another size
    assert "(150, 133, 53)" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (out / "1000000_1000000_1000000").exists()
    streamconv("volume-to-precomputed", MNI152_FILE_PATH, out)
    assert not (out / ".streamconv").exists()  # finished: no record left, as neuroglancer-scripts
    # a second run finds chunks it has no record of (its own, or another tool's): refused
    result = streamconv("volume-to-precomputed", MNI152_FILE_PATH, out, code=1)
    assert "already holds files" in result.stderr and "--overwrite" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    streamconv("volume-to-precomputed", "--overwrite", MNI152_FILE_PATH, out)  # written again
    result = streamconv("compute-scales", "--outside-value", "300", out, code=2)
    assert "not a value of uint8" in result.stderr
    streamconv("compute-scales", out)
    assert "already holds files" in streamconv("compute-scales", out, code=1).stderr
    streamconv("compute-scales", "--overwrite", out)  # replaces the scales it wrote
    assert len(list((out / "1000000_1000000_1000000").iterdir())) == 48
    assert sorted(p.name for p in out.iterdir() if not p.is_dir()) == [
        "info", "info_fullres.json", "placement.json", "stats.json", "transform.json"]
    assert not (out / ".streamconv").exists()


def test_compute_scales_resumes_after_sigkill(tmp_path):
    """Killed at a random moment, the step finishes on the next run with the same files."""
    path = tmp_path / "vol.nii"
    x, y, z = np.meshgrid(np.arange(256), np.arange(256), np.arange(384), indexing="ij", sparse=True)
    nib.save(nib.Nifti1Image(((x * 3 + y * 5 + z * 7) % 251).astype(np.uint8), np.eye(4)), path)
    ref = tmp_path / "ref"
    streamconv("convert", path, ref, "--chunk-size", "32")
    out = tmp_path / "out"
    streamconv("volume-to-precomputed", "--generate-info", path, out)
    streamconv("generate-scales-info", "--target-chunk-size", "32", out / "info_fullres.json", out)
    streamconv("volume-to-precomputed", path, out)
    proc = subprocess.Popen([STREAMCONV, "compute-scales", "-q", str(out)], start_new_session=True)
    journal = out / ".streamconv" / "scales" / "journal"
    deadline = time.monotonic() + 60
    while not (journal.exists() and "slab" in journal.read_text()) and time.monotonic() < deadline:
        time.sleep(0.005)  # killed once the first slab is recorded: in the middle of the run
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert '"complete": false' in (journal.parent / "job.json").read_text()
    streamconv("compute-scales", out)  # resumes, then leaves no record
    assert files(out) == files(ref) and not (out / ".streamconv").exists()


@pytest.fixture(scope="module")
def ngscripts() -> Path:
    tool = BIN / "compute-scales"
    if not tool.exists():
        pytest.skip("neuroglancer-scripts is not installed (pip install '.[test]')")
    return BIN


def run_ngscripts(bin_dir: Path, *args: object) -> None:
    result = subprocess.run([str(bin_dir / str(args[0])), *map(str, args[1:])], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("volume_type", ["image", "segmentation"])
def test_side_by_side_with_neuroglancer_scripts(ngscripts, labels, volume_type, tmp_path):
    """The same documented steps in both tools: every scale that both write decodes to the
    same voxels. Ours run on their info too, and then every chunk file is byte-identical."""
    source = MNI152_FILE_PATH if volume_type == "image" else labels
    method = "average" if volume_type == "image" else "majority"
    theirs, ours, mixed = tmp_path / "theirs", tmp_path / "ours", tmp_path / "ours-on-their-info"
    run_ngscripts(ngscripts, "volume-to-precomputed", "--generate-info", source, theirs)
    run_ngscripts(ngscripts, "generate-scales-info", "--type", volume_type,
                  theirs / "info_fullres.json", theirs)
    run_ngscripts(ngscripts, "volume-to-precomputed", "--flat", "--no-gzip", source, theirs)
    run_ngscripts(ngscripts, "compute-scales", "--flat", "--no-gzip", "--downscaling-method",
                  method, theirs)

    streamconv("volume-to-precomputed", "--generate-info", source, ours)
    streamconv("generate-scales-info", "--type", volume_type, ours / "info_fullres.json", ours)
    streamconv("volume-to-precomputed", "--flat", "--no-gzip", source, ours)
    streamconv("compute-scales", "--flat", "--no-gzip", "--downscaling-method", method, ours)

    a, b = scales(theirs), scales(ours)
    common = sorted(set(a) & set(b))
    assert len(common) >= 2 and len(common) == len(a)  # we add scales down to one chunk
    for resolution in common:
        assert np.array_equal(a[resolution], b[resolution]), resolution

    mixed.mkdir()
    (mixed / "info").write_bytes((theirs / "info").read_bytes())
    streamconv("volume-to-precomputed", source, mixed)
    streamconv("compute-scales", "--downscaling-method", method, mixed)
    theirs_files = {k: v for k, v in files(theirs).items() if k != "transform.json"}
    assert {k: v for k, v in files(mixed).items() if k != "stats.json"} == theirs_files  # ours: value statistics


def test_full_resolution_on_disk_reads_back_as_a_source(tmp_path):
    """compute-scales' source: any run of planes, not only whole chunks, equals the input."""
    from streamconv.sources.precomputed import PrecomputedSource

    streamconv("convert", MNI152_FILE_PATH, tmp_path / "out", "--chunk-size", "32")
    source = PrecomputedSource(open_dataset(tmp_path / "out"))
    data = np.asarray(nib.load(MNI152_FILE_PATH).dataobj)
    out = np.empty((1, 35, 233, 197), np.uint8)
    source.read(5, 40, out)
    assert np.array_equal(out[0], data[:, :, 5:40].transpose(2, 1, 0))


def test_volume_to_precomputed_pyramid_is_convert_under_the_old_name(tmp_path):
    streamconv("volume-to-precomputed-pyramid", "--flat", "--no-gzip", "--downscaling-method",
               "auto", MNI152_FILE_PATH, tmp_path / "alias")
    streamconv("convert", MNI152_FILE_PATH, tmp_path / "convert")
    assert files(tmp_path / "alias") == files(tmp_path / "convert")
    # --input-max, as neuroglancer-scripts: values mapped onto 0..1, stored as float32
    streamconv("volume-to-precomputed-pyramid", "--input-max", "255", MNI152_FILE_PATH, tmp_path / "f")
    got = scales(tmp_path / "f")[(1e6, 1e6, 1e6)][0]
    data = np.asarray(nib.load(MNI152_FILE_PATH).dataobj).transpose(2, 1, 0)
    assert got.dtype == np.float32 and np.allclose(got, data / 255.0)


@pytest.mark.parametrize("fullres, message", [
    ({"data_type": "uint8", "scales": [{"size": [10, 10], "resolution": [1, 1, 1]}]}, "three positive"),
    ({"data_type": "uint8", "scales": [{"size": [10, 10, 0], "resolution": [1, 1, 1]}]}, "three positive"),
    ({"data_type": "complex64", "scales": [{"size": [9, 9, 9], "resolution": [1, 1, 1]}]}, "complex64"),
    ({"scales": [{"size": [9, 9, 9], "resolution": [1, 1, 1]}]}, "not a full-resolution info"),
])
def test_generate_scales_info_refuses_a_bad_fullres_info(tmp_path, fullres, message):
    (tmp_path / "full.json").write_text(json.dumps(fullres))
    result = subprocess.run([STREAMCONV, "generate-scales-info", str(tmp_path / "full.json"),
                             str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode in (1, 2) and message in result.stderr
    assert len(result.stderr.splitlines()) == 1 and not (tmp_path / "out" / "info").exists()
