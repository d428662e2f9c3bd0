"""The sections of a slice stack: listing them (a directory, a glob, a list file, a multi-page
TIFF, or the same in a bucket), and probing and decoding one section. `stack.py` puts them
together into a volume.
"""

from __future__ import annotations

import glob
import logging
import posixpath
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, one_line
from ..format import dtypes
from ..stores import Location
from .files import InputFile, open_input
from .tiffs import (
    by_region,
    decode_pages,
    page_layout,
    plane,
    read_region,
    stack_file,
    tiff_file,
    tiff_sections,
    truncated,
)

log = logging.getLogger("streamconv")

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".jp2", ".j2k", ".webp")
_TIFF = (".tif", ".tiff")
WARN_SECTIONS = 5  # unreadable sections named one by one; past these, counted
# The decoder of each suffix: imagecodecs given no codec tries every one it has, and its error
# is then a list of every codec's failure instead of the one that matters.
_CODECS = {".png": "png", ".jpg": "jpeg8", ".jpeg": "jpeg8", ".jp2": "jpeg2k", ".j2k": "jpeg2k",
           ".webp": "webp"}
# What a file of each suffix starts with: a file that does not is not damaged, it is another kind.
_MAGIC = {".png": (b"\x89PNG\r\n\x1a\n",), ".jpg": (b"\xff\xd8",), ".jpeg": (b"\xff\xd8",),
          ".webp": (b"RIFF",), ".jp2": (b"\x00\x00\x00\x0cjP", b"\xff\x4f\xff\x51"),
          ".j2k": (b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP")}
_LISTS = (".txt", ".lst", ".list")
_PIL_MODES = {"L": ("uint8", 1), "LA": ("uint8", 2), "RGB": ("uint8", 3), "RGBA": ("uint8", 4),
              "I;16": ("uint16", 1), "I;16B": ("uint16", 1), "I;16L": ("uint16", 1),
              "I": ("int32", 1), "F": ("float32", 1)}


class SectionError(DataError):
    """A section that cannot be read (missing, truncated, not what its name says, damaged pixel
    data): the message names its file and says what to do; with `--fill-missing` the section is
    filled instead, and the warning says `reason` only (the hint would be wrong there)."""

    def __init__(self, section: str, reason: str) -> None:
        super().__init__(f"{section}: {reason}; replace it, or pass --fill-missing VALUE to fill "
                         "its section")
        self.section, self.reason = section, reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # raised in a worker, read in the main process
        return SectionError, (self.section, self.reason)


@dataclass(frozen=True)
class Slice:
    """One section: a file, a page of a multi-page TIFF (and those of its other channels, in a
    hyperstack), or a gap to fill (path None)."""

    path: str | None
    page: int | None = None
    channel_pages: tuple[int, ...] = ()

    @property
    def pages(self) -> tuple[int, ...]:
        """Its pages in a TIFF: one per channel, or one holding every sample; () for a file of
        one page."""
        return () if self.page is None else (self.page, *self.channel_pages)

    @property
    def file(self) -> str:
        """The file of a section that is not a gap."""
        if self.path is None:
            raise DataError("a missing section has no file")
        return self.path

    @property
    def name(self) -> str:
        return f"{self.path} (page {self.page})" if self.page is not None else str(self.path)


@dataclass(frozen=True)
class Layout:
    """A section's shape and type, which every section of a stack shares, and what its file
    declares about reading it: `regions`, whether an in-plane region is read for the price of
    the region (a tiled or striped TIFF) rather than by decoding the whole section."""

    rows: int
    columns: int
    channels: int
    dtype: str
    regions: bool = field(default=False, compare=False)


def natural_key(text: str) -> list:
    """Sort key that puts s2.png before s10.png."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def is_stack(spec: str) -> bool:
    """Whether an input names a slice stack rather than a volume file (a URL: by its name,
    a directory, a glob, a list or an image)."""
    if not Location.of(spec).is_local:
        suffix = posixpath.splitext(spec.rstrip("/"))[1].lower()
        return spec.endswith("/") or any(c in spec for c in "*?[") or suffix in ("", *_LISTS, *IMAGE_SUFFIXES)
    path = Path(spec)
    if any(c in spec for c in "*?[") and not path.exists():
        return True
    if path.is_dir():
        return True
    suffix = path.suffix.lower()
    return suffix in _LISTS or suffix in IMAGE_SUFFIXES


def list_slices(spec: str, fill_missing: bool) -> list[Slice]:
    """The sections of a stack, in order, from a directory, a glob, a list file or a TIFF."""
    if not Location.of(spec).is_local:
        return _remote_slices(spec, fill_missing)
    try:
        return _local_slices(spec, fill_missing)
    except PermissionError as exc:  # a directory or list we may not read: not an internal error
        raise DataError(f"{exc.filename or spec}: permission denied; make it readable to this user") from None


def _local_slices(spec: str, fill_missing: bool) -> list[Slice]:
    path = Path(spec)
    if path.is_dir():
        files = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        origin = f"directory {path}"
    elif path.suffix.lower() in _LISTS and path.is_file():
        lines = [line.strip() for line in path.read_text().splitlines()]
        return [Slice(str(path.parent / line)) for line in lines if line and not line.startswith("#")] \
            or _empty(f"list {path}")
    elif path.suffix.lower() in _TIFF and path.is_file():
        return _tiff_slices(str(path), fill_missing)
    elif path.exists():
        files = [path]
        origin = str(path)
    else:
        files = [Path(p) for p in glob.glob(spec) if Path(p).is_file()]
        if not any(c in spec for c in "*?["):
            raise DataError(f"{spec}: no such file or directory")
        origin = f"pattern {spec!r}"
    if not files:
        _empty(origin)
    files.sort(key=lambda p: natural_key(p.name))
    return _with_gaps([str(p) for p in files], fill_missing)


def _remote_slices(url: str, fill_missing: bool) -> list[Slice]:
    """The sections below a URL: a directory, a glob or a list file (names relative to it); one
    listing, each section read only when a task decodes it."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    suffix = posixpath.splitext(path)[1].lower()
    if suffix in _LISTS:
        lines = [line.strip() for line in fs.cat_file(path).decode().splitlines()]
        base = url.rsplit("/", 1)[0]
        return [Slice(f"{base}/{line}") for line in lines if line and not line.startswith("#")] \
            or _empty(f"list {url}")
    if suffix in _TIFF and not any(c in url for c in "*?["):
        return _tiff_slices(url, fill_missing)
    names = fs.glob(path) if any(c in url for c in "*?[") else [path] if suffix else fs.ls(path, detail=False)
    files = [fs.unstrip_protocol(n) for n in names if posixpath.splitext(n)[1].lower() in IMAGE_SUFFIXES]
    if not files:
        _empty(url)
    files.sort(key=lambda f: natural_key(posixpath.basename(f)))
    return _with_gaps(files, fill_missing)


def _empty(origin: str) -> list[Slice]:
    raise DataError(f"{origin} holds no sections ({', '.join(IMAGE_SUFFIXES)})")


def _tiff_slices(path: str, fill_missing: bool) -> list[Slice]:
    """The sections of a TIFF, local or remote: its pages, or an ImageJ or OME-TIFF's planes
    (tiffs.py)."""
    sections = tiff_sections(open_input(path))
    missing = [z for z, pages in enumerate(sections) if pages is None]
    if missing and not fill_missing:
        raise DataError(f"{path}: planes {', '.join(map(str, missing[:3]))}"
                        f"{' and more' if len(missing) > 3 else ''} are missing from the file; "
                        "pass --fill-missing VALUE to fill them")
    return [Slice(None) if pages is None else Slice(path, pages[0], pages[1:]) if pages else Slice(path)
            for pages in sections]


def _with_gaps(files: list[str], fill_missing: bool) -> list[Slice]:
    """Sections in order; numbered names with a hole in their sequence are missing sections."""
    matches = [re.fullmatch(r"(.*?)(\d+)(\D*)", posixpath.basename(f)) for f in files]
    numbered = [m for m in matches if m is not None]
    slices = [Slice(f) for f in files]
    if len(files) < 2 or len(numbered) < len(files) or len({(m.group(1), m.group(3)) for m in numbered}) != 1:
        return slices
    numbers = [int(m.group(2)) for m in numbered]
    step = 0
    for a, b in zip(numbers, numbers[1:]):
        step = gcd(step, b - a)
    if step == 0:
        return slices
    present = dict(zip(numbers, slices))
    missing = [n for n in range(numbers[0], numbers[-1] + 1, step) if n not in present]
    if missing and not fill_missing:
        m = numbered[0]
        names = ", ".join(f"{m.group(1)}{n:0{len(m.group(2))}d}{m.group(3)}" for n in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DataError(f"sections missing from the numbered series in {posixpath.dirname(files[0]) or '.'}: "
                        f"{names}{more}; pass --fill-missing VALUE to fill them")
    if missing:
        log.warning("filling %d missing sections: %s", len(missing), ", ".join(map(str, missing[:10])))
    return [present.get(n, Slice(None)) for n in range(numbers[0], numbers[-1] + 1, step)]


class SectionFormat:
    """How sections of one kind of file are read; its `probe` declares whether a section reads
    an in-plane region without decoding the whole section (`Layout.regions`). This one decodes
    PNG, JPEG, JPEG 2000 and WebP whole (imagecodecs has no region decoding for any of them)."""

    def probe(self, s: Slice, file: InputFile) -> Layout:
        _check_complete(file)
        from PIL import Image

        with file.open() as f, Image.open(f) as img:
            if img.mode not in _PIL_MODES:
                raise SectionError(s.name, f"image mode {img.mode} is not supported "
                                   "(grey, grey+alpha, RGB, RGBA; 8 or 16 bits)")
            dtype, channels = _PIL_MODES[img.mode]
            return Layout(img.height, img.width, channels, dtype)

    def decode(self, s: Slice, file: InputFile, out: np.ndarray | None) -> np.ndarray:
        import imagecodecs

        codec = _CODECS.get(posixpath.splitext(file.name)[1].lower())
        data = file.local_path or file.read()
        return imagecodecs.imread(data, out=out, codec=codec) if codec else imagecodecs.imread(data, out=out)

    def read_region(self, s: Slice, file: InputFile, rows: tuple[int, int], columns: tuple[int, int],
                    out: np.ndarray) -> None:
        image = self.decode(s, file, None)
        image = image.reshape(image.shape[:2] + (-1,))[rows[0]:rows[1], columns[0]:columns[1]]
        dtypes.cast_into(np.moveaxis(image, 2, 0), out)


class TiffFormat(SectionFormat):
    """TIFF and BigTIFF, a page or a hyperstack's pages: a region decodes only the tiles or
    strips it meets (tiffs.py)."""

    def probe(self, s: Slice, file: InputFile) -> Layout:
        with self._open(s, file) as tif:
            try:
                rows, columns, channels, dtype = page_layout(tif, s.pages)
            except DataError as exc:
                raise SectionError(s.name, str(exc)) from None
            if truncated(tif, s.pages, file.size()):
                raise SectionError(s.name, "file is truncated (image data runs past its end)")
            return Layout(rows, columns, channels, dtype, by_region(tif, s.pages))

    def decode(self, s: Slice, file: InputFile, out: np.ndarray | None) -> np.ndarray:
        with self._open(s, file) as tif:
            return decode_pages(tif, s.pages, out)

    def read_region(self, s: Slice, file: InputFile, rows: tuple[int, int], columns: tuple[int, int],
                    out: np.ndarray) -> None:
        with self._open(s, file) as tif:
            dtype = np.dtype(plane(tif, s.page or 0).dtype)
            if dtype == out.dtype:
                read_region(tif, s.pages, rows, columns, out)
                return
            part = np.empty(out.shape, dtype)
            read_region(tif, s.pages, rows, columns, part)
        dtypes.cast_into(part, out)

    @staticmethod
    def _open(s: Slice, file: InputFile) -> AbstractContextManager[Any]:
        """A page of a multi-page file: through the file kept open for its next page."""
        return stack_file(file) if s.page is not None else tiff_file(file)


_IMAGES, _TIFFS = SectionFormat(), TiffFormat()


def section_format(s: Slice) -> SectionFormat:
    """The reader of a section's kind of file, by its name."""
    return _TIFFS if s.file.lower().endswith(_TIFF) else _IMAGES


def probe(s: Slice) -> Layout:
    """Shape, type and channels from the header, after a check that the file is complete; a
    section that cannot be read raises a `SectionError`."""
    file = open_input(s.file)
    if not file.exists():
        raise SectionError(s.name, "section file is missing")
    try:
        return section_format(s).probe(s, file)
    except SectionError:
        raise
    except PermissionError:
        raise SectionError(s.name, "permission denied (make it readable to this user)") from None
    except Exception as exc:  # decoders raise many kinds for a damaged file
        raise SectionError(s.name, f"cannot read the image ({one_line(exc)})") from exc


def _check_complete(file: InputFile) -> None:
    """Truncation shows at the end of the file: PNG ends with IEND, JPEG with EOI, WebP in RIFF."""
    suffix = posixpath.splitext(file.name)[1].lower()
    size = file.size()
    tail, head = bytearray(min(size, 32)), bytearray(min(size, 12))
    file.pread(memoryview(tail), size - len(tail))
    file.pread(memoryview(head), 0)
    if suffix in _MAGIC and not bytes(head).startswith(_MAGIC[suffix]):
        kind = suffix.lstrip(".").upper()
        raise SectionError(file.name, f"not a {kind} file (it does not start as one)")
    ok = True
    if suffix == ".png":
        ok = tail.endswith(b"IEND\xaeB`\x82")
    elif suffix in (".jpg", ".jpeg"):
        ok = b"\xff\xd9" in tail
    elif suffix == ".webp" and head[:4] == b"RIFF":
        ok = int.from_bytes(head[4:8], "little") + 8 <= size
    if not ok:
        raise SectionError(file.name, "file is truncated")


def decode(s: Slice, out: np.ndarray | None = None) -> np.ndarray:
    """The pixels of a section as (rows, columns, channels); into `out` (the decoder's own
    shape and type, C-contiguous) when given."""
    try:
        image = section_format(s).decode(s, open_input(s.file), out)
    except Exception as exc:  # decoders raise many kinds for a damaged file
        raise SectionError(s.name, f"cannot decode the image ({one_line(exc)[:160]})") from exc
    return image.reshape(image.shape[:2] + (-1,))


def decode_region(s: Slice, rows: tuple[int, int], columns: tuple[int, int], out: np.ndarray) -> None:
    """Fill `out`, (channels, rows, columns) of any type, with rows [r0, r1) and columns
    [c0, c1) of a section: by region where its file can (`Layout.regions`),
    else decoded whole and cut."""
    try:
        section_format(s).read_region(s, open_input(s.file), rows, columns, out)
    except Exception as exc:  # decoders raise many kinds for a damaged file
        raise SectionError(s.name, f"cannot decode the image ({one_line(exc)[:160]})") from exc
