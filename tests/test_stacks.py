"""Slice stacks: a stack made from a real volume converts to the same bytes as the volume;
orientation codes permute and flip as they say; bad stacks stop before writing anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imagecodecs
import nibabel as nib
import numpy as np
import pytest
import tensorstore as ts
import tifffile
from nilearn.datasets import MNI152_FILE_PATH

import streamconv
from streamconv.errors import DataError, UsageError

STREAMCONV = str(Path(sys.executable).with_name("streamconv"))


def read_all(out: Path) -> np.ndarray:
    spec = {"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": f"{out}/"}}
    return ts.open(spec).result().read().result()


def chunk_files(out: Path) -> dict[str, bytes]:
    """Chunks and info: not the placement, which a stack has not (its grid is its world)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".streamconv" not in p.parts
            and p.name not in ("transform.json", "placement.json")}


@pytest.fixture(scope="module")
def mni() -> np.ndarray:
    return np.asarray(nib.load(MNI152_FILE_PATH).dataobj)


def test_png_and_tiff_stacks_of_a_real_volume_equal_the_volume(mni, tmp_path):
    pngs = tmp_path / "png"
    pngs.mkdir()
    for z in range(mni.shape[2]):  # rows run along y, columns along x: orientation RAS
        imagecodecs.imwrite(pngs / f"mni_{z}.png", np.ascontiguousarray(mni[:, :, z].T))
    tiff = tmp_path / "mni16.tif"
    mni16 = mni.astype(np.uint16) * 257
    tifffile.imwrite(tiff, np.ascontiguousarray(mni16.transpose(2, 1, 0)))
    nii16 = tmp_path / "mni16.nii"
    nib.save(nib.Nifti1Image(mni16, np.eye(4)), nii16)

    streamconv.convert(MNI152_FILE_PATH, tmp_path / "volume", workers=2)
    streamconv.convert(pngs, tmp_path / "from_png", workers=2, resolution="1mm")
    assert chunk_files(tmp_path / "from_png") == chunk_files(tmp_path / "volume")

    streamconv.convert(nii16, tmp_path / "volume16", workers=0)
    streamconv.convert(tiff, tmp_path / "from_tiff", workers=0, resolution="1mm")
    assert chunk_files(tmp_path / "from_tiff") == chunk_files(tmp_path / "volume16")


def reference_orientation(volume: np.ndarray, code: str) -> np.ndarray:
    """Plain numpy: input axes (column, row, slice) to RAS output axes, flipping L, P and I."""
    axis = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}
    for a, letter in enumerate(code):
        if letter in "LPI":
            volume = np.flip(volume, axis=a)
    return np.transpose(volume, np.argsort([axis[c] for c in code]))


ALL_CODES = [a + b + c for a in "RLAPSI" for b in "RLAPSI" for c in "RLAPSI"
             if len({a, b, c} & set("RL")) == len({a, b, c} & set("AP")) == len({a, b, c} & set("SI")) == 1]


@pytest.mark.parametrize("code", ALL_CODES)
def test_orientation_codes_permute_and_flip(tmp_path, code):
    # Grey sections are decoded straight into the slab, RGB ones too, in every code; a filled gap
    # and --workers 2 in some.
    rng = np.random.default_rng(7)
    columns, rows, slices = 37, 23, 29
    channels = 3 if code in ("RAS", "PIR", "SLA", "ILP") else 1
    images = [rng.integers(0, 255, (rows, columns, channels), dtype=np.uint8) for _ in range(slices)]
    stack = tmp_path / "stack"
    stack.mkdir()
    for k, image in enumerate(images):
        imagecodecs.imwrite(stack / f"s{k}.png", image if channels > 1 else image[..., 0])
    gap = code in ("RIA", "LPS", "ASR")
    if gap:
        (stack / "s5.png").unlink()
        images[5] = np.full_like(images[5], 9)
    volume = np.stack([image.transpose(1, 0, 2) for image in images], axis=2)  # (column, row, slice, c)
    out = tmp_path / "out"
    streamconv.convert(str(stack), out, workers=2 if code in ("RIA", "ILP", "SRA") else 0,
                       resolution="1,2,3", input_orientation=code, chunk_size=8,
                       fill_missing=9 if gap else None)
    expected = np.stack([reference_orientation(volume[..., c], code) for c in range(channels)], axis=-1)
    assert np.array_equal(read_all(out), expected)


def test_sections_sort_naturally_and_a_glob_and_list_file_work(tmp_path):
    stack = tmp_path / "stack"
    stack.mkdir()
    for k in range(12):  # s2 must come before s10
        imagecodecs.imwrite(stack / f"s{k}.png", np.full((4, 5), k, np.uint8))
    (tmp_path / "list.txt").write_text("".join(f"stack/s{k}.png\n" for k in range(12)))
    for name, spec in [("dir", stack), ("glob", f"{stack}/s*.png"), ("list", tmp_path / "list.txt")]:
        streamconv.convert(spec, tmp_path / name, workers=0, resolution="1um")
        assert list(read_all(tmp_path / name)[0, 0, :, 0]) == list(range(12))


@pytest.mark.parametrize("kind", ["png", "tiff", "planar tiff", "planar multi-page tiff"])
def test_rgb_sections_become_three_channels(tmp_path, kind):
    rng = np.random.default_rng(3)
    stack = tmp_path / "rgb"
    stack.mkdir()
    images = [rng.integers(0, 255, (9, 11, 3), dtype=np.uint8) for _ in range(5)]
    planar = {"planarconfig": "separate"} if "planar" in kind else {}
    if "multi-page" in kind:
        stack = stack / "rgb.tif"
        with tifffile.TiffWriter(stack) as tif:
            for image in images:
                tif.write(np.moveaxis(image, 2, 0), photometric="rgb", **planar)
    for k, image in enumerate(images if stack.is_dir() else []):
        if kind == "png":
            imagecodecs.imwrite(stack / f"c{k}.png", image)
        else:  # samples stored pixel by pixel, or plane after plane
            tifffile.imwrite(stack / f"c{k}.tif", np.moveaxis(image, 2, 0) if planar else image,
                             photometric="rgb", **planar)
    streamconv.convert(stack, tmp_path / "out", workers=0, resolution="1um")
    expected = np.stack([image.transpose(1, 0, 2) for image in images], axis=2)  # x, y, z, c
    assert np.array_equal(read_all(tmp_path / "out"), expected)


def make_bad_stack(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A stack with one defect, and the file the error must name."""
    stack = tmp_path / kind
    stack.mkdir()
    for k in range(6):
        shape = (21, 30) if kind == "size" and k == 3 else (20, 30)
        dtype = np.uint16 if kind == "dtype" and k == 4 else np.uint8
        if kind != "empty":
            imagecodecs.imwrite(stack / f"s{k}.png", np.full(shape, k, dtype))
    if kind == "missing":
        (stack / "s2.png").unlink()
        return stack, "s2.png"
    if kind == "truncated":
        data = (stack / "s3.png").read_bytes()
        (stack / "s3.png").write_bytes(data[: len(data) // 2])
        return stack, "s3.png"
    if kind == "damaged":  # header and end intact, pixel data broken
        (stack / "s3.png").write_bytes(damaged_png(np.full((20, 30), 3, np.uint8)))
        return stack, "s3.png"
    if kind == "not-png":
        (stack / "s3.png").write_bytes(b"GIF89a" + bytes(100))
        return stack, "s3.png"
    return stack, {"size": "s3.png", "dtype": "s4.png", "empty": str(stack)}[kind]


def damaged_png(image: np.ndarray) -> bytes:
    data = bytearray(imagecodecs.png_encode(image))
    start = data.index(b"IDAT") + 4
    data[start + 2:start + 12] = bytes(10)  # inside the compressed pixel data
    return bytes(data)


@pytest.mark.parametrize("kind", ["missing", "truncated", "size", "dtype", "empty", "damaged", "not-png"])
def test_bad_stacks_fail_with_one_line_naming_the_file_and_write_nothing(tmp_path, kind):
    stack, culprit = make_bad_stack(tmp_path, kind)
    out = tmp_path / "out"
    run = subprocess.run([STREAMCONV, "convert", str(stack), str(out), "--resolution", "1um"],
                         capture_output=True, text=True)
    assert run.returncode == 1
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and culprit in lines[0] and "Traceback" not in run.stderr
    assert len(lines[0]) < 400 and "truncated" not in lines[0] if kind == "not-png" else True
    # found before the start or when decoded, before any chunk was written: nothing is left
    assert not out.exists()


def test_fill_missing_fills_gaps_and_unreadable_sections(tmp_path):
    stack, _ = make_bad_stack(tmp_path, "missing")
    data = (stack / "s4.png").read_bytes()
    (stack / "s4.png").write_bytes(data[:20])  # truncated as well
    (stack / "s5.png").write_bytes(damaged_png(np.full((20, 30), 5, np.uint8)))
    for workers in (0, 2):
        out = tmp_path / f"out{workers}"
        result = subprocess.run([STREAMCONV, "convert", "-q", str(stack), str(out), "--resolution",
                                 "1um", "--fill-missing", "9", "--workers", str(workers)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "s5.png" in result.stderr and all(len(line) < 400 for line in result.stderr.splitlines())
        assert list(read_all(out)[0, 0, :, 0]) == [0, 1, 9, 3, 9, 9]
    with pytest.raises(UsageError):
        streamconv.convert(stack, tmp_path / "out2", workers=0, resolution="1um", fill_missing=300)


@pytest.mark.parametrize("workers", [0, 2])
def test_fill_missing_names_the_first_damaged_sections_and_counts_every_other(tmp_path, workers):
    """Three sections are unreadable from their headers (found by the main process before the
    run) and eight decode badly (found by whichever process decodes them: the workers with
    --workers 2): five are named, and the count covers the other six wherever they were found."""
    stack = tmp_path / "stack"
    stack.mkdir()
    damaged, truncated, garbage = {2, 5, 7, 9, 11, 13, 15, 17}, {3, 12}, 18
    for k in range(20):
        image = np.full((20, 30), k, np.uint8)
        data = imagecodecs.png_encode(image)
        if k in damaged:
            data = damaged_png(image)
        elif k in truncated:
            data = data[:30]
        elif k == garbage:
            data = b"garbage bytes" * 20
        (stack / f"s{k:02d}.png").write_bytes(data)
    out = tmp_path / "out"
    run = subprocess.run([STREAMCONV, "convert", "-q", str(stack), str(out), "--resolution", "1um",
                          "--fill-missing", "99", "--workers", str(workers)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    named = [line for line in lines if line.startswith("filling section ")]
    assert len(named) == 5 and lines[5:] == ["... and 6 more sections filled with 99"], run.stderr
    bad = {stack / f"s{k:02d}.png" for k in damaged | truncated | {garbage}}
    assert len({line.split()[2] for line in named}) == 5 and {Path(line.split()[2]) for line in named} <= bad
    assert all(line.count(str(stack)) == 1 and "--fill-missing" not in line for line in named)
    sections = read_all(out)[0, 0, :, 0]
    assert list(sections) == [99 if stack / f"s{k:02d}.png" in bad else k for k in range(20)]


def test_resolution_comes_from_tiff_tags_or_must_be_given(tmp_path):
    volume = np.arange(5 * 20 * 30, dtype=np.uint16).reshape(5, 20, 30)
    tifffile.imwrite(tmp_path / "ij.tif", volume, imagej=True, resolution=(2, 4),
                     metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"})
    report = streamconv.convert(tmp_path / "ij.tif", tmp_path / "out", workers=0)
    assert report.scales[0].resolution == (500, 250, 2000)
    imagecodecs.imwrite(tmp_path / "one.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(UsageError, match="--resolution"):
        streamconv.convert(tmp_path / "one.png", tmp_path / "out2", workers=0)


def test_orientation_is_for_stacks_only(tmp_path):
    with pytest.raises(UsageError):
        streamconv.convert(MNI152_FILE_PATH, tmp_path / "out", input_orientation="RIA")
    with pytest.raises(DataError):
        streamconv.convert(tmp_path / "absent*.png", tmp_path / "out", resolution="1um")


@pytest.mark.parametrize("code", ["RAS", "RAI", "LIP"])
def test_a_read_task_gets_only_its_sections(tmp_path, code):
    """A read task is sent `window(p0, p1)` of the stack: it reads the same planes as the whole
    stack, and pickles to a fraction of it (BigBrain: 7,404 section paths per task otherwise)."""
    import pickle

    from streamconv.sources import SliceStack

    rng = np.random.default_rng(5)
    for k in range(120):
        imagecodecs.imwrite(tmp_path / f"s_{k:03d}.png", rng.integers(0, 255, (6, 7), np.uint8))
    stack = SliceStack(str(tmp_path), code, (1.0, 1.0, 1.0))
    axis, (x, y, z) = stack.stream_axis, stack.shape

    def planes(source: SliceStack, p0: int, p1: int) -> np.ndarray:
        shape = [1, z, y, x]
        shape[3 - axis] = p1 - p0
        out = np.empty(shape, np.uint8)
        source.read(p0, p1, out)
        return out

    for p0, p1 in [(0, 3), (17, 23), (117, 120)]:
        part = stack.window(p0, p1)
        assert np.array_equal(planes(part, p0, p1), planes(stack, p0, p1))
        assert len(pickle.dumps(part)) < len(pickle.dumps(stack)) / 4
