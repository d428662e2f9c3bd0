"""The run's state through the Store (engine/journal.py): a read-only output is refused before
any work, the lock keeps a second writer out and takes over a dead owner's, the journal keeps
what was recorded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from nilearn.datasets import MNI152_FILE_PATH

import streamconv
from streamconv.engine.journal import Journal, Lock, boot_id
from streamconv.errors import OutputError, UsageError
from streamconv.stores.http import HttpStore
from streamconv.stores.local import LocalStore

STREAMCONV = str(Path(sys.executable).with_name("streamconv"))


def test_a_read_only_output_is_refused_before_any_work(tmp_path):
    result = subprocess.run([STREAMCONV, "convert", MNI152_FILE_PATH, "http://127.0.0.1:9/out"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "streamconv: error: http://127.0.0.1:9/out: this location cannot be written to (http locations "
        "are read only)"]
    with pytest.raises(UsageError):
        Lock(HttpStore("http://127.0.0.1:9/out"))
    with pytest.raises(UsageError):
        streamconv.convert_chunks(tmp_path, "http://127.0.0.1:9/out", encoding="raw")


def test_the_lock_keeps_a_second_run_out_and_a_dead_owner_is_taken_over(tmp_path):
    store = LocalStore(tmp_path)
    first = Lock(store)
    first.acquire()
    with pytest.raises(OutputError, match=f"being written by another run \\(pid {os.getpid()}\\)"):
        Lock(store).acquire()
    first.release()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    store.write(".streamconv/lock", f"{dead} {boot_id()}".encode())
    Lock(store).acquire()  # its process is gone: stale
    assert store.read(".streamconv/lock") == f"{os.getpid()} {boot_id()}".encode()


def test_the_journal_keeps_what_was_recorded(tmp_path):
    store = LocalStore(tmp_path)
    journal = Journal(store, "scales")
    journal.open()
    for slab in [(0, 0), (0, 1), (1, 0)]:
        journal.record(*slab)
    journal.close()
    assert Journal(store, "scales").completed() == {(0, 0), (0, 1), (1, 0)}
    assert Journal(store).completed() == set()  # convert's own journal is another
