"""A run on a new output that fails before it wrote any data leaves nothing behind.

Without this, a truncated input, a damaged section of a stack or the free-space refusal left
`OUT/.streamconv/` (a job record and an empty journal) or an empty `OUT/`, and the next run said
"resuming: 0 slabs were complete" (issue 28). An output that existed before the run is left as
the run left it; one that holds chunks (or anything but our run state) is kept, so that it
resumes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..stores import Location, Where, open_store
from ..stores.base import Store
from .journal import LOCK, STATE_DIR, Lock

log = logging.getLogger("streamconv")


@contextmanager
def nothing_left_on_failure(output: Where) -> Iterator[None]:
    """Around a run writing `output`: if it fails and the output did not exist before it, remove
    what the run left there, unless it wrote data."""
    where = Location.of(output)
    existed = _exists(where)
    try:
        yield
    except BaseException:
        if not existed:
            try:
                _remove_unwritten(where)
            except Exception as exc:  # best effort: the run's own error is the one to report
                log.debug("%s: not cleaned up (%s)", where, exc)
        raise


def _exists(where: Location) -> bool:
    if where.is_local:
        return os.path.lexists(where.path)
    try:
        return any(True for _ in open_store(where).list())
    except Exception:  # cannot tell (any error of a remote filesystem): keep whatever is there
        return True


def _holds_data(store: Store, where: Location) -> bool:
    """Anything but our run state: a file anywhere (a local directory), a key (an object store,
    where empty directories do not exist)."""
    if not where.is_local:
        return any(key != STATE_DIR for key in store.list())
    for directory, subdirectories, files in os.walk(where.path):
        if directory == where.path:
            subdirectories[:] = [d for d in subdirectories if d != STATE_DIR]
        if files:
            return True
    return False


def _remove_unwritten(where: Location) -> None:
    store = open_store(where)
    if _holds_data(store, where):
        return
    lock = Lock(store)
    lock.acquire()  # not under another run that started meanwhile (OutputError: left alone)
    try:
        if _holds_data(store, where):
            return
        for key in store.list(STATE_DIR):
            if key != LOCK:
                store.delete(key)
        for key in store.list():
            if key != STATE_DIR:
                store.delete(key)  # empty directories
    finally:
        lock.release()
    _remove_empty(where, os.path.join(where.path, STATE_DIR), where.path)


def remove_empty_state(output: Where) -> None:
    """`OUTPUT/.streamconv/` once a run that keeps no record has released the lock, if empty
    (object stores have no empty directories)."""
    where = Location.of(output)
    _remove_empty(where, os.path.join(where.path, STATE_DIR))


def _remove_empty(where: Location, *directories: str) -> None:
    if where.is_local:  # only where they are empty: a run that started since keeps them
        for directory in directories:
            try:
                os.rmdir(directory)
            except OSError:
                pass
