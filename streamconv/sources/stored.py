"""`--ignore-scaling` for every format nibabel scales: the values as the file stores them.

NIfTI and Analyze keep their scaling in the header (`scl_slope`, `scl_inter`), which a volume
read directly leaves out. AFNI (a factor per brick) and PAR/REC (per slice) are read through
nibabel's proxy, which scales as it reads; each of those proxies also reads the stored values
(`_get_unscaled`, what its public `get_unscaled` reads the whole array with), by slab. MINC
stores values normalised per slice to the file's valid range: they mean nothing without the
scaling, and nibabel has no unscaled read of them, so there the option is refused in one line.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UsageError


def check_unscaled_reads(proxy: Any, path: str) -> None:
    """Refuse --ignore-scaling where nibabel cannot read the stored values (MINC)."""
    if not callable(getattr(proxy, "_get_unscaled", None)):
        raise UsageError(f"{path}: --ignore-scaling does not apply to {_kind(proxy)}, whose stored "
                         "values are only meaningful scaled; leave it out")


def stored_values(proxy: Any, slicer: tuple) -> np.ndarray:
    """`proxy[slicer]` as stored, before nibabel's scaling."""
    return np.asanyarray(proxy._get_unscaled(slicer))


def _kind(proxy: Any) -> str:
    name = type(proxy).__name__
    return "MINC" if "Minc" in name else f"this format (nibabel's {name})"
