"""`convert INPUT OUTPUT --annotations TABLE`: a table's annotation collection written in the
same run as the volume, in `OUTPUT/annotations/` (a collection has an `info` of its own, so it
is a directory of its own; inside the output it moves with it, and `view OUTPUT` finds it
there and shows it over the volume).

Coordinates are voxels of the volume being written (its scale 0: voxel size and offset), or
millimetres of its world space through the `transform.json` the conversion writes (the runner
writes it before the work after the pyramid). The collection is its own resumable job
(`job.write_collection`, record and journal in `OUTPUT/annotations/.streamconv/annotations/`),
run on the conversion's workers after its pyramid: a killed conversion resumes its slabs, then
its annotations, and ends with the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass

from ..engine.executor import TaskExecutor
from ..errors import UsageError
from ..format.info import VolumeInfo
from ..stores.base import Store
from ..stores.local import LocalStore
from .coords import placement_in
from .job import AnnotationOptions, AnnotationsReport, TableRequest, checked, write_collection
from .layer import COLLECTION_DIR

DIRECTORY = COLLECTION_DIR  # where a conversion puts its annotation collection, inside its output


@dataclass(frozen=True)
class AnnotationTable:
    """A table to write as an annotation collection beside a volume (`OUTPUT/annotations/`)."""

    table: str
    checked: TableRequest

    @classmethod
    def of(cls, table: str | os.PathLike, options: AnnotationOptions) -> AnnotationTable:
        """Checked before any work: the options, the table's header and columns. The collection
        belongs to the volume written, so `image` and `resolution` are not options here."""
        if options.image is not None or options.resolution is not None:
            raise UsageError("--annotations: the annotations are placed in the volume being written "
                             "(no --image or --resolution)")
        return cls(str(table), checked(table, options))

    def record(self) -> dict:
        """For the conversion's job.json: what changes the files written."""
        from .table import Table
        return {"table": Table.open(self.table).fingerprint(), "options": asdict(self.checked.options),
                "directory": DIRECTORY}

    @staticmethod
    def check_output(store: Store) -> None:
        """Refused before the conversion starts when the output is not a local directory."""
        if not isinstance(store, LocalStore):
            raise UsageError(f"{store.url}: --annotations writes to a local directory (their sort runs "
                             "are read by memory map); convert locally, then copy")

    def write(self, store: Store, info: VolumeInfo, pool: TaskExecutor, workers: int, budget: int,
              should_stop: Callable[[], bool], overwrite: bool) -> AnnotationsReport:
        """The collection in `DIRECTORY` of the volume output `store` whose info is `info`."""
        self.check_output(store)
        assert isinstance(store, LocalStore)
        options = self.checked.options
        place = placement_in(store, info.geometry[0], None, options.coordinates)
        return write_collection(self.table, self.checked, LocalStore(store.root / DIRECTORY), place, pool,
                                workers, budget, overwrite, should_stop=should_stop)
