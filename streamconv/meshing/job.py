"""The mesh pass as a step of its own: a job record and a journal in `.streamconv/meshes/`,
kept through the same `prepare_output`, `Journal` and records as the pipeline's steps, so that
`generate-meshes` and the mesh pass of `convert --meshes` resume after a kill, are a no-op on a
finished output, and `--overwrite` removes only what they wrote (the record's `writes`).

What a resumed run trusts, phase by phase:
* blocks: the journal's `slab 0 <block>` lines (a block's pieces are all written before its
  line); the others are meshed again, their pieces rewritten with the same bytes.
* labels: `LABELS`, written once every block is meshed; a label whose mesh is written whole
  (`LabelWriter.done`) is not written again, only its leftover pieces deleted.
* shards: a shard file that exists is complete.
Those files are trusted only on the boot that wrote them: after a machine restart mid-pass the
pass starts over (`Journal.restarted`). A finished pass syncs the output before its record
says so, so a finished record holds across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.journal import COMPLETE, START, Journal, prepare_output, read_job, write_job
from ..stores.base import Store
from .blocks import MESH_STATE, MESHES

LABELS = f"{MESH_STATE}/labels"  # the labels of scale 0 (uint64le), once every block is meshed
SPOOL_ROOT = f"{MESH_STATE}/spool"


@dataclass
class MeshJob:
    """A prepared mesh pass: its record, where it stands, its journal."""

    store: Store
    record: dict
    found: str  # START, RESUME or COMPLETE
    journal: Journal
    done_blocks: frozenset[int]

    @property
    def edge(self) -> int:
        return int(self.record["block_edge"])

    @property
    def complete(self) -> bool:
        return self.found == COMPLETE

    def labels(self) -> np.ndarray | None:
        """The labels of scale 0, once the block pass is complete."""
        data = self.store.read(LABELS)
        return None if data is None else np.frombuffer(data, "<u8").astype(np.uint64)

    def blocks_meshed(self, labels: np.ndarray) -> None:
        self.store.write(LABELS, np.asarray(labels, "<u8").tobytes(), durable=True)

    def finish(self, labels: int) -> None:
        """Every file written: the spool goes, the output is synced (a finished pass is trusted
        after a restart, so its record carries no boot id), the record says finished."""
        self.journal.close()
        self.store.delete(SPOOL_ROOT)
        if self.store.can.sync:
            self.store.sync()
        write_job(self.store, {"job": self.record, "complete": True, "labels": labels}, MESHES)

    def finished_labels(self) -> int:
        return int((read_job(self.store, MESHES) or {}).get("labels", 0))


def prepare_meshes(store: Store, record: dict, edge: int | None, default_edge: int,
                   overwrite: bool) -> MeshJob:
    """Start, resume or find finished the mesh pass that `record` describes (without its
    block edge: `edge` if given, else the edge of the run this one continues, else
    `default_edge`, the one the memory budget allows)."""
    old = read_job(store, MESHES)
    if edge is None:
        edge = int((old or {}).get("job", {}).get("block_edge", 0)) if not overwrite else 0
    record = {**record, "block_edge": edge or default_edge}
    found = prepare_output(store, list(record["writes"]), record, overwrite, True, MESHES)
    journal = Journal(store, MESHES)
    if found != START and journal.restarted():
        for key in [*record["writes"], f"{MESH_STATE}/journal"]:
            store.delete(key)
        found = START
    done: set[tuple[int, int]] = set()
    if found == START:
        store.delete(SPOOL_ROOT)
        store.delete(LABELS)
        write_job(store, {"job": record, "complete": False}, MESHES)
    elif found != COMPLETE:
        done = journal.completed()
    if found != COMPLETE:
        journal.open()
    return MeshJob(store, record, found, journal, frozenset(i for level, i in done if level == 0))
