"""Stores beyond the local directory: object stores (S3, GCS, anything fsspec opens, in
`objects.py`) and the location and options that reach them (`location.py`).
`streamconv.storage` holds the `Store` protocol and opens a location."""

from .location import Location, StorageOptions, Where

__all__ = ["Location", "StorageOptions", "Where"]
