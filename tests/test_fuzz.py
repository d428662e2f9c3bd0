"""Random and mutated `info` files and NIfTI headers, fed to every command that reads them
(in-process through typer's CliRunner, to stay fast): every run ends with exit code 0, 1 or 2
and at most one error line, never a traceback, a hang or a write outside OUTPUT."""

from __future__ import annotations

import json
import shutil
import signal
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_untrusted import snapshot
from typer.testing import CliRunner

import streamconv.cli  # noqa: F401  registers the commands with app
from streamconv.cli.app import app

FUZZ = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
SECONDS = 30  # one command on a 40 x 36 x 30 volume: a hang, not a slow run, past this


class Hang(BaseException):
    """Not an Exception: the CLI's error reporting must not turn it into a line."""


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def expire(*_: object) -> None:
        raise Hang(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def invoke(*args: object) -> None:
    """Run a command; it must end with 0, 1 or 2 and at most one line on stderr."""
    with time_limit(SECONDS):
        result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True)
    assert result.exit_code in (0, 1, 2), (args, result.output, result.exception)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args}: {result.exception!r}") from result.exception
    errors = [line for line in result.stderr.splitlines() if line.startswith("streamconv: error")]
    assert len(errors) <= 1 and "Traceback" not in result.output, result.output
    if result.exit_code:
        assert errors, result.output


ODD = st.one_of(
    st.integers(-2 ** 70, 2 ** 70), st.integers(-3, 70),
    st.floats(allow_nan=True, allow_infinity=True), st.none(), st.booleans(), st.text(max_size=8),
    st.lists(st.integers(-2, 2 ** 34), max_size=4), st.lists(st.floats(), max_size=4),
    st.sampled_from(["../x", "/abs", "a\0b", "", ".", "info", "a//b", "uint8", "bool", "object",
                     "float64", "raw", "jpeg", "png", "compressed_segmentation", "segmentation",
                     [[2 ** 20] * 3], [[0, 1, 1]], [1, 2], {"a": 1}]))
PLACES = st.sampled_from(
    ["@type", "type", "data_type", "num_channels", "scales", "mesh", "segment_properties"]
    + [f"scales.{k}.{m}" for k in (0, 1) for m in
       ("key", "size", "voxel_offset", "resolution", "chunk_sizes", "encoding",
        "compressed_segmentation_block_size", "sharding")]
    + [f"scales.0.{m}.{i}" for m in ("size", "resolution", "chunk_sizes") for i in (0, 2)])


def mutate(info: dict, place: str, value: object, remove: bool) -> None:
    *path, last = place.split(".")
    node: object = info
    for step in path:
        node = node[int(step)] if isinstance(node, list) else node[step]  # type: ignore[index]
    key: object = int(last) if isinstance(node, list) else last
    if remove and isinstance(node, dict):
        node.pop(last, None)
    elif isinstance(node, list) and isinstance(key, int) and key < len(node):
        node[key] = value
    elif isinstance(node, dict):
        node[last] = value


def commands(box: Path, vol: Path) -> list[tuple[list[object], Path]]:
    """(arguments, OUTPUT) of each command that reads the info at box/src."""
    src, out = box / "src", box / "out"
    return [(["convert-chunks", "--encoding", "raw", "--workers", "0", "--memory", "512MiB", src, out], out),
            (["convert-chunks", "--copy-info", "--workers", "0", "--memory", "512MiB", src, out], out),
            (["verify", vol, src], src),
            (["scale-stats", src], src),
            (["compute-scales", "--workers", "0", "--memory", "512MiB", src], src),
            (["mesh-to-precomputed", box / "cube.obj", src], src),
            (["link-mesh-fragments", box / "links.csv", src], src)]


@FUZZ
@given(st.lists(st.tuples(PLACES, ODD, st.booleans()), min_size=1, max_size=3))
def test_mutated_infos(pyramid, mutations):
    info = json.loads((pyramid / "src" / "info").read_text())
    for place, value, remove in mutations:
        try:
            mutate(info, place, value, remove)
        except (KeyError, IndexError, TypeError, ValueError):
            continue
    with tempfile.TemporaryDirectory() as tmp:
        for args, output in commands(Path(tmp) / "box", pyramid / "vol.nii"):
            box = Path(tmp) / "box"
            shutil.rmtree(box, ignore_errors=True)
            shutil.copytree(pyramid / "src", box / "src")
            (box / "src" / "info").write_text(json.dumps(info, allow_nan=True))
            (box / "cube.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
            (box / "links.csv").write_text("1,cube\n")
            before = snapshot(Path(tmp), skip=output)
            invoke(*args)
            assert snapshot(Path(tmp), skip=output) == before, args


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_random_info_bytes(pyramid, data):
    with tempfile.TemporaryDirectory() as tmp:
        box = Path(tmp) / "box"
        shutil.copytree(pyramid / "src", box / "src")
        (box / "src" / "info").write_bytes(data)
        before = snapshot(Path(tmp), skip=box / "out")
        invoke("convert-chunks", "--encoding", "raw", "--workers", "0", box / "src", box / "out")
        invoke("verify", pyramid / "vol.nii", box / "src")
        assert snapshot(Path(tmp), skip=box / "out") == before


# NIfTI-1 header fields: (offset, struct format) of dim, datatype, bitpix, pixdim, vox_offset,
# scl_slope, scl_inter, qform_code, sform_code, xyzt_units.
FIELDS = [(40 + 2 * i, "<h") for i in range(8)] + [(70, "<h"), (72, "<h")] \
    + [(76 + 4 * i, "<f") for i in range(8)] + [(108, "<f"), (112, "<f"), (116, "<f"),
                                                (252, "<h"), (254, "<h"), (123, "<b")]


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(range(len(FIELDS))),
                          st.integers(-2 ** 15, 2 ** 15 - 1), st.floats(width=32)),
                min_size=1, max_size=4))
def test_mutated_nifti_headers(pyramid, changes):
    header = bytearray((pyramid / "vol.nii").read_bytes())
    for index, number, real in changes:
        offset, fmt = FIELDS[index]
        value = real if fmt == "<f" else max(-128, min(127, number)) if fmt == "<b" else number
        struct.pack_into(fmt, header, offset, value)
    with tempfile.TemporaryDirectory() as tmp:
        vol = Path(tmp) / "in" / "vol.nii"
        vol.parent.mkdir()
        vol.write_bytes(bytes(header))
        for args, output in [(["convert", "--workers", "0", "--memory", "512MiB", vol, Path(tmp) / "out"],
                              Path(tmp) / "out"),
                             (["volume-to-precomputed", "--generate-info", vol, Path(tmp) / "gen"],
                              Path(tmp) / "gen"),
                             (["verify", vol, pyramid / "src"], Path(tmp) / "none")]:
            before = snapshot(Path(tmp), skip=output)
            invoke(*args)
            assert snapshot(Path(tmp), skip=output) == before, args
