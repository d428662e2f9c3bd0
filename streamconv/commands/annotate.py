"""What makes a segmentation readable, added once its voxels are written: segment names
(`segment_properties`) and surface meshes (`mesh`).

`convert --segment-names/--meshes` runs this at the end of its job, on the same workers and
within the same memory budget; `add-segment-names` and `generate-meshes` run it on a pyramid
already on disk. The labels a names table is checked against come from the band tasks of the
conversion when it wrote every scale-0 slab itself, from the mesh pass when there is one, and
otherwise from reading scale 0 back.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..annotations.beside import AnnotationTable
from ..annotations.job import AnnotationsReport
from ..engine.budget import worker_share
from ..engine.executor import TaskExecutor, bounded
from ..errors import UsageError
from ..format.geometry import Box, triple
from ..format.info import VolumeInfo
from ..format.sharding_choice import NoSharding, Sharding
from ..layout.dataset import Dataset
from ..meshing import MeshOptions, MeshReport, mesh_labels
from ..stores.base import Store
from ..units import format_size
from .names import SegmentTable, properties_info, read_segment_names

log = logging.getLogger("streamconv")

PROPERTIES_DIR = "segment_properties"


@dataclass(frozen=True)
class Annotations:
    """Names and meshes to add to a segmentation."""

    names: SegmentTable | None = None
    meshes: MeshOptions | None = None
    table: AnnotationTable | None = None  # a table's annotation collection, in OUTPUT/annotations/

    @property
    def collect_labels(self) -> bool:
        """The band tasks collect the labels of scale 0 for a names table (a mesh pass finds
        them itself)."""
        return self.names is not None and self.meshes is None

    def run(self, store: Store, info: VolumeInfo, pool: TaskExecutor, workers: int, budget: int,
            labels: np.ndarray | None, should_stop: Callable[[], bool],
            overwrite: bool) -> tuple[VolumeInfo, AnnotationReport]:
        """What the engine calls after the pyramid (`engine.job.AfterPyramid`): `annotate`."""
        return annotate(store, info, pool, workers, budget, self, labels, should_stop, overwrite)

    def record(self) -> dict:
        """For job.json: what changes the files written."""
        record: dict = {"names": None if self.names is None else [self.names.source, len(self.names.segments)],
                  "meshes": None if self.meshes is None else self._meshes(self.meshes)}
        if self.table is not None:  # absent otherwise: earlier records still resume
            record["table"] = self.table.record()
        return record

    @staticmethod
    def _meshes(meshes: MeshOptions) -> list:
        """Unsharded meshes keep the record of earlier versions, whose outputs still resume."""
        return [meshes.format, meshes.directory, *(["sharded"] if meshes.sharded else [])]


@dataclass(frozen=True)
class AnnotationReport:
    labels: int                  # labels of scale 0, background aside
    meshes: MeshReport | None
    table: AnnotationsReport | None = None  # the table's annotation collection

    def describe(self) -> str:
        """For the summary line, after the volume's."""
        text = ""
        if self.meshes is not None or self.labels:
            text = f", {self.labels} labels" + (" meshed" if self.meshes else "")
        if self.table is not None:
            text += f", {self.table.annotations} {self.table.type} annotations in {self.table.levels} levels"
        return text


def make_annotations(volume_type: str, segment_names: str | os.PathLike | None, meshes: bool,
                     mesh_format: str, mesh_block: int | None = None,
                     sharding: Sharding = NoSharding(),
                     table: AnnotationTable | None = None) -> Annotations | None:
    """The annotations the options ask for (None: none), checked before any work; meshes are
    sharded when `sharding` is on; `table`: an annotation collection beside any volume."""
    if segment_names is None and not meshes:
        return None if table is None else Annotations(table=table)
    if volume_type != "segmentation":
        raise UsageError("--segment-names and --meshes need --type segmentation")
    options = MeshOptions(mesh_format, block=mesh_block, sharding=sharding) if meshes else None
    if options is not None:
        options.check()
    return Annotations(read_segment_names(segment_names) if segment_names is not None else None, options, table)


def annotate(store: Store, info: VolumeInfo, pool: TaskExecutor, workers: int, budget: int,
             annotations: Annotations, labels: np.ndarray | None = None,
             should_stop: Callable[[], bool] = lambda: False,
             overwrite: bool = False) -> tuple[VolumeInfo, AnnotationReport]:
    """Write the mesh and segment-properties directories; returns the info that links them
    (written by the caller) and what was done. `labels`: those of scale 0, when known;
    `overwrite`: mesh again what an earlier mesh pass wrote (`generate-meshes --overwrite`)."""
    volume = Dataset(store, info, info.geometry)
    mesh_report = table = None
    if annotations.table is not None:
        table = annotations.table.write(store, info, pool, workers, budget, should_stop, overwrite)
        log.info("annotations: %d %s annotations in %d levels", table.annotations, table.type, table.levels)
    if annotations.meshes is not None:
        per_worker = worker_share(workers, budget)
        mesh_report = mesh_labels(volume, pool, workers, per_worker, annotations.meshes, should_stop,
                                  overwrite)
        log.info("meshes: %d labels, %d blocks of %d^3 cells meshed, %s", mesh_report.count,
                 mesh_report.blocks, mesh_report.edge, format_size(mesh_report.bytes_written))
        labels = mesh_report.labels
        info = info.with_member("mesh", annotations.meshes.directory)
    if annotations.names is not None:
        if labels is None:
            labels = scale0_labels(volume, pool, workers, should_stop)
        properties = properties_info(annotations.names, labels.tolist())
        store.write(f"{PROPERTIES_DIR}/info", json.dumps(properties).encode())
        info = info.with_member("segment_properties", PROPERTIES_DIR)
    if labels is None and mesh_report is not None:  # a finished mesh pass found again: it counted them
        return info, AnnotationReport(mesh_report.count, mesh_report, table)
    return info, AnnotationReport(0 if labels is None else int(np.count_nonzero(labels)), mesh_report, table)


def scale0_labels(volume: Dataset, pool: TaskExecutor, workers: int,
                  should_stop: Callable[[], bool]) -> np.ndarray:
    """The labels of scale 0, read back chunk by chunk on the workers."""
    scale = volume.scales[0]
    stop = triple(o + s for o, s in zip(scale.voxel_offset, scale.size))
    calls = ((_labels_of, volume, box) for box in scale.chunks_in(scale.voxel_offset, stop))
    found = list(bounded(pool, 2 * max(workers, 1), should_stop, calls))
    return np.unique(np.concatenate(found)) if found else np.zeros(0, np.uint64)


def _labels_of(volume: Dataset, box: Box) -> np.ndarray:
    chunk = volume.read_chunk(0, box)
    return np.zeros(0, np.uint64) if chunk is None else np.unique(chunk).astype(np.uint64)
