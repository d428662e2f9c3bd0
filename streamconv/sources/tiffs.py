"""TIFF sections: a multi-page TIFF, an ImageJ hyperstack or an OME-TIFF as a stack, and a TIFF
section read whole or by region.

Which pages make the stack: an ImageJ or OME-TIFF file (or a tifffile-written file of one
series) is read through tifffile's first series at its largest level (`series[0].levels[0]`), by
its axes: Z is the stack axis (or the one other axis longer than 1: I, Q, ...), C the channels
(one page each), and a time series (T > 1) is refused in one line rather than guessed at.
Any other multi-page TIFF is a stack of its full-resolution pages, in order (reduced-resolution
pages, thumbnails and pyramid levels, are skipped). Why: the same planes given as a directory of
single-page sections convert to the same volume (webknossos-libs#161: peers convert page 0).

A region of a tiled or striped page is read by decoding only the tiles or strips it meets
(`read_region`): a section of 32768 x 32768 is then never held whole to fill one tile of a slab.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..errors import DataError, one_line
from ..format.geometry import LENGTH_NM
from .files import InputFile


def tiff_file(file: InputFile) -> Any:
    """A TiffFile of a section: by name on this machine, else on ranged reads."""
    import tifffile

    return tifffile.TiffFile(file.local_path or file.open())


#: multi-page TIFFs kept open by `stack_file`, by (process, thread, name, identity)
_KEPT: dict[tuple, Any] = {}
KEEP_OPEN = 2


@contextmanager
def stack_file(file: InputFile) -> Iterator[Any]:
    """A TiffFile of a multi-page TIFF, kept open for the next section of the same file:
    tifffile finds page k by walking the k pages before it once per open file, so a stack of
    n pages opened once per section costs n^2/2 page headers (2,000 local pages: 10 s to check
    them; behind a URL, a ranged request each). Kept per process and thread (a TiffFile's reads
    seek), and only while the file's identity (size and mtime, or version) is the one it was
    opened with; `release` closes them."""
    key = (os.getpid(), threading.get_ident(), file.name, tuple(sorted(file.identity().items())))
    tif = _KEPT.pop(key, None) or tiff_file(file)
    try:
        yield tif
    except BaseException:
        tif.close()
        raise
    _KEPT[key] = tif  # the most recent last
    while len(_KEPT) > KEEP_OPEN:
        _KEPT.pop(next(iter(_KEPT))).close()


def release() -> None:
    """Close the TIFFs `stack_file` keeps open in this process."""
    for key in [k for k in _KEPT if k[0] == os.getpid()]:
        _KEPT.pop(key).close()


def tiff_sections(file: InputFile) -> list[tuple[int, ...] | None]:
    """The sections of a TIFF, in order: the pages of each (one per channel), None for a plane
    an OME-TIFF does not hold; `[()]` for a file of one page (the section is the file)."""
    path = file.name
    try:
        with tiff_file(file) as tif:
            if tif.is_imagej or tif.is_ome or (tif.is_shaped and len(tif.series) == 1):
                sections = _series_sections(tif, path)
            else:
                sections = [(p.index,) for p in tif.pages if not p.subfiletype & 1]
    except DataError:
        raise
    except Exception as exc:  # tifffile raises several kinds for a bad file
        raise DataError(f"{path}: not a readable TIFF ({one_line(exc)})") from exc
    if not sections:
        raise DataError(f"{path}: no full-resolution page (every page is marked reduced)")
    return sections if len(sections) > 1 or sections[0] != (0,) else [()]


def _series_sections(tif: Any, path: str) -> list[tuple[int, ...] | None]:
    """Sections of a file with axes: ImageJ, OME or tifffile's own (`shaped`)."""
    series = tif.series[0].levels[0]
    axes, shape = series.get_axes(False), series.get_shape(False)
    outer = [(a, n) for a, n in zip(axes, shape) if a not in "YXS"]
    sizes = dict(outer)
    if sizes.get("T", 1) > 1:
        frames = " (if they are sections, make them slices: ImageJ's Image > Properties)" \
            if sizes.get("Z", 1) == 1 else ""
        raise DataError(f"{path}: a time series ({sizes['T']} time points, axes {series.axes}); "
                        f"streamconv converts one volume: save one time point as its own file{frames}")
    stacked = [a for a, n in outer if n > 1 and a not in "TC"]
    if len(stacked) > 1:
        raise DataError(f"{path}: more than one stack axis ({', '.join(stacked)} in {series.axes}); "
                        "save one of them as its own file")
    pages = series.pages
    # ImageJ's files over 4 GiB list their first page only, the planes one after the other
    contiguous = tif.is_imagej and len(pages) == 1 and series.dataoffset is not None
    if math.prod(n for _, n in outer) != len(pages) and not contiguous:
        raise DataError(f"{path}: its pages ({len(pages)}) do not hold every plane of its "
                        f"axes {series.axes} {series.shape}")
    channels = sizes.get("C", 1)
    if channels > 1 and series.keyframe.samplesperpixel > 1:
        raise DataError(f"{path}: both channels (C) and samples per pixel (S) in {series.axes}; "
                        "streamconv reads one of them as the channels")
    stack = stacked[0] if stacked else None
    sections: list[tuple[int, ...] | None] = []
    for z in range(sizes[stack] if stack else 1):
        found = []
        for c in range(channels):
            at = {stack: z, "C": c}
            flat = int(np.ravel_multi_index([at.get(a, 0) for a, _ in outer], [n for _, n in outer]))
            if contiguous:
                found.append(flat)
                continue
            page = pages[flat]
            if page is None:
                break
            if page.parent is not tif or not isinstance(page.index, int):
                raise DataError(f"{path}: its planes lie in other files or sub-IFDs; "
                                "convert the file that holds them")
            found.append(page.index)
        sections.append(tuple(found) if len(found) == channels else None)
    return sections


def voxel_size(tif: Any) -> tuple[float, float, float] | None:
    """(column, row, section) sizes in nm from OME's physical sizes, or from the resolution tags
    and ImageJ's slice spacing; None unless all three are recorded."""
    if tif.is_ome:
        import tifffile

        image = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
        pixels = (image[0] if isinstance(image, list) else image)["Pixels"]
        sizes = []
        for axis in "XYZ":
            unit = LENGTH_NM.get(str(pixels.get(f"PhysicalSize{axis}Unit", "µm")).replace("μ", "µ"))
            value = pixels.get(f"PhysicalSize{axis}")
            if value is None or unit is None or not float(value) > 0:
                return None
            sizes.append(unit * float(value))
        return sizes[0], sizes[1], sizes[2]
    tags = tif.pages[0].tags
    meta = tif.imagej_metadata or {}
    unit_tag = tags.get("ResolutionUnit")
    unit = {2: 25.4e6, 3: 1e7}.get(int(unit_tag.value) if unit_tag else 2)
    if meta.get("unit") is not None:
        unit = LENGTH_NM.get(str(meta["unit"]).replace("μ", "µ").replace("\\u00B5", "µ"))
    sizes = []
    for name in ("XResolution", "YResolution"):
        tag = tags.get(name)
        if tag is None or unit is None or not tag.value[0]:
            return None
        sizes.append(unit * tag.value[1] / tag.value[0])
    spacing = meta.get("spacing")
    if spacing is None or unit is None:
        return None
    return sizes[0], sizes[1], unit * float(spacing)


def plane(tif: Any, index: int) -> Any:
    """Page `index` of a TIFF; past the pages it lists, in an ImageJ file that lists its first
    page only (ImageJ's files over 4 GiB), its plane `index` after the first page's data."""
    try:
        return tif.pages[index]
    except IndexError:
        if not tif.is_imagej or tif.pages[0].compression != 1 or tif.pages[0].planarconfig == 2:
            raise DataError(f"the file has no page {index}") from None
        return _Plane(tif.pages[0], index)


class _Plane:
    """A plane of an ImageJ file over 4 GiB, where no page lists it: what the readers here ask
    of a page, the first page's layout at its own offset."""

    compression = predictor = fillorder = 1
    is_tiled = False

    def __init__(self, first: Any, index: int) -> None:
        self.keyframe, self.parent, self.index = self, first.parent, index
        self.imagelength, self.imagewidth = int(first.imagelength), int(first.imagewidth)
        self.samplesperpixel, self.dtype = int(first.samplesperpixel), np.dtype(first.dtype)
        self.planarconfig, self.bitspersample = first.planarconfig, first.bitspersample
        self.sampleformat, self.nodata, self.imagedepth = first.sampleformat, first.nodata, 1
        self.rowsperstrip = self.imagelength
        size = self.imagelength * self.imagewidth * self.samplesperpixel * np.dtype(self.dtype).itemsize
        self.dataoffsets, self.databytecounts = (first.dataoffsets[0] + index * size,), (size,)

    def asarray(self, out: np.ndarray | None = None) -> np.ndarray:
        values = np.empty((self.samplesperpixel, self.imagelength, self.imagewidth), self.dtype)
        _raw_region(self, (0, self.imagelength), (0, self.imagewidth), values, False)
        image = np.moveaxis(values, 0, -1)
        image = image[..., 0] if self.samplesperpixel == 1 else image
        if out is None:
            return image
        out[...] = image
        return out


def page_layout(tif: Any, pages: tuple[int, ...]) -> tuple[int, int, int, str]:
    """(rows, columns, channels, dtype) of a section made of `pages` (one per channel, or one
    page of samples); its pages must agree."""
    first = plane(tif, pages[0] if pages else 0)
    layout = (int(first.imagelength), int(first.imagewidth), int(first.samplesperpixel), np.dtype(first.dtype).name)
    for index in pages[1:]:
        page = plane(tif, index)
        other = (int(page.imagelength), int(page.imagewidth), int(page.samplesperpixel), np.dtype(page.dtype).name)
        if other != layout:
            raise DataError(f"page {index} ({other}) differs from page {pages[0]} ({layout}) of the same section")
    return layout[0], layout[1], layout[2] * max(1, len(pages)), layout[3]


def truncated(tif: Any, pages: tuple[int, ...], size: int) -> bool:
    """Whether the pixel data of these pages runs past the end of a file of `size` bytes."""
    return any(o + n > size for k in pages or (0,)
               for o, n in zip(plane(tif, k).dataoffsets, plane(tif, k).databytecounts))


def decode_pages(tif: Any, pages: tuple[int, ...], out: np.ndarray | None = None) -> np.ndarray:
    """A section as (rows, columns, channels), into `out` (C-contiguous) when given."""
    import tifffile

    if len(pages) > 1:  # one page per channel
        planes = [plane(tif, k).asarray() for k in pages]
        image = np.stack(planes, axis=-1) if out is None else out
        if out is not None:
            for c, values in enumerate(planes):
                out[..., c] = values
        return image
    page = plane(tif, pages[0] if pages else 0)
    if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and page.samplesperpixel > 1:
        # Samples stored plane after plane: (samples, rows, columns), to move.
        image = np.moveaxis(page.asarray(), 0, -1)
        if out is not None:
            out[...] = image
        return image
    return page.asarray(out=out)


def read_region(tif: Any, pages: tuple[int, ...], rows: tuple[int, int], columns: tuple[int, int],
                out: np.ndarray) -> None:
    """Fill `out`, (channels, rows, columns), with rows [r0, r1) and columns [c0, c1) of a section
    made of `pages`, decoding only the tiles or strips that meet them."""
    samples = out.shape[0] // max(1, len(pages))
    for k, index in enumerate(pages or (0,)):
        _page_region(plane(tif, index), rows, columns, out[k * samples:(k + 1) * samples])


def by_region(tif: Any, pages: tuple[int, ...]) -> bool:
    """Whether `read_region` reads a region of these pages for the price of the region: tiles,
    strips shorter than the page, or uncompressed rows; not a page of one compressed strip."""
    key = plane(tif, pages[0] if pages else 0).keyframe
    return bool(key.is_tiled) or int(key.rowsperstrip) < int(key.imagelength) or _raw_rows(key)


def _raw_rows(key: Any) -> bool:
    """Whether a page's rows lie uncompressed in strips, each readable where it lies."""
    return key.compression == 1 and not key.is_tiled and key.predictor == 1 and key.fillorder == 1 \
        and key.bitspersample in (8, 16, 32, 64) and key.sampleformat in (1, 2, 3)


def _page_region(page: Any, rows: tuple[int, int], columns: tuple[int, int], out: np.ndarray) -> None:
    """One page's region: the segments (tiles or strips) it meets, read in file order, decoded
    by tifffile's own decoder of that page, each cropped into `out` (samples, rows, columns)."""
    key = page.keyframe
    (r0, r1), (c0, c1) = rows, columns
    height, width, samples = int(key.imagelength), int(key.imagewidth), int(key.samplesperpixel)
    if key.imagedepth > 1:
        raise DataError("volumetric TIFF tiles (ImageDepth > 1) are not supported")
    separate = key.planarconfig == 2 and samples > 1
    if _raw_rows(key):
        _raw_region(page, rows, columns, out, separate)
        return
    if key.is_tiled:
        seg_rows, seg_cols = int(key.tilelength), int(key.tilewidth)
    else:
        seg_rows, seg_cols = min(int(key.rowsperstrip), height) or height, width
    down, across = math.ceil(height / seg_rows), math.ceil(width / seg_cols)
    wanted = [(s * down + i) * across + j
              for s in (range(samples) if separate else range(1))
              for i in range(r0 // seg_rows, math.ceil(r1 / seg_rows))
              for j in range(c0 // seg_cols, math.ceil(c1 / seg_cols))]
    offsets, counts = page.dataoffsets, page.databytecounts
    args: dict[str, Any] = {"_fullsize": bool(key.is_tiled)}
    if key.compression in {6, 7, 34892, 33007}:  # JPEG: tables shared by the segments
        args.update(jpegtables=page.jpegtables, jpegheader=key.jpegheader)
    decode = key.decode
    for data, index in page.parent.filehandle.read_segments(
            [offsets[i] for i in wanted], [counts[i] for i in wanted], indices=wanted, sort=True, flat=True):
        segment, (s, _, top, left, _), _shape = decode(data if counts[index] else None, index, **args)
        y0, y1 = max(r0, top), min(r1, top + seg_rows, height)
        x0, x1 = max(c0, left), min(c1, left + seg_cols, width)
        target = out[s:s + 1] if separate else out
        if segment is None:  # an empty segment: the page's fill value
            target[:, y0 - r0:y1 - r0, x0 - c0:x1 - c0] = key.nodata
            continue
        part = segment[0, y0 - top:y1 - top, x0 - left:x1 - left]  # (rows, columns, contig samples)
        target[:, y0 - r0:y1 - r0, x0 - c0:x1 - c0] = np.moveaxis(part, -1, 0)


def _raw_region(page: Any, rows: tuple[int, int], columns: tuple[int, int], out: np.ndarray,
                separate: bool) -> None:
    """Uncompressed strips (tifffile writes a page as one): the region's part of each row read
    from where it lies, so a region of a page of one strip never reads the page."""
    key = page.keyframe
    (r0, r1), (c0, c1) = rows, columns
    height, width = int(key.imagelength), int(key.imagewidth)
    dtype = np.dtype(page.parent.byteorder + key.dtype.char)
    per_pixel = dtype.itemsize * (1 if separate else int(key.samplesperpixel))
    strip = min(int(key.rowsperstrip), height) or height
    strips = math.ceil(height / strip)
    offsets, counts, wanted, where = page.dataoffsets, page.databytecounts, [], []
    for s in range(out.shape[0] if separate else 1):
        for r in range(r0, r1):
            index = s * strips + r // strip
            start = (r % strip * width + c0) * per_pixel
            if counts[index] < start + (c1 - c0) * per_pixel:
                raise DataError(f"strip {index} holds {counts[index]} bytes, fewer than its rows")
            wanted.append((offsets[index] + start, (c1 - c0) * per_pixel))
            where.append((s, r - r0))
    for data, k in page.parent.filehandle.read_segments(
            [o for o, _ in wanted], [n for _, n in wanted], indices=range(len(wanted)), sort=True, flat=True):
        s, row = where[k]
        values = np.frombuffer(data, dtype).reshape(c1 - c0, -1)  # (columns, contig samples)
        (out[s:s + 1] if separate else out)[:, row] = values.T
