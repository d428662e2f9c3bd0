"""The job record, the journal and the lock, in `<output>/.streamconv/`.

Each step has its own job record and journal: `convert` at the top of `.streamconv/`, the
step-by-step commands in `.streamconv/<step>/` (e.g. `fullres`, `scales`); the lock is shared.

* `job.json` says what this output is a conversion *of*: the input's fingerprint and every
  parameter that changes bytes, and whether the run finished.
* `journal` gets one line per slab whose chunks are all written and whose downsampled planes
  are handed on: `slab <scale> <index>`. A line is appended as soon as that is true, so after
  a killed process at most the slabs in flight are redone. Every `CHECKPOINT_SECONDS` a
  `checkpoint` line is written and the output filesystem is synced in the background; a
  `synced` line follows when that is done. After a machine crash (a new boot id) only the
  lines before the last checkpoint that was synced are trusted, since unsynced chunks may be
  lost. A run ends without a sync, as other tools do: its finished record carries the boot
  id, and after a restart the output counts as unfinished and resumes from its last synced
  checkpoint (`finished`).
* `lock` holds the pid and boot id of the run using the output; a lock whose process is gone
  (or from an earlier boot) is stale and taken over.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import psutil

from ..errors import OutputError, UsageError
from ..format.info import check_key
from ..stores.base import Store, require

STATE_DIR = ".streamconv"
CONVERT = "convert"  # the step that writes everything, info included
CHUNKS = "chunks"    # convert-chunks: every scale and the info, from another pyramid
CHECKPOINT_SECONDS = 30.0

log = logging.getLogger(__name__)


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return str(psutil.boot_time())


def state_key(step: str) -> str:
    """Where a step keeps its job record and journal."""
    return STATE_DIR if step == CONVERT else f"{STATE_DIR}/{step}"


def read_job(store: Store, step: str = CONVERT) -> dict | None:
    data = store.read(f"{state_key(step)}/job.json")
    return None if data is None else json.loads(data)


def write_job(store: Store, job: dict, step: str = CONVERT) -> None:
    store.write(f"{state_key(step)}/job.json", json.dumps(job, indent=1, sort_keys=True).encode(),
                durable=True)


def difference(old: dict, new: dict, path: str = "") -> str | None:
    """The first place where two job descriptions differ, said for a person, or None."""
    for key in sorted(set(old) | set(new)):
        found = _differ(old.get(key), new.get(key), f"{path}.{key}" if path else key)
        if found:
            return found
    return None


def _differ(a: object, b: object, where: str) -> str | None:
    """Into dicts and lists of the same length, so that the message names the member
    (`info.scales[0].chunk_sizes`), not a whole list of scales."""
    if isinstance(a, dict) and isinstance(b, dict):
        return difference(a, b, where)
    if isinstance(a, list) and isinstance(b, list) and any(isinstance(v, (dict, list)) for v in a):
        for i, (x, y) in enumerate(zip(a, b)):
            found = _differ(x, y, f"{where}[{i}]")
            if found:
                return found
        return None if len(a) == len(b) else f"{where} had {len(a)} items, now {len(b)}"
    return None if a == b else f"{where} was {_short(a)}, now {_short(b)}"


def _short(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


LOCK = f"{STATE_DIR}/lock"


class Lock:
    """One run per output: a key created only where none exists, taken over when its owner is
    gone (a process of this machine that no longer runs, or one of an earlier boot)."""

    def __init__(self, store: Store) -> None:
        require(store, "lock", "hold the lock that keeps a second run out; write to a local directory")
        self.store = store

    def acquire(self) -> None:
        me = f"{os.getpid()} {boot_id()}".encode()
        for _ in range(2):
            if self.store.create(LOCK, me):
                return
            owner = (self.store.read(LOCK) or b"").decode(errors="replace").split()
            if len(owner) == 2 and owner[1] == boot_id() and owner[0].isdigit() \
                    and psutil.pid_exists(int(owner[0])):
                raise OutputError(f"{self.store.url} is being written by another run "
                                  f"(pid {owner[0]}); wait for it or stop it")
            if len(owner) == 2 and owner[1] != boot_id() and self.store.can.durable:
                # A store other machines reach: a lock of another boot may be a live run elsewhere.
                raise OutputError(f"{self.store.url} is locked by a run on another machine or "
                                  f"before a restart (pid {owner[0]}); if none is running, delete "
                                  f"{self.store.url}/{LOCK}")
            self.store.delete(LOCK)  # stale: its process is gone
        raise OutputError(f"cannot take the lock {self.store.url}/{LOCK}")

    def release(self) -> None:
        self.store.delete(LOCK)


@contextmanager
def locked(store: Store) -> Iterator[None]:
    """Hold the output's lock around a write that is not a pipeline run (an info, a mesh, a
    re-encoding): one writer per output, whatever the command."""
    lock = Lock(store)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


class JournalLines(Protocol):
    """Where the journal's lines go: one growing key, or one object per line."""

    def read(self) -> list[str]: ...

    def add(self, line: str, durable: bool) -> None: ...


class AppendedLines:
    """The journal as one key appended to (a local file: `OUTPUT/.streamconv/journal`)."""

    def __init__(self, store: Store, key: str) -> None:
        self.store, self.key = store, key

    def read(self) -> list[str]:
        data = self.store.read(self.key)
        return [] if data is None else data.decode(errors="replace").splitlines()

    def add(self, line: str, durable: bool) -> None:
        self.store.append(self.key, (line + "\n").encode(), durable)


class NumberedLines:
    """The journal of a store that cannot append (an object store): one small object per line
    below the journal's key, named by its number and its words (`00000012_slab_0_3`), so that
    one listing reads the whole journal back, in order, without a request per line."""

    def __init__(self, store: Store, key: str) -> None:
        require(store, "list", "keep the journal of a resumable run")
        self.store, self.key = store, key
        self._next: int | None = None

    def read(self) -> list[str]:
        names = [k.rsplit("/", 1)[-1] for k in self.store.list(self.key)]
        numbered = sorted((int(n), words) for n, _, words in (name.partition("_") for name in names)
                          if n.isdigit())
        self._next = numbered[-1][0] + 1 if numbered else 0
        return [words.replace("_", " ") for _, words in numbered]

    def add(self, line: str, durable: bool) -> None:
        if self._next is None:
            self.read()
        assert self._next is not None
        self.store.write(f"{self.key}/{self._next:08d}_{line.replace(' ', '_')}", line.encode())
        self._next += 1


class Journal:
    """Which slabs of which scales are complete, durable across killed processes. (The mesh
    pass records its blocks the same way, as `slab 0 <block>`.)"""

    def __init__(self, store: Store, step: str = CONVERT) -> None:
        self.store = store
        self.key = f"{state_key(step)}/journal"
        self.lines: JournalLines = AppendedLines(store, self.key) if store.can.append \
            else NumberedLines(store, self.key)
        self._lock = threading.Lock()  # the checkpoint thread appends too
        self._checkpoint: threading.Thread | None = None
        self._last_checkpoint = time.monotonic()

    def completed(self) -> set[tuple[int, int]]:
        """Slabs recorded complete; of a run on an earlier boot only those before its last
        synced checkpoint."""
        lines = self.lines.read()
        done: set[tuple[int, int]] = set()
        synced: set[tuple[int, int]] = set()
        marked: set[tuple[int, int]] = set()
        boot = None
        for line in lines:
            parts = line.split()
            if parts[:1] == ["boot"] and len(parts) == 2:
                if boot is not None and parts[1] != boot:  # the machine restarted in between
                    done = set(synced)
                boot = parts[1]
            elif parts[:1] == ["slab"] and len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                done.add((int(parts[1]), int(parts[2])))
            elif parts == ["checkpoint"]:
                marked = set(done)
            elif parts == ["synced"]:
                synced = marked
        return done if boot == boot_id() or self.store.can.durable else synced

    def restarted(self) -> bool:
        """Whether the journal has lines of an earlier boot on a store whose writes are not
        durable when they return: the machine restarted since, and what was written before may
        be lost (a step that cannot trust its own files then starts over: the mesh pass)."""
        if self.store.can.durable:
            return False
        boots = {p[1] for p in (line.split() for line in self.lines.read()) if p[:1] == ["boot"] and len(p) == 2}
        return bool(boots - {boot_id()})

    def open(self) -> None:
        self._append(f"boot {boot_id()}")

    def record(self, level: int, index: int) -> None:
        self._append(f"slab {level} {index}")
        busy = self._checkpoint is not None and self._checkpoint.is_alive()
        if self.store.can.sync and not self.store.can.durable and not busy \
                and time.monotonic() - self._last_checkpoint > CHECKPOINT_SECONDS:
            self._append("checkpoint")
            self._last_checkpoint = time.monotonic()
            self._checkpoint = threading.Thread(target=self._sync, name="checkpoint", daemon=True)
            self._checkpoint.start()

    def _sync(self) -> None:
        """Make every chunk written before the last `checkpoint` line durable, then say so (in
        a thread: a sync takes seconds, the pipeline goes on meanwhile)."""
        try:
            self.store.sync()
            self._append("synced", durable=True)
        except OutputError as exc:  # this checkpoint does not count; the run goes on
            log.warning("checkpoint: %s", exc)

    def _append(self, line: str, durable: bool = False) -> None:
        with self._lock:
            self.lines.add(line, durable)

    def close(self) -> None:
        if self._checkpoint is not None:
            self._checkpoint.join()


def forget(store: Store, step: str) -> None:
    """A finished run of a step that keeps no record: its chunks are made durable first (no
    journal is left to redo them after a crash of the machine), then its job record, journal and
    slab statistics go."""
    if store.can.sync and not store.can.durable:
        store.sync()
    store.delete(state_key(step))


def finished(job: dict | None, store: Store) -> bool:
    """Whether a job record says its run finished with its chunks still there: a run ends
    without a sync, so a restart of the machine since (a crash would lose unsynced chunks)
    makes it unfinished, to be resumed from its journal's last synced checkpoint. On a store
    whose writes are durable when they return, finished is finished."""
    return bool(job and job.get("complete")
                and (store.can.durable or job.get("boot", boot_id()) == boot_id()))


START, RESUME, COMPLETE = "start", "resume", "complete"  # what prepare_output found
#: how a job's slabs are cut: it changes the journal's entries, not the bytes written
SLAB_KEYS = ("slab_planes", "stream_axis", "tiles")


def prepare_output(store: Store, scale_keys: list[str], job: dict, overwrite: bool,
                   resume: bool, step: str = CONVERT) -> str:
    """Make the output ready for `job`: START it, RESUME an unfinished run of the same job, or
    find it COMPLETE (a finished run of the same job: nothing to do, so that a workflow manager
    can rerun a pipeline safely).

    Refuses an output that holds something else, unless `overwrite`, which removes only what
    this step writes. `convert` writes the info too; the other steps start from an info.
    """
    old = read_job(store, step)
    old_info = store.read("info") if step == CONVERT else None
    if overwrite:
        _remove_ours(store, scale_keys, step)
        return START
    if old is not None:
        if finished(old, store):
            # The slab plan follows --memory and --workers, which do not change the bytes.
            changed = difference(_without_slabs(old.get("job", {})), _without_slabs(job))
            if changed is None:
                return COMPLETE
            what = "conversion" if step == CONVERT else f"run of this step ({', '.join(scale_keys)})"
            raise OutputError(f"{store.url} already holds a finished {what} of something else "
                              f"({changed}); pass --overwrite to replace it")
        changed = difference(old.get("job", {}), job)
        if changed:
            raise OutputError(f"{store.url} holds an unfinished conversion of something else "
                              f"({changed}); pass --overwrite to start over")
        if old.get("complete") and not store.can.durable:
            log.warning("%s finished before the machine restarted and may not have reached the "
                        "disk: redoing what was written after its last checkpoint", store.url)
        if not resume:
            raise UsageError(f"{store.url} holds an unfinished run of this conversion; "
                             "run without --no-resume to finish it, or pass --overwrite")
        remove_temporary(store, scale_keys, step)
        return RESUME
    if old_info is not None:
        raise OutputError(f"{store.url} already holds a dataset (an info file); "
                          "pass --overwrite to replace it")
    for key in scale_keys:
        if any(True for _ in store.list(key)):
            whose = "" if step in (CONVERT, CHUNKS) else \
                " (another tool's, or of a finished run of this step, which keeps no record)"
            raise OutputError(f"{store.url}/{key} already holds files{whose}; pass --overwrite to "
                              "replace them")
    return START


def _without_slabs(job: dict) -> dict:
    return {k: v for k, v in job.items() if k not in SLAB_KEYS}


_TEMPORARY = re.compile(r"\..+\.\d+\.tmp")


def remove_temporary(store: Store, scale_keys: list[str], step: str = CONVERT) -> None:
    """Delete half-written files (`.<name>.<pid>.tmp`) that a killed run left: chunks, and the
    info and job records."""
    for key in [*scale_keys, state_key(step), ""]:
        for name in store.list(key):
            if _TEMPORARY.fullmatch(name.rsplit("/", 1)[-1]):
                store.delete(name)


def _remove_ours(store: Store, scale_keys: list[str], step: str) -> None:
    """--overwrite: remove the scales this job writes and, for a job that writes every scale,
    those our own job records say we wrote (never the scales of another tool's info:
    streamconv did not write them), then the records that describe the old data. Deletion
    does not follow links (`LocalStore`)."""
    keys = set(scale_keys)
    state = state_key(step)
    if step in (CONVERT, CHUNKS):  # every scale: the records of every step describe old data
        keys |= _written_keys(store)
        mine = (["info"] if step == CONVERT else []) + _records(store)
    else:  # a step: its own scales and records
        mine = [f"{state}/job.json", f"{state}/journal", f"{state}/spool"]
    for key in sorted(keys) + mine:
        store.delete(key)


def _records(store: Store) -> list[str]:
    return [k for k in store.list(STATE_DIR) if k != LOCK]


def _written_keys(store: Store) -> set[str]:
    """The scale keys named by the infos of our job records (`.streamconv/job.json`,
    `.streamconv/<step>/job.json`) and the keys a record lists as `writes` (the mesh
    directory); a record that does not parse, or names a path outside the output, names
    nothing."""
    keys: set[str] = set()
    steps = [k for k in _records(store) if k.rsplit("/", 1)[-1] not in ("job.json", "journal")]
    for key in [STATE_DIR, *steps]:
        try:
            data = store.read(f"{key}/job.json")
            job = json.loads(data)["job"] if data else {}
            # a pyramid's scales, or what another step names (the mesh pass: its directory)
            named = [s["key"] for s in job["info"]["scales"]] if "info" in job else job.get("writes", [])
            for name in named:
                check_key(name)
                keys.add(name)
        except (ValueError, KeyError, TypeError, OutputError):
            continue
    return keys
