"""LocalStore: whole files under their final names only, on filesystems with and without O_TMPFILE."""

from __future__ import annotations

import os

import pytest

from streamconv.stores.local import LocalStore


def stores(root):
    linked = LocalStore(root / "linked")
    renamed = LocalStore(root / "renamed")
    renamed._unnamed = False  # what a filesystem without O_TMPFILE (or a platform without it) gets
    return [linked, renamed]


@pytest.mark.parametrize("durable", [False, True])
def test_writes_and_rewrites_leave_only_the_final_file(tmp_path, durable):
    modes = set()
    for store in stores(tmp_path):
        store.write("scale/0-64_0-64_0-64", b"first", durable=durable)
        store.write("scale/0-64_0-64_0-64", b"second, longer", durable=durable)  # a rewrite on resume
        store.write("info", b"{}", durable=durable)
        assert store.read("scale/0-64_0-64_0-64") == b"second, longer"
        assert sorted(os.listdir(store.root)) == ["info", "scale"]
        assert os.listdir(store.root / "scale") == ["0-64_0-64_0-64"]
        modes.add((store.root / "info").stat().st_mode)
    assert len(modes) == 1  # the same permissions either way


def test_a_store_sent_to_a_forked_process_writes_there(tmp_path):
    store = LocalStore(tmp_path)
    store.write("a", b"parent")
    pid = os.fork()
    if pid == 0:  # the child must name its own open file, not the parent's fd of the same number
        try:
            store.write("b", b"child")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert store.read("a") == b"parent" and store.read("b") == b"child"
