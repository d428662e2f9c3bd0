"""The job record in `<output>/.streamconv/`: what this output holds and whether it is finished.

It guards an output against a second, different run; resuming an unfinished run builds on it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import OutputError
from ..storage import Store

JOB_KEY = ".streamconv/job.json"


def read_job(store: Store) -> dict | None:
    data = store.read(JOB_KEY)
    return None if data is None else json.loads(data)


def write_job(store: Store, job: dict) -> None:
    store.write(JOB_KEY, json.dumps(job, indent=1, sort_keys=True).encode())


def prepare_output(store: Store, scale_keys: list[str], overwrite: bool) -> None:
    """Refuse an output that holds a dataset, unless `overwrite`, which removes only what we write."""
    job = read_job(store)
    old_info = store.read("info")
    if not overwrite:
        if job is not None:
            state = "a finished" if job.get("complete") else "an unfinished"
            raise OutputError(f"{store.url} already holds {state} conversion; "
                              "pass --overwrite to replace it")
        if old_info is not None:
            raise OutputError(f"{store.url} already holds a dataset (an info file); "
                              "pass --overwrite to replace it")
        for key in scale_keys:
            if any(True for _ in store.list(key)):
                raise OutputError(f"{store.url}/{key} already holds files; pass --overwrite to replace them")
        return
    keys = set(scale_keys)
    if old_info is not None:
        try:
            keys |= {s["key"] for s in json.loads(old_info).get("scales", [])}
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    for key in sorted(keys) + ["info", ".streamconv"]:
        if key and not os.path.isabs(key) and ".." not in Path(key).parts:
            store.delete(key)
