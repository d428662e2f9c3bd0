"""Slice stacks: thousands of 2-D sections (TIFF, PNG, JPEG, JPEG 2000, WebP) as one volume.

Every section is checked before anything is written: it exists, its header reads, it is not
truncated, and its shape, type and channel count match the others. Sections are decoded in the
workers, each straight into the shared slab, in the orientation the code asks for.
"""

from __future__ import annotations

import copy
import logging

import numpy as np

from ..errors import DataError, UsageError
from ..format import dtypes
from ..format.geometry import LENGTH_NM, Box, Vec3, array_axis, triple
from .base import MemoryOrder, read_region_by_planes
from .files import open_input
from .orientation import Orientation
from .placement import Placement, stack_placement
from .sections import (
    _TIFF,
    WARN_SECTIONS,
    Layout,
    SectionError,
    Slice,
    decode,
    is_stack,
    list_slices,
    probe,
    tiff_file,
)

log = logging.getLogger("streamconv")


__all__ = ["SliceStack", "is_stack"]


class FilledSections(logging.Filter):
    """The warnings of the sections a stack fills, in the main process: the first few pass, by
    name; the rest are counted, and `summary` says how many. The sections found damaged while a
    worker decodes them arrive here too (engine/worklog.py), so the count is exact."""

    def __init__(self, spec: str, value: float) -> None:
        super().__init__()
        self.spec, self.value, self.count = spec, value, 0

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "filled_in", None) != self.spec:  # not this stack's
            return True
        self.count += 1
        return self.count <= WARN_SECTIONS

    def summary(self) -> None:
        if self.count > WARN_SECTIONS:
            log.warning("... and %d more sections filled with %g", self.count - WARN_SECTIONS, self.value)


class SliceStack:
    """A stack of sections; planes along the slice axis are read in parallel by the workers."""

    parallel_reads = True
    reads_regions = False  # PNG, JPEG, WebP decode whole sections (tiled TIFF: issue 25's stacks)

    def __init__(self, spec: str, orientation: str = "RAS",
                 resolution: tuple[float, float, float] | None = None,
                 fill_missing: float | None = None) -> None:
        self.spec = spec
        self.orientation = Orientation.parse(orientation)
        self._code = orientation
        self.slices = list_slices(spec, fill_missing is not None)
        self._count, self._first = len(self.slices), 0  # every section; the first one held
        self.fill_value = fill_missing
        self._filled = None if fill_missing is None else FilledSections(spec, fill_missing)
        if self._filled is not None:
            log.addFilter(self._filled)  # until `close`
        try:
            self._open(resolution)
        except BaseException:
            self.close()
            raise

    def _open(self, resolution: tuple[float, float, float] | None) -> None:
        """The volume the sections make, from their headers (apart from `__init__` so that a
        failure closes the stack: its warning filter must not outlive it)."""
        fill_missing = self.fill_value
        layout = self._validate()
        self.layout = layout
        self.num_channels = layout.channels
        self.dtype = dtypes.output_dtype(np.dtype(layout.dtype), lambda: (0, 0))
        if fill_missing is not None and self.dtype.kind in "iu":
            info = np.iinfo(self.dtype)
            if fill_missing != int(fill_missing) or not info.min <= fill_missing <= info.max:
                raise UsageError(f"--fill-missing {fill_missing:g} is not a {self.dtype} value")
        self.shape: Vec3 = self.orientation.output_shape(layout.columns, layout.rows, len(self.slices))
        self.stream_axis = self.orientation.axes[2]
        columns, rows, slices = (array_axis(a) for a in self.orientation.axes)
        fc, fr, _ = self.orientation.flips
        self.memory_order = MemoryOrder((slices, rows, columns, 0),
                                        tuple(a for a, f in ((rows, fr), (columns, fc)) if f))
        if resolution is None:
            resolution = self._tiff_resolution()
        if resolution is None:
            raise UsageError("a slice stack needs --resolution X,Y,Z (in nm, or e.g. 20um); "
                             "only TIFF files that record all three voxel sizes carry it")
        self.resolution = resolution
        self.placement: Placement | None = stack_placement(resolution, self._code)

    def _tiff_resolution(self) -> tuple[float, float, float] | None:
        """Voxel size from the first TIFF's tags: pixel sizes, and ImageJ's slice spacing."""
        first = next(s for s in self.slices if s.path is not None)
        if not first.file.lower().endswith(_TIFF):
            return None
        with tiff_file(open_input(first.file)) as tif:
            tags = tif.pages[0].tags
            meta = tif.imagej_metadata or {}
            unit_tag = tags.get("ResolutionUnit")
            unit = {2: 25.4e6, 3: 1e7}.get(int(unit_tag.value) if unit_tag else 2)
            if meta.get("unit") is not None:
                unit = LENGTH_NM.get(str(meta["unit"]))
            sizes = []
            for name in ("XResolution", "YResolution"):
                tag = tags.get(name)
                if tag is None or unit is None or not tag.value[0]:
                    return None
                sizes.append(unit * tag.value[1] / tag.value[0])
            spacing = meta.get("spacing")
            if spacing is None or unit is None:
                return None
            sizes.append(unit * float(spacing))
        resolution = [0.0, 0.0, 0.0]
        for axis, size in zip(self.orientation.axes, sizes):
            resolution[axis] = size
        return triple(resolution)

    def _validate(self) -> Layout:
        """Probe every section; a bad one ends the run now, or is filled with --fill-missing."""
        layouts: dict[Layout, Slice] = {}
        for k, s in enumerate(self.slices):
            if s.path is None:
                continue
            try:
                layout = probe(s)
            except SectionError as exc:
                self._fill_instead(exc)
                self.slices[k] = Slice(None)
                continue
            if layouts and layout not in layouts:
                first, other = next(iter(layouts.items()))
                raise DataError(f"{s.name}: {_describe(layout)} differs from {other.name}: "
                                f"{_describe(first)}")
            layouts.setdefault(layout, s)
        if not layouts:
            raise DataError(f"{self.spec}: no readable section")
        return next(iter(layouts))

    def mapped(self, p0: int, p1: int) -> None:
        return None  # sections are decoded

    def window(self, p0: int, p1: int) -> SliceStack:
        """This stack for planes [p0, p1) only: what a read task is sent, instead of every
        section's path (7,404 of them for BigBrain: ~400 KB pickled per task)."""
        part = copy.copy(self)
        lo, hi = (self._count - p1, self._count - p0) if self.orientation.flips[2] else (p0, p1)
        part.slices, part._first = self.slices[lo - self._first:hi - self._first], lo
        return part

    def read_region(self, region: Box, out: np.ndarray) -> None:
        read_region_by_planes(self, region, out)

    def read(self, p0: int, p1: int, out: np.ndarray) -> None:
        columns, rows, slices = self.orientation.axes
        fc, fr, fs = self.orientation.flips
        for p in range(p0, p1):
            s = self.slices[(self._count - 1 - p if fs else p) - self._first]
            index: list[slice | int] = [slice(None)] * 4
            index[array_axis(slices)] = p - p0
            plane = out[tuple(index)]  # (c, a, b): the two other axes in array order
            if s.path is None:
                plane[...] = self.fill_value
                continue
            # The plane as the file holds it, (rows, columns, channels): where that is contiguous
            # memory of the file's type (slabs in `memory_order`), the section is decoded into it.
            as_file = plane.transpose(0, 2, 1) if rows < columns else plane
            as_file = np.moveaxis(as_file, 0, 2)[::-1 if fr else 1, ::-1 if fc else 1]
            try:
                if as_file.flags.c_contiguous and as_file.dtype == self.layout.dtype:
                    decode(s, as_file if self.layout.channels > 1 else as_file[..., 0])
                    continue
                image = decode(s)
                if image.shape != (self.layout.rows, self.layout.columns, self.layout.channels):
                    raise SectionError(s.name, f"decoded shape {image.shape} differs from the header")
            except SectionError as exc:  # damaged pixel data behind a sound header
                self._fill_instead(exc)
                plane[...] = self.fill_value
                continue
            dtypes.cast_into(image, as_file)

    def _fill_instead(self, error: SectionError) -> None:
        """Without --fill-missing a section that cannot be read ends the run; with it, a warning
        (in a worker, sent to the main process with the task's result to be counted there)."""
        if self.fill_value is None:
            raise error
        log.warning("filling section %s with %g: %s", error.section, self.fill_value, error.reason,
                    extra={"filled_in": self.spec})

    def fingerprint(self) -> dict:
        files: list[list | None] = []
        for s in self.slices:
            if s.path is None:
                files.append(None)
            else:
                identity = open_input(s.path).identity()  # local: mtime_ns; remote: version
                files.append([s.path, s.page, identity["size"], identity.get("mtime_ns", identity.get("version"))])
        return {"stack": self.spec, "slices": files, "orientation": self.orientation.axes,
                "flips": self.orientation.flips, "fill": self.fill_value}

    def close(self) -> None:
        """The count of the sections filled past the first few, once every read has reported."""
        if self._filled is not None and self._filled in log.filters:
            log.removeFilter(self._filled)
            self._filled.summary()


def _describe(layout: Layout) -> str:
    return f"{layout.columns}x{layout.rows} {layout.dtype} with {layout.channels} channel(s)"
