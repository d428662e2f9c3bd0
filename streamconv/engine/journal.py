"""The job record, the journal and the lock, in `<output>/.streamconv/`.

Each step has its own job record and journal: `convert` at the top of `.streamconv/`, the
step-by-step commands in `.streamconv/<step>/` (e.g. `fullres`, `scales`); the lock is shared.

* `job.json` says what this output is a conversion *of*: the input's fingerprint and every
  parameter that changes bytes, and whether the run finished.
* `journal` gets one line per slab whose chunks are all written and whose downsampled planes
  are handed on: `slab <scale> <index>`. A line is appended as soon as that is true, so after
  a killed process at most the slabs in flight are redone. Every `CHECKPOINT_SECONDS` the
  output filesystem is synced and a `sync` line is written: after a machine crash (a new boot
  id) only the lines before the last `sync` are trusted, since unsynced chunks may be lost.
* `lock` holds the pid and boot id of the run using the output; a lock whose process is gone
  (or from an earlier boot) is stale and taken over.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import psutil

from ..errors import OutputError, UsageError
from ..storage import Store

STATE_DIR = ".streamconv"
CONVERT = "convert"  # the step that writes everything, info included
CHECKPOINT_SECONDS = 30.0


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
        a, b = old.get(key), new.get(key)
        where = f"{path}.{key}" if path else key
        if isinstance(a, dict) and isinstance(b, dict):
            found = difference(a, b, where)
            if found:
                return found
        elif a != b:
            return f"{where} was {_short(a)}, now {_short(b)}"
    return None


def _short(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Lock:
    """One run per output: an exclusive file, taken over when its owner is gone."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "lock"

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{self.path.parent.parent}: cannot create the output "
                              f"({exc.strerror or exc})") from exc
        me = f"{os.getpid()} {boot_id()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = self.path.read_text().split() if self.path.exists() else []
                if len(owner) == 2 and owner[1] == boot_id() and psutil.pid_exists(int(owner[0])):
                    raise OutputError(f"{self.path.parent.parent} is being written by another run "
                                      f"(pid {owner[0]}); wait for it or stop it") from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me)
            return
        raise OutputError(f"cannot take the lock {self.path}")

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


class Journal:
    """Which slabs of which scales are complete, durable across killed processes."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "journal"
        self._file = None
        self._last_sync = time.monotonic()

    def completed(self) -> set[tuple[int, int]]:
        """Slabs recorded complete; after a reboot only those recorded before the last sync."""
        if not self.path.exists():
            return set()
        done: set[tuple[int, int]] = set()
        synced: set[tuple[int, int]] = set()
        boot = None
        for line in self.path.read_text().splitlines():
            parts = line.split()
            if parts[:1] == ["boot"] and len(parts) == 2:
                boot = parts[1]
            elif parts[:1] == ["slab"] and len(parts) == 3:
                done.add((int(parts[1]), int(parts[2])))
            elif parts == ["sync"]:
                synced = set(done)
        return done if boot == boot_id() else synced

    def open(self) -> None:
        self._file = open(self.path, "a")
        self._file.write(f"boot {boot_id()}\n")
        self._file.flush()

    def record(self, level: int, index: int) -> None:
        assert self._file is not None
        self._file.write(f"slab {level} {index}\n")
        self._file.flush()
        if time.monotonic() - self._last_sync > CHECKPOINT_SECONDS:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Make every chunk written so far durable, then say so in the journal."""
        if self._file is None:
            return
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.sync() if not hasattr(os, "syncfs") else os.syncfs(fd)  # type: ignore[attr-defined]
        finally:
            os.close(fd)
        self._file.write("sync\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._file is not None:
            self.checkpoint()
            self._file.close()
            self._file = None


def prepare_output(store: Store, scale_keys: list[str], job: dict, overwrite: bool,
                   resume: bool, step: str = CONVERT) -> bool:
    """Make the output ready for `job`; True when an unfinished run of the same job resumes.

    Refuses an output that holds something else, unless `overwrite`, which removes only what
    this step writes. `convert` writes the info too; the other steps start from an info.
    """
    old = read_job(store, step)
    old_info = store.read("info") if step == CONVERT else None
    if overwrite:
        _remove_ours(store, scale_keys, old_info, step)
        return False
    if old is not None:
        if old.get("complete"):
            what = "conversion" if step == CONVERT else f"run of this step ({', '.join(scale_keys)})"
            raise OutputError(f"{store.url} already holds a finished {what}; "
                              "pass --overwrite to replace it")
        changed = difference(old.get("job", {}), job)
        if changed:
            raise OutputError(f"{store.url} holds an unfinished conversion of something else "
                              f"({changed}); pass --overwrite to start over")
        if not resume:
            raise UsageError(f"{store.url} holds an unfinished run of this conversion; "
                             "run without --no-resume to finish it, or pass --overwrite")
        remove_temporary(store, scale_keys, step)
        return True
    if old_info is not None:
        raise OutputError(f"{store.url} already holds a dataset (an info file); "
                          "pass --overwrite to replace it")
    for key in scale_keys:
        if any(True for _ in store.list(key)):
            raise OutputError(f"{store.url}/{key} already holds files; pass --overwrite to replace them")
    return False


_TEMPORARY = re.compile(r"\..+\.\d+\.tmp")


def remove_temporary(store: Store, scale_keys: list[str], step: str = CONVERT) -> None:
    """Delete half-written files (`.<name>.<pid>.tmp`) that a killed run left: chunks, and the
    info and job records."""
    for key in [*scale_keys, state_key(step), ""]:
        for name in store.list(key):
            if _TEMPORARY.fullmatch(name.rsplit("/", 1)[-1]):
                store.delete(name)


def _remove_ours(store: Store, scale_keys: list[str], old_info: bytes | None, step: str) -> None:
    keys = set(scale_keys)
    if old_info is not None:
        try:
            keys |= {s["key"] for s in json.loads(old_info).get("scales", [])}
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    state = state_key(step)
    if step == CONVERT:  # everything: the info, and the records of every step
        mine = ["info"] + [k for k in store.list(STATE_DIR) if not k.endswith("/lock")]
    else:
        mine = [f"{state}/job.json", f"{state}/journal"]
    for key in sorted(keys) + mine:
        if key and not os.path.isabs(key) and ".." not in Path(key).parts:
            store.delete(key)
