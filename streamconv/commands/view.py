"""`streamconv view`: serve outputs and the Neuroglancer client from one local HTTP server.

Neuroglancer runs in the browser and reads a precomputed dataset over HTTP, so looking at an
output needs a server that allows cross-origin reads (CORS), answers Range requests (shard
files are read in pieces) and serves a `<chunk>.gz` file as `<chunk>` with `Content-Encoding:
gzip` (neuroglancer-scripts' convention, which browsers decode). The `neuroglancer` Python
package ships a built client; we serve its static files from the same server, so viewing needs
no internet access and no Neuroglancer Python viewer server.

That client is built for the Python integration: it must be loaded from `/v/<token>/` and
opens an event stream at `/events/<token>`. With a URL fragment, it takes the viewer state
from the fragment (`#!{json}`) and only the display configuration from the stream; we answer
that stream with nothing (the client keeps its defaults) and accept its state posts.

Nothing outside the served outputs is readable: keys are checked one segment at a time (no
`..`, no hidden names such as `.streamconv/`), and the resolved path, symlinks followed, must
stay under the output's own resolved directory. `Served` is the one seam a `Store` can back
later (object-store outputs).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO, Protocol

from ..annotations.layer import COLLECTION_DIR, annotation_layers, collection_info, split_collections
from ..errors import UsageError
from .viewmeshes import mesh_segments
from .viewstate import collection_box, load, placed_source, state_url
from .viewstate import viewer_state as placed_state

log = logging.getLogger("streamconv")

TOKEN = "streamconv"  # the client's viewer token: it only has to be the same in every URL
CLIENT_NAME = re.compile(r"[a-z0-9][a-zA-Z0-9_.-]*\.(?:js|map|css|wasm|html)")
MIME = {".css": "text/css", ".js": "application/javascript", ".html": "text/html; charset=utf-8",
        ".map": "application/json", ".wasm": "application/wasm", ".json": "application/json"}
COPY_BLOCK = 1 << 20


class Served(Protocol):
    """A dataset the server reads from: a local directory now, a Store later."""

    name: str
    url: str  # where it lies, as messages name it

    def info(self) -> bytes | None: ...

    def open(self, key: str) -> tuple[BinaryIO, int, bool] | None:
        """The file holding `key` (or `key.gz`), its size, and whether it is gzip-encoded."""
        ...

    def read(self, key: str) -> bytes | None:
        """A small file as it is stored (`transform.json`, `stats.json`), or None."""
        ...

    def read_range(self, key: str, start: int, stop: int) -> bytes | None:
        """Bytes [start, stop) of a file as it is stored (a shard's indexes), or None."""
        ...

    def list(self, prefix: str) -> Iterator[str]: ...


class LocalDataset:
    """An output directory; a key that is hidden, climbs out, or resolves outside is absent."""

    def __init__(self, name: str, root: str | os.PathLike) -> None:
        self.name = name
        self.root = Path(root).resolve()
        self.url = str(root)

    def _path(self, key: str) -> Path | None:
        """Where `key` resolves (symlinks followed), if that is inside the output."""
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") or p.startswith(".") or "\\" in p or "\0" in p
                          for p in parts):
            return None
        path = self.root.joinpath(*parts).resolve()
        return path if path.is_relative_to(self.root) else None

    def info(self) -> bytes | None:
        path = self._path("info")
        return path.read_bytes() if path is not None and path.is_file() else None

    def open(self, key: str) -> tuple[BinaryIO, int, bool] | None:
        for name, gzipped in ((key, False), (key + ".gz", True)):
            path = self._path(name)
            if path is not None and path.is_file():
                handle = path.open("rb")
                return handle, os.fstat(handle.fileno()).st_size, gzipped
        return None

    def read(self, key: str) -> bytes | None:
        path = self._path(key)
        return path.read_bytes() if path is not None and path.is_file() else None

    def read_range(self, key: str, start: int, stop: int) -> bytes | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        with path.open("rb") as f:
            f.seek(start)
            return f.read(max(0, stop - start))

    def list(self, prefix: str) -> Iterator[str]:
        directory = self._path(prefix)
        if directory is not None and directory.is_dir():
            for entry in sorted(directory.iterdir()):
                yield f"{prefix}/{entry.name}"


def served_datasets(outputs: Sequence[str | os.PathLike]) -> list[LocalDataset]:
    """One served dataset per output, named after its directory (made unique), each with an info;
    and the annotation collection a conversion wrote inside an output (`<name>/annotations`)."""
    datasets: list[LocalDataset] = []
    for output in outputs:
        path = Path(output)
        if not (path / "info").is_file():
            raise UsageError(f"{output} holds no precomputed dataset (no info file)")
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.resolve().name) or "data"
        unique, n = name, 2
        while any(d.name == unique for d in datasets):
            unique, n = f"{name}-{n}", n + 1
        datasets.append(LocalDataset(unique, path))
        inside = LocalDataset(f"{unique}/{COLLECTION_DIR}", path / COLLECTION_DIR)
        if collection_info(inside.info()) is not None:  # convert --annotations: shown over its volume
            datasets.append(inside)  # served by the volume's dataset: its URL is the volume's /annotations
    return datasets


def client_file(name: str) -> bytes | None:
    """A static file of the Neuroglancer client the `neuroglancer` package ships."""
    from importlib.resources import files

    if not CLIENT_NAME.fullmatch(name):
        return None
    try:
        path = files("neuroglancer.static").joinpath("client").joinpath(name)
    except ModuleNotFoundError:
        return None
    return path.read_bytes() if path.is_file() else None


def check_client() -> None:
    """Refuse before serving when the client is missing: a page that cannot load is worse than
    a one-line error that says what to install."""
    if client_file("index.html") is None:
        raise UsageError("the Neuroglancer client is not installed: pip install 'streamconv[view]' "
                         "(the neuroglancer package)")


def viewer_state(datasets: Sequence[Served], base_url: str, data_url: Callable[[str], str] | None = None) -> dict:
    """Neuroglancer's state (`viewstate`): one layer per volume or surface, placed and with its
    contrast, and one annotation layer per annotation collection over them, read from
    `data_url(name)` (default: this server's `/data/<name>`); meshed segments shown."""
    datasets, collections = split_collections(datasets)
    url = data_url or (lambda name: f"precomputed://{base_url}/data/{name}")
    shown = [load(d) for d in datasets]
    boxes = [collection_box(d) for d in collections]
    state = placed_state(shown, url, [b for b in boxes if b is not None])
    for d, s, layer in zip(datasets, shown, state["layers"]):
        if s.mesh is not None:
            layer["segments"] = mesh_segments(d, s.mesh)
    layers = annotation_layers(collections, state["layers"], url)
    for box, layer in zip(boxes, layers):  # a collection written in an image's voxels
        if isinstance(layer["source"], str) and box is not None and box.transform is not None:
            layer["source"] = placed_source(layer["source"], box.transform, box.resolution)  # its copy
    state["layers"] += layers
    return state


def hosted_state(outputs: Sequence[str | os.PathLike], base_url: str) -> dict:
    """The state for a Neuroglancer hosted elsewhere, the outputs copied under `base_url` (a
    bucket, a web server), each in a directory of its own name."""
    base = base_url.rstrip("/")
    return viewer_state(served_datasets(outputs), base, lambda name: f"precomputed://{base}/{name}")


def viewer_url(base_url: str, state: dict) -> str:
    """The client's page with the state after `#!`."""
    return state_url(f"{base_url}/v/{TOKEN}/", state)


@dataclass
class Viewer:
    """A running server: its address and the URL that opens the client on the datasets."""

    server: ThreadingHTTPServer
    base_url: str
    url: str
    thread: threading.Thread
    stopping: threading.Event

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def serve(outputs: Sequence[str | os.PathLike], host: str = "127.0.0.1", port: int = 0,
          client: bool = True) -> Viewer:
    """Start serving `outputs` (and the client) in a thread; `Viewer.stop` ends it."""
    datasets = served_datasets(outputs)
    if client:
        check_client()
    stopping = threading.Event()
    handler = type("Handler", (_Handler,), {"datasets": {d.name: d for d in datasets},
                                            "stopping": stopping})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    shown = f"[{host}]" if ":" in host else host
    base_url = f"http://{shown}:{server.server_address[1]}"
    url = viewer_url(base_url, viewer_state(datasets, base_url))
    thread = threading.Thread(target=server.serve_forever, name="view", daemon=True)
    thread.start()
    return Viewer(server, base_url, url, thread, stopping)


class _Handler(BaseHTTPRequestHandler):
    """GET/HEAD of `/data/<name>/<key>` and `/v/<token>/<client file>`; the client's event
    stream and state posts."""

    datasets: dict[str, Served]
    stopping: threading.Event
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        log.debug("view: " + format, *args)

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Expose-Headers", "Content-Range, Content-Length, Content-Encoding")
        super().end_headers()

    def do_OPTIONS(self) -> None:  # a CORS preflight (a Range header makes one)
        self.send_response(HTTPStatus.NO_CONTENT)
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Range, Content-Type")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:
        self._get(body=False)

    def do_GET(self) -> None:
        self._get(body=True)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 1 << 24))
        path = urllib.parse.urlsplit(self.path).path
        reply = b""
        if path == f"/state/{TOKEN}":  # the client's display configuration: accepted as is
            try:
                reply = json.dumps({"g": json.loads(body).get("g")}).encode()
            except (ValueError, AttributeError):
                return self._send_error(HTTPStatus.BAD_REQUEST)
        elif not path.startswith((f"/action/{TOKEN}", f"/credentials/{TOKEN}")):
            return self._send_error(HTTPStatus.NOT_FOUND)
        self._send_bytes(reply, "application/json", True)

    def _get(self, body: bool) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == f"/events/{TOKEN}":
            return self._events()
        if path in ("/", f"/v/{TOKEN}"):
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", f"/v/{TOKEN}/")
            self.send_header("Content-Length", "0")
            return self.end_headers()
        if path.startswith(f"/v/{TOKEN}/"):
            name = path[len(f"/v/{TOKEN}/"):] or "index.html"
            data = client_file(name)
            if data is None:
                return self._send_error(HTTPStatus.NOT_FOUND)
            return self._send_bytes(data, MIME.get(os.path.splitext(name)[1], "application/octet-stream"), body)
        if path.startswith("/data/"):
            try:
                key = urllib.parse.unquote(path[len("/data/"):], errors="strict")
            except UnicodeDecodeError:
                return self._send_error(HTTPStatus.NOT_FOUND)
            return self._data(key, body)
        self._send_error(HTTPStatus.NOT_FOUND)

    def _data(self, rest: str, body: bool) -> None:
        name, _, key = rest.partition("/")
        dataset = self.datasets.get(name)
        opened = dataset.open(key) if dataset is not None else None
        if opened is None:
            return self._send_error(HTTPStatus.NOT_FOUND)
        handle, size, gzipped = opened
        with handle:
            try:
                span = byte_range(self.headers.get("Range"), size)
            except RangeNotSatisfiable:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                return self.end_headers()
            start, stop = span if span is not None else (0, size)
            self.send_response(HTTPStatus.PARTIAL_CONTENT if span is not None else HTTPStatus.OK)
            if span is not None:
                self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
            self.send_header("Content-Type", "application/json" if key == "info" else "application/octet-stream")
            if gzipped:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(stop - start))
            self.end_headers()
            if body:
                handle.seek(start)
                left = stop - start
                while left > 0:
                    block = handle.read(min(COPY_BLOCK, left))
                    if not block:
                        break
                    self.wfile.write(block)
                    left -= len(block)

    def _events(self) -> None:
        """The client's state stream: opened and kept open, with nothing to send (its state is
        in the URL fragment), until the server stops."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            self.wfile.write(b": streamconv\n\n")
            self.wfile.flush()
            while not self.stopping.wait(15):
                self.wfile.write(b": keep-alive\n\n")
                self.wfile.flush()
        except OSError:  # the browser went away
            pass

    def _send_bytes(self, data: bytes, content_type: str, body: bool) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _send_error(self, status: HTTPStatus) -> None:
        data = f"{status.value} {status.phrase}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class RangeNotSatisfiable(Exception):
    """A Range that starts past the end of the file (416)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single `bytes=` range as (start, stop), or None: serve it all (also for forms we do not
    serve, such as several ranges, which HTTP lets a server ignore)."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":
        start, stop = max(0, size - int(last)), size
    else:
        start = int(first)
        stop = size if last == "" else min(size, int(last) + 1)
    if start >= size or stop <= start:
        raise RangeNotSatisfiable(header)
    return start, stop
