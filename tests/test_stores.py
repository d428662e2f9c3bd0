"""The store contract: the same tests over every store (as zarr-python's `StoreTests`): a local
directory by both of its write paths, `memory://`, S3 (moto on loopback) and http (read side,
a directory served on loopback). What a store cannot do it declares in `Capabilities`, and a
test of that capability is skipped for it; a read-only store refuses every write."""

from __future__ import annotations

import functools
import http.server
import pickle
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamconv.errors import OutputError, UsageError
from streamconv.stores import LocalStore, Location, StorageOptions, Store, open_output, open_store

KEY = "scale/0-64_0-64_0-64"
DATA = bytes(range(256)) * 3


class Http:
    """A directory served over http on 127.0.0.1; values are put there as files."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_Quiet, directory=str(root))
        self.root, self.server = root, http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def put(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass



@pytest.fixture(scope="module")
def http_root(tmp_path_factory) -> Iterator[Http]:
    served = Http(tmp_path_factory.mktemp("served"))
    try:
        yield served
    finally:
        served.close()


@pytest.fixture(params=["local-linked", "local-renamed", "memory", "s3", "http"])
def kind(request) -> str:
    return request.param


@pytest.fixture
def store(kind: str, tmp_path: Path, request, monkeypatch: pytest.MonkeyPatch) -> Store:
    """A fresh, empty store of each kind."""
    if kind.startswith("local"):
        local = LocalStore(tmp_path / "out")
        local._unnamed = kind == "local-linked"  # renamed: a filesystem without O_TMPFILE
        return local
    if kind == "memory":
        return open_output(f"memory://contract-{uuid.uuid4().hex}/out")
    if kind == "s3":
        s3 = request.getfixturevalue("s3")
        for key, value in s3.env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("STREAMCONV_RETRIES", "2")
        # the endpoint as an option too: fsspec caches filesystems by their options, and one
        # cached by an earlier module would still point at that module's (stopped) server
        options = StorageOptions.parse([f"endpoint_url={s3.endpoint}"])
        return open_output(Location.of(f"s3://{s3.bucket()}/out", options))
    served = request.getfixturevalue("http_root")
    prefix = uuid.uuid4().hex
    (served.root / prefix).mkdir()
    return open_store(f"{served.url}/{prefix}")


@pytest.fixture
def put(store: Store, request):
    """Puts a value in the store: through the store when it writes, beside the server when not."""
    if store.can.write:
        return lambda key, data: store.write(key, data)
    served = request.getfixturevalue("http_root")
    prefix = store.url.rsplit("/", 1)[1]
    return lambda key, data: served.put(f"{prefix}/{key}", data)


def _needs(store: Store, what: str) -> None:
    if not getattr(store.can, what):
        pytest.skip(f"{store.url}: no {what}")


# reading: every store

def test_an_absent_key_is_none(store: Store) -> None:
    assert store.read(KEY) is None
    assert store.read_range(KEY, 0, 4) is None
    assert store.size(KEY) is None


def test_a_value_reads_back_whole_in_ranges_and_by_size(store: Store, put) -> None:
    put(KEY, DATA)
    put("info", b"{}")
    assert store.read(KEY) == DATA
    assert store.read("info") == b"{}"
    assert store.read_range(KEY, 0, 1) == DATA[:1]
    assert store.read_range(KEY, 300, 700) == DATA[300:700]
    assert store.read_range(KEY, len(DATA) - 5, len(DATA)) == DATA[-5:]
    assert store.size(KEY) == len(DATA)


def test_an_empty_value_is_not_an_absent_one(store: Store, put) -> None:
    put("empty", b"")
    assert store.read("empty") == b""
    assert store.size("empty") == 0


def test_a_store_pickles_to_the_same_store(store: Store, put) -> None:
    put(KEY, DATA)
    again = pickle.loads(pickle.dumps(store))
    assert again.url == store.url and again.can == store.can
    assert again.read(KEY) == DATA


def test_a_read_only_store_refuses_every_write(store: Store) -> None:
    if store.can.write:
        pytest.skip("writes")
    writes = [lambda: store.write(KEY, b"x"), lambda: store.write_all([(KEY, b"x")]),
              lambda: store.writer(KEY), lambda: store.write_at(KEY, [(0, b"x")]),
              lambda: store.delete(KEY), lambda: store.create(KEY, b"x"),
              lambda: store.append(KEY, b"x"), lambda: list(store.list())]
    for write in writes:
        with pytest.raises(OutputError, match="read only"):
            write()
    with pytest.raises(UsageError, match="cannot be written to"):
        open_output(store.url)  # before any work


# writing: the stores that declare it

def test_a_rewrite_replaces_the_whole_value(store: Store) -> None:
    _needs(store, "write")
    store.write(KEY, DATA)
    store.write(KEY, b"shorter", durable=True)
    assert store.read(KEY) == b"shorter"
    store.write(KEY, memoryview(DATA)[10:20])  # what the codecs hand over
    assert store.read(KEY) == DATA[10:20]


def test_write_all_writes_each_value(store: Store) -> None:
    _needs(store, "write")
    items = {f"1_1_1/{i}-{i + 1}_0-1_0-1": bytes([i]) * i for i in range(40)}
    store.write_all(iter(items.items()))
    assert {key: store.read(key) for key in items} == items


def test_a_writer_appears_whole_at_commit_and_not_at_all_on_abort(store: Store) -> None:
    _needs(store, "write")
    store.write("spool/segment", b"0123456789")
    writer = store.writer("shard.shard")
    writer.write(b"head:")
    writer.copy("spool/segment", 2, 7)  # a range of another key, appended
    writer.write(memoryview(b":tail"))
    assert store.read("shard.shard") is None
    writer.commit(durable=True)
    assert store.read("shard.shard") == b"head:23456:tail"
    aborted = store.writer("other.shard")
    aborted.write(b"never")
    aborted.abort()
    assert store.read("other.shard") is None


def test_delete_removes_a_key_and_everything_below(store: Store) -> None:
    _needs(store, "write")
    for key in ("a/b/c", "a/b/d", "a/e", "f"):
        store.write(key, b"x")
    store.delete("a/b")
    store.delete("a/b")  # absent: nothing to do
    store.delete("f")
    assert [store.read(k) for k in ("a/b/c", "a/b/d", "a/e", "f")] == [None, None, b"x", None]


def test_list_names_what_is_directly_below_a_prefix(store: Store) -> None:
    _needs(store, "list")
    for key in ("info", "s/1", "s/2", "s/t/3"):
        store.write(key, b"x")
    assert sorted(store.list("s")) == ["s/1", "s/2", "s/t"]
    assert sorted(store.list()) == ["info", "s"]
    assert list(store.list("absent")) == []


def test_create_writes_only_where_nothing_is(store: Store) -> None:
    _needs(store, "lock")
    assert store.create(".streamconv/lock", b"first")
    assert not store.create(".streamconv/lock", b"second")
    assert store.read(".streamconv/lock") == b"first"


def test_append_adds_to_a_value_and_creates_it(store: Store) -> None:
    _needs(store, "append")
    store.append(".streamconv/journal", b"one\n")
    store.append(".streamconv/journal", b"two\n", durable=True)
    assert store.read(".streamconv/journal") == b"one\ntwo\n"


def test_write_at_places_each_piece_at_its_offset(store: Store) -> None:
    _needs(store, "write_at")
    store.write_at("raw.shard", [(4, b"4567"), (0, b"0123")])
    store.write_at("raw.shard", [(8, memoryview(b"89"))])
    assert store.read("raw.shard") == b"0123456789"


def test_sync_makes_what_was_written_durable(store: Store) -> None:
    _needs(store, "sync")
    store.write(KEY, DATA)
    store.sync()
    assert store.read(KEY) == DATA


def test_each_kind_declares_what_it_can(store: Store, kind: str) -> None:
    """The capabilities callers rely on instead of the store's type (docs/storage.md)."""
    can = store.can
    expected = {"local-linked": (True, True, True, True), "local-renamed": (True, True, True, True),
                "memory": (True, True, False, False), "s3": (True, True, False, False),  # conditional PUT
                "http": (False, False, False, False)}[kind]
    assert (can.write, can.lock, can.append, can.write_at) == expected
    assert can.durable == (kind in ("memory", "s3"))
    assert can.shared == (kind != "memory")  # memory:// is one process's own
