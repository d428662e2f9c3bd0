"""Task functions that run in worker processes. Module-level and picklable by reference."""

from __future__ import annotations

from dataclasses import dataclass

from ..downsampling import downsample
from ..encodings import get_codec
from ..geometry import Scale, ceil_div
from ..sources import Source
from ..storage import Store
from .buffers import SlabRef


def fill(source: Source, z0: int, z1: int, ref: SlabRef, first_plane: int) -> None:
    """Read planes [z0, z1) of the source into a slab buffer that starts at `first_plane`."""
    slab = ref.array()
    source.read(z0, z1, slab[:, z0 - first_plane:z1 - first_plane])


@dataclass(frozen=True)
class Downsample:
    """Where a band's downsampled planes go: a slab of the next scale."""

    target: SlabRef
    first_plane: int  # global index of the target slab's first plane
    factor: tuple[int, int, int]
    method: str


@dataclass(frozen=True)
class Band:
    """Rows [y0, y1) of planes [z0, z1) of one scale's slab: write their chunks, downsample them."""

    source: SlabRef
    first_plane: int
    scale: Scale
    z0: int
    z1: int
    y0: int
    y1: int
    store: Store
    encoding: str
    skip_empty: bool
    down: Downsample | None


def process_band(band: Band) -> tuple[int, int, int]:
    """Returns (chunks visited, chunks written, bytes written)."""
    slab = band.source.array()
    view = slab[:, band.z0 - band.first_plane:band.z1 - band.first_plane, band.y0:band.y1]
    codec = get_codec(band.encoding)
    visited = written = nbytes = 0
    for box in band.scale.chunks_in(band.y0, band.y1, band.z0, band.z1):
        chunk = view[:, box.start[2] - band.z0:box.stop[2] - band.z0,
                     box.start[1] - band.y0:box.stop[1] - band.y0, box.start[0]:box.stop[0]]
        visited += 1
        if band.skip_empty and not chunk.any():
            continue
        data = codec.encode(chunk)
        band.store.write(f"{band.scale.key}/{box.name}", data)
        written += 1
        nbytes += len(data)
    if band.down is not None:
        d = band.down
        fx, fy, fz = d.factor
        target = d.target.array()
        z0, y0 = band.z0 // fz - d.first_plane, band.y0 // fy
        out = target[:, z0:z0 + ceil_div(band.z1 - band.z0, fz), y0:y0 + ceil_div(band.y1 - band.y0, fy)]
        downsample(view, d.factor, d.method, out=out)
    return visited, written, nbytes
