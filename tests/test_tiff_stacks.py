"""TIFF files as stacks and TIFF sections by region: a multi-page TIFF, an ImageJ hyperstack and an
OME-TIFF convert to the same volume as their planes given as a directory of sections; a region of
a tiled or striped page (BigTIFF, compressed) reads the same pixels as the whole page."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tensorstore as ts
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamconv
from streamconv.errors import DataError
from streamconv.sources.sections import Slice, decode_region, probe
from streamconv.sources.tiffs import read_region

ROOT = Path(__file__).resolve().parents[1]


def read_all(out: Path) -> np.ndarray:
    spec = {"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": f"{out}/"}}
    return ts.open(spec).result().read().result()


def chunks(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".streamconv" not in p.parts and p.suffix != ".json"}


def planes_as_directory(planes: np.ndarray, directory: Path, suffix: str) -> Path:
    """Sections (z, rows, columns[, channels]) as single-page files, one per plane."""
    directory.mkdir()
    for z, plane in enumerate(planes):
        if suffix == ".png":
            imagecodecs.imwrite(directory / f"s{z:02d}.png", plane)
        else:
            contig = {"planarconfig": "contig"} if plane.ndim == 3 else {}  # samples: channels
            tifffile.imwrite(directory / f"s{z:02d}.tif", plane, photometric="minisblack", **contig)
    return directory


def converts_as_directory(stack: Path, planes: np.ndarray, tmp_path: Path, suffix: str = ".tif",
                          **options) -> np.ndarray:
    """Convert `stack` and its planes as a directory: the same chunks; the volume (x, y, z, c)."""
    sections = planes_as_directory(planes, tmp_path / "sections", suffix)
    streamconv.convert(stack, tmp_path / "from_file", workers=0, resolution="1um", chunk_size=8, **options)
    streamconv.convert(sections, tmp_path / "from_dir", workers=0, resolution="1um", chunk_size=8, **options)
    assert chunks(tmp_path / "from_file") == chunks(tmp_path / "from_dir")
    volume = read_all(tmp_path / "from_file")
    expected = planes if planes.ndim == 4 else planes[..., None]
    if options.get("input_orientation") == "RAI":  # sections from superior to inferior
        expected = expected[::-1]
    assert np.array_equal(volume, expected.transpose(2, 1, 0, 3))
    return volume


def test_a_multi_page_tiff_is_every_page_and_skips_its_thumbnail(tmp_path):
    rng = np.random.default_rng(1)
    planes = rng.integers(0, 255, (11, 19, 23), dtype=np.uint8)
    with tifffile.TiffWriter(tmp_path / "pages.tif", bigtiff=True) as tif:
        for k, plane in enumerate(planes):
            tif.write(plane, tile=(16, 16), compression="zlib")
            if k == 0:  # a reduced-resolution page after the first: not a section
                tif.write(plane[::2, ::2], subfiletype=1)
    converts_as_directory(tmp_path / "pages.tif", planes, tmp_path, ".png")


def test_an_imagej_hyperstack_is_its_slices_with_its_channels(tmp_path):
    rng = np.random.default_rng(2)
    zcyx = rng.integers(0, 60000, (9, 2, 17, 21), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "hyper.tif", zcyx, imagej=True, metadata={"axes": "ZCYX"})
    converts_as_directory(tmp_path / "hyper.tif", np.moveaxis(zcyx, 1, -1), tmp_path, input_orientation="RAI")


def test_an_ome_tiff_is_its_largest_level_and_carries_its_voxel_size(tmp_path):
    rng = np.random.default_rng(3)
    czyx = rng.integers(0, 255, (2, 7, 40, 36), dtype=np.uint8)
    with tifffile.TiffWriter(tmp_path / "cells.ome.tif", bigtiff=True) as tif:
        tif.write(czyx, subifds=1, tile=(16, 16), compression="zlib",
                  metadata={"axes": "CZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.25, "PhysicalSizeZ": 2.0})
        tif.write(czyx[:, :, ::2, ::2], subfiletype=1, tile=(16, 16), compression="zlib")
    converts_as_directory(tmp_path / "cells.ome.tif", np.moveaxis(czyx, 0, -1), tmp_path)
    report = streamconv.convert(tmp_path / "cells.ome.tif", tmp_path / "sized", workers=0)
    assert report.scales[0].resolution == (500, 250, 2000)


def test_an_imagej_file_that_lists_its_first_page_only_is_every_plane(tmp_path):
    """ImageJ writes files over 4 GiB with one IFD and the planes one after the other; made
    here by ending a small file's IFD chain after its first page."""
    import struct

    rng = np.random.default_rng(9)
    zcyx = rng.integers(0, 60000, (5, 2, 23, 31), dtype=np.uint16)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, zcyx, imagej=True, metadata={"axes": "ZCYX"})
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[0].offset
        tif.filehandle.seek(offset)
        tags = struct.unpack("<H", tif.filehandle.read(2))[0]
    with open(path, "r+b") as f:
        f.seek(offset + 2 + 12 * tags)
        f.write(b"\0\0\0\0")
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 1 and tif.series[0].shape == zcyx.shape
    volume = converts_as_directory(path, np.moveaxis(zcyx, 1, -1), tmp_path)
    out = np.zeros((2, 1, 9, 6), np.uint16)  # a region of plane 3: by the rows it needs
    from streamconv.format.geometry import Box
    from streamconv.sources import SliceStack

    stack = SliceStack(str(path), "RAS", (1.0, 1.0, 1.0))
    stack.read_region(Box((20, 10, 3), (26, 19, 4)), out)
    assert np.array_equal(out, volume[20:26, 10:19, 3:4].transpose(3, 2, 1, 0))
    stack.close()


def test_a_time_series_is_refused_in_one_line(tmp_path):
    tifffile.imwrite(tmp_path / "movie.tif", np.zeros((3, 4, 8, 8), np.uint8), imagej=True,
                     metadata={"axes": "TZYX"})
    with pytest.raises(DataError, match="time series"):
        streamconv.convert(tmp_path / "movie.tif", tmp_path / "out", workers=0, resolution="1um")
    assert not (tmp_path / "out").exists()


def _tiff(tmp: Path, image: np.ndarray, layout: dict) -> Path:
    path = tmp / "section.tif"
    tifffile.imwrite(path, image, bigtiff=True, **layout)
    return path


LAYOUTS = st.one_of(
    st.just({}),  # uncompressed, one strip: tifffile's default
    st.builds(lambda t, c: {"tile": t, "compression": c},
              st.tuples(st.sampled_from([16, 32, 48]), st.sampled_from([16, 32, 80])),
              st.sampled_from([None, "zlib", "lzw", "zstd"])),
    st.builds(lambda r, c: {"rowsperstrip": r, "compression": c},
              st.integers(1, 40), st.sampled_from([None, None, "zlib", "packbits"])),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.integers(1, 90), columns=st.integers(1, 110), samples=st.sampled_from([1, 3]),
       separate=st.booleans(), layout=LAYOUTS, byteorder=st.sampled_from("<>"), data=st.data())
def test_a_region_reads_as_the_whole_page_cut(rows, columns, samples, separate, layout, byteorder, data):
    rng = np.random.default_rng(rows * 1000 + columns)
    if samples == 3:
        layout = {**layout, "photometric": "rgb", "planarconfig": "separate" if separate else "contig"}
    shape = (rows, columns) if samples == 1 else (3, rows, columns) if separate else (rows, columns, 3)
    image = rng.integers(0, 65535, shape, dtype=np.uint16)
    whole = image[None] if samples == 1 else image if separate else np.moveaxis(image, -1, 0)
    r0 = data.draw(st.integers(0, rows - 1))
    r1 = data.draw(st.integers(r0 + 1, rows))
    c0 = data.draw(st.integers(0, columns - 1))
    c1 = data.draw(st.integers(c0 + 1, columns))
    layout = {**layout, "byteorder": byteorder}
    with tempfile.TemporaryDirectory() as tmp, tifffile.TiffFile(_tiff(Path(tmp), image, layout)) as tif:
        out = np.full((samples, r1 - r0, c1 - c0), 7, np.uint16)
        read_region(tif, (), (r0, r1), (c0, c1), out)
        assert np.array_equal(out, whole[:, r0:r1, c0:c1])


def test_regions_of_jpeg_tiles_and_of_other_kinds_of_section(tmp_path):
    """JPEG-compressed tiles (tables shared by the page) decode as the whole page does; a PNG
    section, which cannot be read by region, is decoded whole and cut, into another type; a
    page of one compressed strip says it is read whole."""
    rng = np.random.default_rng(4)
    image = (np.add.outer(np.arange(77), np.arange(93)) + rng.integers(0, 9, (77, 93))).astype(np.uint8)
    jpeg = Slice(str(_tiff(tmp_path, image, {"tile": (32, 16), "compression": "jpeg"})))
    whole = tifffile.imread(jpeg.file)
    png = tmp_path / "section.png"
    imagecodecs.imwrite(png, image)
    assert probe(jpeg).regions and not probe(Slice(str(png))).regions
    one_strip = Slice(str(tmp_path / "strip.tif"))
    tifffile.imwrite(one_strip.file, image, rowsperstrip=77, compression="zlib")
    (tmp_path / "raw").mkdir()
    assert not probe(one_strip).regions and probe(Slice(str(_tiff(tmp_path / "raw", image, {})))).regions
    for r0, r1, c0, c1 in [(0, 77, 0, 93), (31, 33, 15, 17), (76, 77, 80, 93)]:
        out = np.zeros((1, r1 - r0, c1 - c0), np.uint8)
        decode_region(jpeg, (r0, r1), (c0, c1), out)
        assert np.array_equal(out[0], whole[r0:r1, c0:c1])
        cut = np.zeros((1, r1 - r0, c1 - c0), np.float32)
        decode_region(Slice(str(png)), (r0, r1), (c0, c1), cut)
        assert np.array_equal(cut[0], image[r0:r1, c0:c1])


def test_the_big_tiff_stack_generator_makes_a_stack_that_converts(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "make_bigtiff_stack.py"), str(tmp_path / "big"),
                          "--sections", "3", "--width", "130", "--height", "100", "--tile", "32"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    files = sorted((tmp_path / "big").glob("*.tif"))
    assert len(files) == 3
    with tifffile.TiffFile(files[0]) as tif:
        page = tif.pages[0]
        assert tif.is_bigtiff and page.is_tiled and page.shape == (100, 130) and page.compression != 1
    streamconv.convert(tmp_path / "big", tmp_path / "out", workers=0, resolution="1um")
    expected = np.stack([tifffile.imread(f) for f in files], axis=-1).transpose(1, 0, 2)
    assert np.array_equal(read_all(tmp_path / "out")[..., 0], expected)


@pytest.mark.parametrize("code", ["RAS", "LPI", "ILP", "ASR"])
def test_a_stack_reads_a_region_as_its_planes_cut(tmp_path, code):
    """`SliceStack.read_region` in every arrangement of the axes: tiled TIFF sections (read by
    region) and PNG sections (decoded whole and cut) give the planes `read` gives, cut; a gap is
    filled."""
    from streamconv.format.geometry import Box
    from streamconv.sources import SliceStack

    rng = np.random.default_rng(6)
    planes = rng.integers(0, 255, (7, 45, 38), dtype=np.uint8)
    for kind in ("tif", "png"):
        directory = tmp_path / kind
        directory.mkdir()
        for z, plane in enumerate(planes):
            if z == 3:
                continue  # a gap, filled
            if kind == "tif":
                tifffile.imwrite(directory / f"s{z}.tif", plane, tile=(16, 16), compression="zlib")
            else:
                imagecodecs.imwrite(directory / f"s{z}.png", plane)
        stack = SliceStack(str(directory), code, (1.0, 1.0, 1.0), fill_missing=5)
        assert stack.reads_regions == (kind == "tif")
        x, y, z = stack.shape
        whole = np.empty((1, z, y, x), np.uint8)
        for p0 in range(stack.shape[stack.stream_axis]):
            start, stop = [0, 0, 0], list(stack.shape)
            start[stack.stream_axis], stop[stack.stream_axis] = p0, p0 + 1
            box = Box(tuple(start), tuple(stop))  # type: ignore[arg-type]
            stack.read_region(box, whole[box.index()])
        for start, stop in [((0, 0, 0), (x, y, z)), ((1, 2, 3), (x - 1, y - 2, z)), ((x - 1, y - 1, z - 1), (x, y, z)),
                            ((5, 0, 2), (6, y, 4))]:
            box = Box(start, stop)
            out = np.zeros((1, *reversed(box.shape)), np.uint8)
            stack.read_region(box, out)
            assert np.array_equal(out, whole[box.index()]), (kind, box)
        p0, p1 = 2, 5
        full = np.zeros((1, z, y, x), np.uint8)
        cut: list[slice] = [slice(None)] * 4
        cut[3 - stack.stream_axis] = slice(p0, p1)
        stack.read(p0, p1, full[tuple(cut)])
        assert np.array_equal(full[tuple(cut)], whole[tuple(cut)])
        stack.close()


@pytest.mark.parametrize("layout", [{"tile": (256, 256), "compression": "zlib"}, {}])
def test_a_small_region_of_a_big_page_is_read_in_little_memory(tmp_path, layout):
    """A 100 x 100 region of a 16 MiB page (tiled and compressed, or one uncompressed strip as
    tifffile writes it) holds a few tiles or the region's rows, not the page."""
    import tracemalloc

    side = 4096
    image = (np.add.outer(np.arange(side) // 7, np.arange(side) // 3) % 251).astype(np.uint8)
    tifffile.imwrite(tmp_path / "big.tif", image, bigtiff=True, **layout)
    out = np.zeros((1, 100, 100), np.uint8)
    with tifffile.TiffFile(tmp_path / "big.tif") as tif:
        tracemalloc.start()
        read_region(tif, (), (2000, 2100), (3000, 3100), out)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert np.array_equal(out[0], image[2000:2100, 3000:3100])
    assert peak < 1 << 20, peak  # a few tiles of 64 KiB and their compressed bytes
