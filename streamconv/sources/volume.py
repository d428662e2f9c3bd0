"""Volumes that nibabel reads, read slab by slab along z."""

from __future__ import annotations

import logging
import math
import os
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from ..errors import DataError, one_line
from ..format import dtypes
from ..format.geometry import Box, Vec3
from ..format.info import MAX_CHANNELS, MAX_EXTENT, MAX_VOXELS
from ..stores import Where
from .base import MappedSlab, MemoryOrder, Source, read_region_by_planes
from .files import InputFile, open_data_file, open_input
from .placement import Placement, image_placement
from .stored import check_unscaled_reads, stored_values

log = logging.getLogger("streamconv")

_UNIT_NM = {"meter": Decimal(10) ** 9, "mm": Decimal(10) ** 6, "micron": Decimal(1000),
            "unknown": Decimal(10) ** 6}


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def our_warnings(path: str) -> Iterator[None]:
    """nibabel complains about headers it repairs through `warnings` (many lines with a source
    location) and through its own logger (`nibabel.global`, which has its own handler and also
    propagates: `qform_code 7 not valid; setting to 0`, twice, naming no file): each complaint
    becomes one line of our log naming the file."""
    import nibabel  # noqa: F401  which adds its handler to its logger when first imported

    nibabel_log = logging.getLogger("nibabel.global")
    kept, saved = _Kept(), (nibabel_log.handlers, nibabel_log.propagate)
    nibabel_log.handlers, nibabel_log.propagate = [kept], False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        nibabel_log.handlers, nibabel_log.propagate = saved
    for message in dict.fromkeys([*kept.messages, *(str(w.message) for w in caught)]):
        log.warning("%s: %s", path, " ".join(message.split())[:300])


@dataclass
class _RawLayout:
    """An uncompressed or gzip-compressed array in Fortran order at a byte offset: read directly.

    Plain files are read with pread (stateless, so safe in many processes at once); compressed
    streams keep one forward-only handle per channel.
    """

    file: InputFile
    offset: int
    disk_dtype: np.dtype
    shape: Vec3
    channels: int
    rgb: bool
    slope: float
    inter: float
    out_dtype: np.dtype
    compressed: bool
    _handles: dict = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handles": {}}

    def read(self, z0: int, z1: int, out: np.ndarray, rows: tuple[int, int] | None = None) -> None:
        """Planes [z0, z1) into `out`; with `rows`, only rows [y0, y1) of each plane (full width),
        one plane at a time: a region read by pread (tiles, docs/design.md)."""
        x, y, z = self.shape
        y0, y1 = rows or (0, y)
        if (y0, y1) != (0, y) and z1 - z0 > 1:
            for k in range(z0, z1):
                self.read(k, k + 1, out[:, k - z0:k - z0 + 1], rows)
            return
        plane = x * y * self.disk_dtype.itemsize
        direct = (not self.rgb and self.slope == 1.0 and self.inter == 0.0
                  and self.disk_dtype == out.dtype)
        for c in range(1 if self.rgb else self.channels):
            start = self.offset + plane * (z0 + z * c) + y0 * x * self.disk_dtype.itemsize
            # Straight into the slab only where it is one run of memory: reshape would otherwise
            # read into a copy and leave the slab untouched.
            if direct and out[c].flags.c_contiguous:
                self._read_into(c, start, out[c].reshape(-1).view(np.uint8).data)
                continue
            raw = np.empty((z1 - z0, y1 - y0, x), self.disk_dtype)
            self._read_into(c, start, raw.reshape(-1).view(np.uint8).data)
            if self.rgb:
                for k, name in enumerate(self.disk_dtype.names or ()):
                    out[k] = raw[name]
            else:
                dtypes.cast_into(raw, out[c], self.slope, self.inter)

    def _read_into(self, channel: int, start: int, buf: memoryview) -> None:
        if not self.compressed:
            if self.file.pread(buf, start) < len(buf):
                raise DataError(f"{self.file.name}: file is truncated (expected "
                                f"{start + len(buf)} bytes of image data)")
            return
        handle = self._handles.get(channel)
        if handle is None or handle.tell() > start:
            handle = self._handles[channel] = self.file.stream()
        try:
            handle.seek(start)
            n = handle.readinto(buf) or 0
            if n == len(buf) and self._ends_data(channel, start + n):
                while handle.read(1 << 20):  # to the end, where gzip checks its CRC
                    pass
        except (OSError, EOFError, ValueError, zlib.error) as exc:
            raise DataError(f"{self.file.name}: cannot decompress image data ({exc})") from exc
        if n != len(buf):
            raise DataError(f"{self.file.name}: file is truncated (image data ends early)")

    def _ends_data(self, channel: int, end: int) -> bool:
        x, y, z = self.shape
        last = self.channels - 1 if not self.rgb else 0
        return channel == last and end == self.offset + x * y * z * self.disk_dtype.itemsize * (last + 1)

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()


class NibabelSource:
    """Any volume nibabel reads: NIfTI-1/2, MGH/MGZ, MINC, Analyze.

    Formats stored as a plain array are read directly at the right byte offset (no copy of the
    whole volume, pread in parallel for uncompressed files); others through nibabel's proxy.
    A fourth axis longer than one becomes channels; RGB voxel types become three channels.
    """

    stream_axis = 2  # volumes are stored x fastest: z planes are contiguous
    memory_order = MemoryOrder()

    def __init__(self, path: Where, ignore_scaling: bool = False,
                 resolution: tuple[float, float, float] | None = None) -> None:
        self.file = open_input(path)
        self.path = self.file.name
        if not self.file.exists():
            raise DataError(f"{self.path}: no such file")
        if self.file.local_path is not None and not os.access(self.file.local_path, os.R_OK):
            raise DataError(f"{self.path}: permission denied; make the file readable to this user")
        try:
            with our_warnings(self.path):  # nibabel's header complaints, as our own lines
                img: Any = _load(self.file)
        except DataError:
            raise
        except Exception as exc:  # nibabel raises many kinds for a file it cannot read
            raise DataError(f"{self.path}: not a volume nibabel can read ({one_line(exc)})") from exc
        self._img = img
        shape = tuple(int(s) for s in img.shape)
        if any(s > MAX_EXTENT for s in shape) or math.prod(shape) > MAX_VOXELS * MAX_CHANNELS:
            raise DataError(f"{self.path}: the header's shape {shape} is larger than any volume "
                            "can be; the header is damaged")
        # the spatial axes of the array, then the others (MINC: by dimension name, time first)
        self._axes = _spatial_axes(img, len(shape))
        extra = [shape[a] for a in self._axes[3:] if shape[a] != 1]
        if len(shape) < 3 or len(extra) > 1:
            raise DataError(f"{self.path}: expected a 3-D volume or a 4-D volume of channels, "
                            f"got shape {shape}")
        self.shape: Vec3 = (shape[self._axes[0]], shape[self._axes[1]], shape[self._axes[2]])
        if min(self.shape) < 1:
            raise DataError(f"{self.path}: a zero-size axis in shape {shape}")
        disk_dtype = np.dtype(img.get_data_dtype())
        fields: tuple[str, ...] = disk_dtype.names or ()  # an RGB voxel type: one field per channel
        rgb = bool(fields)
        self.num_channels = len(fields) if rgb else (extra[0] if extra else 1)

        proxy = img.dataobj
        if ignore_scaling and not _is_plain(proxy):
            check_unscaled_reads(proxy, self.path)
        self._unscaled = ignore_scaling  # a proxy that scales as it reads is read unscaled
        slope, inter = 1.0, 0.0
        if not ignore_scaling:
            slope = float(getattr(proxy, "slope", 1.0))
            inter = float(getattr(proxy, "inter", 0.0))
            slope = 1.0 if not np.isfinite(slope) or slope == 0 else slope
            inter = 0.0 if not np.isfinite(inter) else inter
        self._slope, self._inter = slope, inter
        if rgb:
            in_dtype = np.dtype(disk_dtype[fields[0]])
        elif slope != 1.0 or inter != 0.0:
            in_dtype = np.dtype(np.float64)
        elif _is_plain(proxy):
            in_dtype = disk_dtype
        else:  # MINC and friends scale on read: ask for one voxel to learn the type
            one = (0,) * len(shape)
            in_dtype = (stored_values(proxy, one) if ignore_scaling else np.asarray(proxy[one])).dtype
        try:
            self.dtype = dtypes.output_dtype(in_dtype, self._value_range)
        except DataError as exc:
            raise DataError(f"{self.path}: {exc}") from None
        self.resolution = resolution or self._resolution()  # --resolution: the header's unused
        self.placement: Placement | None = None
        try:
            self.placement = image_placement(img, float(_unit_nm(img.header)))
        except DataError as exc:  # converted all the same, placed nowhere
            log.warning("%s: %s; no transform.json is written", self.path, exc)

        self._raw: _RawLayout | None = None
        if _is_plain(proxy) and len(shape) <= 4 or (rgb and _is_plain(proxy)):
            from nibabel.openers import ImageOpener

            # A local image may keep its voxels in another file (Analyze's .img); a remote one is
            # read from the stream it was opened from.
            data_file = open_data_file(str(proxy.file_like), self.path) if self.file.local_path else self.file
            compressed = data_file.name.endswith(tuple(k for k in ImageOpener.compress_ext_map if k))
            self._raw = _RawLayout(data_file, int(proxy.offset), disk_dtype, self.shape,
                                   self.num_channels, rgb, slope, inter, self.dtype, compressed)
        self.parallel_reads = self._raw is not None and not self._raw.compressed
        self.reads_regions = self.parallel_reads  # by pread; otherwise whole planes, cropped
        if self._raw is not None and self.parallel_reads:  # a short plain file is found now
            need = self._raw.offset + math.prod(self.shape) * self.num_channels * (
                disk_dtype.itemsize // (self.num_channels if rgb else 1))
            have = self._raw.file.size()
            if have < need:
                raise DataError(f"{self._raw.file.name}: file is truncated ({have} bytes, the header "
                                f"needs {need})")

    def _resolution(self) -> tuple[float, float, float]:
        header = self._img.header
        zooms = [header.get_zooms()[a] for a in self._axes[:3]]
        factor = _unit_nm(header)
        # Go through the shortest decimal of the stored float32 so that 2.2 mm is 2200000 nm.
        x, y, z = (float(abs(Decimal(str(np.float32(v)))) * factor) for v in zooms)
        if min(x, y, z) <= 0 or not all(np.isfinite((x, y, z))):
            sizes = ", ".join(f"{float(v):g}" for v in zooms)
            raise DataError(f"{self.path}: voxel sizes ({sizes}) are not positive numbers; give "
                            "--resolution X,Y,Z")
        return x, y, z

    def _planes(self, z0: int, z1: int) -> tuple[slice, ...]:
        """The index of z planes [z0, z1) in nibabel's array."""
        index = [slice(None)] * len(self._axes)
        index[self._axes[2]] = slice(z0, z1)
        return tuple(index)

    def _value_range(self) -> tuple[int, int]:
        lows, highs = [], []
        z = self.shape[2]
        for z0 in range(0, z, 16):
            block = np.asarray(self._img.dataobj[self._planes(z0, min(z0 + 16, z))])
            lows.append(int(block.min()))
            highs.append(int(block.max()))
        return min(lows), max(highs)

    def read(self, z0: int, z1: int, out: np.ndarray) -> None:
        try:
            if self._raw is not None:
                self._raw.read(z0, z1, out)
                return
            planes = self._planes(z0, z1)
            block = (stored_values(self._img.dataobj, planes) if self._unscaled
                     else np.asarray(self._img.dataobj[planes])).transpose(self._axes)
        except DataError:
            raise
        except (OSError, EOFError, ValueError) as exc:
            raise DataError(f"{self.path}: cannot read planes {z0}-{z1} ({one_line(exc)})") from exc
        block = block.reshape(block.shape[:3] + (-1,))  # (x, y, z, c)
        dtypes.cast_into(block.transpose(3, 2, 1, 0), out, self._slope, self._inter)

    def read_region(self, region: Box, out: np.ndarray) -> None:
        """Rows [y0, y1) of each plane by pread, the columns cut from them; other volumes read
        whole planes (nibabel's array, a gzip stream) and crop them."""
        if not self.reads_regions or self._raw is None:
            read_region_by_planes(self, region, out)
            return
        (x0, y0, z0), (x1, y1, z1) = region.start, region.stop
        if (x0, x1) == (0, self.shape[0]):
            self._raw.read(z0, z1, out, (y0, y1))
            return
        rows = np.empty((out.shape[0], 1, y1 - y0, self.shape[0]), out.dtype)  # a plane's rows at a time
        for z in range(z0, z1):
            self._raw.read(z, z + 1, rows, (y0, y1))
            out[:, z - z0] = rows[:, 0, :, x0:x1]

    def mapped(self, p0: int, p1: int) -> MappedSlab | None:
        """A plain local file whose voxels are stored as they are output (native byte order, no
        scaling, not RGB): each channel's planes are one run of the file."""
        raw = self._raw
        if (raw is None or raw.compressed or raw.rgb or raw.slope != 1.0 or raw.inter != 0.0
                or raw.disk_dtype != self.dtype or raw.file.local_path is None):
            return None
        x, y, z = self.shape
        item = self.dtype.itemsize
        return MappedSlab(raw.file.local_path, raw.offset + x * y * item * p0,
                          (self.num_channels, p1 - p0, y, x), (x * y * z * item, x * y * item, x * item, item),
                          self.dtype.str)

    def window(self, p0: int, p1: int) -> Source:
        return self

    def fingerprint(self) -> dict:
        return {**self.file.identity(),
                "shape": list(self.shape), "channels": self.num_channels, "dtype": self.dtype.name}

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
        held = getattr(getattr(self._img, "dataobj", None), "file_like", None)
        close = getattr(held, "close", None)
        if close is not None:
            close()  # nibabel's PAR/REC proxy holds the .REC open for its lifetime

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_img": None}

    def __setstate__(self, state: dict) -> None:
        """A source read through nibabel's proxy (a gzip stream) opens its file again: a task on
        a Dask worker reads its own planes (the local engine reads such a source in one thread
        of the main process, in order, and never sends it)."""
        self.__dict__.update(state)
        if self._raw is None:
            import nibabel

            self._img = nibabel.load(str(self.path))


def _load(file: InputFile) -> Any:
    """The nibabel image of a file: by name where it has a local one (every format nibabel
    reads), else NIfTI-1 or -2 from a stream of ranged reads (the header, then voxels as asked)."""
    import nibabel

    if file.local_path is not None:
        return nibabel.load(file.local_path)  # the image class of the file's format
    stream = file.stream()
    head = stream.read(4)
    stream.seek(0)
    sizes = {int.from_bytes(head, "little"), int.from_bytes(head, "big")}
    kind = nibabel.Nifti1Image if 348 in sizes else nibabel.Nifti2Image if 540 in sizes else None
    if kind is None:
        raise DataError(f"{file.name}: over a URL, NIfTI-1 and NIfTI-2 volumes are read "
                        "(.nii, .nii.gz); copy other formats to a local disk first")
    holder = nibabel.fileholders.FileHolder(fileobj=stream)
    return kind.from_file_map({"header": holder, "image": holder})


def _unit_nm(header: Any) -> Decimal:
    """Nanometres per unit of the header's voxel sizes and affine (NIfTI's xyzt_units; mm
    where the format has none or the code is unknown)."""
    unit = "mm"
    if hasattr(header, "get_xyzt_units"):
        try:
            unit = header.get_xyzt_units()[0] or "unknown"
        except (KeyError, ValueError):  # a unit code nibabel does not know: taken as mm
            unit = "unknown"
    return _UNIT_NM.get(unit, _UNIT_NM["mm"])


def _spatial_axes(img: Any, ndim: int) -> tuple[int, ...]:
    """The array's axes, the three spatial ones first (in the order of the affine's columns).
    MINC names its dimensions (`xspace`, `time`...) and a 4-D file may put time first; nibabel's
    affine then maps the `*space` ones. Other formats: the first three are spatial."""
    names = getattr(getattr(img.dataobj, "minc_file", None), "_dim_names", None)
    if names is not None and len(names) == ndim:
        spatial = [a for a, name in enumerate(names) if str(name).endswith("space")]
        if len(spatial) == 3:
            return (*spatial, *(a for a in range(ndim) if a not in spatial))
    return tuple(range(ndim))


def _is_plain(proxy: object) -> bool:
    from nibabel.arrayproxy import ArrayProxy

    return type(proxy) is ArrayProxy and getattr(proxy, "order", "F") == "F"


