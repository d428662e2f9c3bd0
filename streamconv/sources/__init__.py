"""Readers: every input becomes a `Source` that fills (channel, z, y, x) slabs on request."""

from __future__ import annotations

import os

from ..errors import UsageError
from .base import Source
from .stack import SliceStack, is_stack
from .volume import NibabelSource

__all__ = ["Source", "NibabelSource", "SliceStack", "open_source"]


def open_source(path: str | os.PathLike, *, ignore_scaling: bool = False,
                resolution: tuple[float, float, float] | None = None,
                orientation: str | None = None, fill_missing: float | None = None) -> Source:
    """The source for an input: a slice stack (directory, glob, list file, image or multi-page
    TIFF) or a volume file that nibabel reads."""
    spec = os.fspath(path)
    if is_stack(spec):
        return SliceStack(spec, orientation or "RAS", resolution, fill_missing)
    if orientation is not None or fill_missing is not None:
        raise UsageError("--input-orientation and --fill-missing apply to slice stacks only")
    source = NibabelSource(spec, ignore_scaling=ignore_scaling)
    if resolution is not None:
        source.resolution = resolution
    return source
