"""A location to read or write a pyramid: a path or URL, and the options of its filesystem.

Credentials and endpoints come from each filesystem's own environment and configuration
(`AWS_*`, `AWS_ENDPOINT_URL`, `GOOGLE_APPLICATION_CREDENTIALS`...); `StorageOptions` carries the
rest (`--storage-option KEY=VALUE`). Options may hold secrets: they go to the filesystem and to
the worker processes (inside a pickled store), never into a message, a log or a job record, so
a `Location` prints as its URL alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError

PRECOMPUTED = "precomputed://"  # Neuroglancer's prefix for a precomputed source


@dataclass(frozen=True)
class StorageOptions:
    """Keyword arguments of an fsspec filesystem, from `KEY=VALUE` pairs. A dotted key nests
    (`client_kwargs.region_name=eu-west-1`); a value that reads as JSON (numbers, true, false,
    null, objects) is that value, anything else a string."""

    items: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, pairs: list[str] | tuple[str, ...]) -> StorageOptions:
        items = []
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"--storage-option takes KEY=VALUE, got {pair.split('=')[0]!r}=...")
            items.append((key.strip(), value))
        return cls(tuple(items))

    def kwargs(self) -> dict[str, Any]:
        """The filesystem's keyword arguments."""
        out: dict[str, Any] = {}
        for key, text in self.items:
            try:
                value: Any = json.loads(text)
            except ValueError:
                value = text
            *outer, last = key.split(".")
            target = out
            for part in outer:
                target = target.setdefault(part, {})
            target[last] = value
        return out

    def __repr__(self) -> str:  # never the values: they may be secrets
        return f"StorageOptions({', '.join(k for k, _ in self.items)})"


@dataclass(frozen=True)
class Location:
    """A path or URL (`s3://bucket/path`, `gs://`, `memory://`, `file://`, `http(s)://`,
    each optionally behind `precomputed://`) and the options of its filesystem."""

    url: str
    options: StorageOptions = field(default_factory=StorageOptions)

    @classmethod
    def of(cls, where: str | os.PathLike | Location, options: StorageOptions | None = None) -> Location:
        if isinstance(where, Location):
            return where if options is None else cls(where.url, options)
        text = os.fspath(where)
        if text.startswith(PRECOMPUTED):
            text = text[len(PRECOMPUTED):]
        return cls(text, options or StorageOptions())

    @property
    def scheme(self) -> str:
        """The URL's scheme, or '' for a plain path."""
        head, sep, _ = self.url.partition("://")
        return head.lower() if sep and head.isidentifier() else ""

    @property
    def is_local(self) -> bool:
        """A plain path or a `file://` URL: a directory of this machine."""
        return self.scheme in ("", "file")

    @property
    def path(self) -> str:
        """A local path: the URL without `file://`."""
        return self.url[len("file://"):] if self.scheme == "file" else self.url

    def __str__(self) -> str:
        return self.url


#: what the library's functions take for an input or an output
Where = str | os.PathLike | Location
