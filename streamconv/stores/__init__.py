"""Bytes by key: the `Store` protocol and its `Capabilities` (`base.py`), a local directory
(`local.py`), an http server read only (`http.py`), object stores through fsspec (`objects.py`),
the backoff of transient failures (`retry.py`), and the location and options that reach them
(`location.py`). `open_store` picks the store from a location."""

from __future__ import annotations

from .base import Capabilities, Store, StreamWriter, require
from .local import LocalStore
from .location import Location, StorageOptions, Where

__all__ = ["Capabilities", "Location", "LocalStore", "StorageOptions", "Store", "StreamWriter", "Where",
           "open_output", "open_store", "require"]


def open_store(where: Where) -> Store:
    """The store for a location: a local path (or `file://` URL), an http(s) URL (read only),
    or any other URL fsspec opens (`s3://`, `gs://`, `memory://`); `precomputed://` in front,
    as Neuroglancer writes sources, is dropped."""
    location = Location.of(where)
    if location.scheme in ("http", "https"):
        from .http import HttpStore  # urllib, http and ssl: imported only for an http location

        return HttpStore(location.url)
    if location.is_local:
        return LocalStore(location.path)
    from .objects import ObjectStore  # fsspec is imported only for a location that needs it

    return ObjectStore(location)


def open_output(where: Where) -> Store:
    """The store for a location we write to; a read-only one is refused before any work."""
    store = open_store(where)
    require(store, "write", "be written to (http locations are read only)")
    return store
