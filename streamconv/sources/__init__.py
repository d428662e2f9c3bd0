"""Readers: every input becomes a `Source` that fills (channel, z, y, x) slabs on request."""

from __future__ import annotations

import os

import numpy as np

from ..errors import UsageError
from .base import Source
from .rescale import Rescaled
from .stack import SliceStack, is_stack
from .volume import NibabelSource

__all__ = ["Source", "NibabelSource", "SliceStack", "open_source"]


def open_source(path: str | os.PathLike, *, ignore_scaling: bool = False,
                resolution: tuple[float, float, float] | None = None,
                orientation: str | None = None, fill_missing: float | None = None,
                input_range: tuple[float, float] | None = None) -> Source:
    """The source for an input: a slice stack (directory, glob, list file, image or multi-page
    TIFF) or a volume file that nibabel reads. `input_range` maps those values onto 0..1 in
    float32, as neuroglancer-scripts' --input-min/--input-max do."""
    spec = os.fspath(path)
    source: Source
    if is_stack(spec):
        source = SliceStack(spec, orientation or "RAS", resolution, fill_missing)
    elif orientation is not None or fill_missing is not None:
        raise UsageError("--input-orientation and --fill-missing apply to slice stacks only")
    else:
        source = NibabelSource(spec, ignore_scaling=ignore_scaling, resolution=resolution)
    return source if input_range is None else Rescaled(source, np.dtype("float32"), input_range)
