"""Neuroglancer precomputed annotations (`neuroglancer_annotations_v1`) from tables of any
size: points, lines, axis-aligned boxes and ellipsoids with typed properties and related
segments, spatially indexed in several levels, each index sharded when large, written in
bounded memory by an external sort and resumable (docs/annotations.md).

Not to be confused with `streamconv/annotate.py`, the segment names and meshes of a
segmentation.

Modules: `schema.py` (types, properties, record bytes), `table.py` (CSV, TSV, JSON, JSON
Lines, Parquet in pieces), `columns.py` (which column is what), `coords.py` (voxels or mm),
`ingest.py` (the table read once), `spatial.py` (levels, cells, placement), `hashing.py`
(murmurhash3 of many ids), `plan.py` (indexes and their sharding), `runs.py` (sorted runs),
`writing.py` (write tasks), `info.py`, `job.py` (the phases, journal, resume), `reader.py`
(reading a collection back), `check.py` (verify), `layer.py` (the viewer's layer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .job import AnnotationOptions, AnnotationsReport, write_annotations

__all__ = ["AnnotationOptions", "AnnotationsReport", "write_annotations"]


def __getattr__(name: str) -> Any:
    """The writer is imported when asked for: `view` reads collections without the engine."""
    if name in __all__:
        from . import job
        return getattr(job, name)
    raise AttributeError(name)
