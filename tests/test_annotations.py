"""Annotations from tables (issue 27): every row read back by an independent reader
(`annotation_reader`, written from the format notes) through all three indexes, sharded and
unsharded; the `neuroglancer` package's own writer given the same rows decodes to the same
annotations; a SIGKILL mid-run and a rerun give the bytes of an uninterrupted run."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from annotation_reader import Collection, read_collection

from streamconv.annotations import AnnotationOptions, write_annotations
from streamconv.annotations.hashing import murmur64
from streamconv.format.murmur import murmurhash3_x86_128_low64

sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))

from make_annotations import write_table

STREAMCONV = str(Path(sys.executable).with_name("streamconv"))
RESOLUTION = (1000.0, 1000.0, 2000.0)
OPTIONS = AnnotationOptions(resolution="1000,1000,2000", limit=500)
CELL_TYPES = ["glia", "neuron", "unknown"]  # the enum's labels: alphabetical


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tables") / "cells.csv"
    write_table(path, 100_000, "point", seed=3)
    return path


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","))


def expected_geometry(row: dict[str, str], names: list[str], shifted: list[bool]) -> np.ndarray:
    """Table coordinates as the collection holds them: voxel centres (+0.5), float32."""
    return np.array([float(row[n]) + (0.5 if s else 0.0) for n, s in zip(names, shifted)], np.float32)


def segments(text: str) -> list[int]:
    return [int(v) for v in text.split(";") if int(v)]


def check_points(collection: Collection, rows: list[dict[str, str]]) -> None:
    """Every row by id, in the one cell of one level that holds its position, under each of
    its segments; values and property types as the table says."""
    info = collection.info
    types = {p["id"]: p for p in info["properties"]}
    assert types["score"]["type"] == "float32" and types["count"]["type"] == "uint16"
    assert types["cell_type"]["enum_labels"] == CELL_TYPES and types["color"]["type"] == "rgb"
    assert sorted(collection.by_id) == list(range(len(rows)))
    for i, row in enumerate(rows):
        a = collection.by_id[i]
        assert np.array_equal(np.array(a.geometry, np.float32), expected_geometry(row, ["x", "y", "z"], [True] * 3))
        assert a.properties["score"] == np.float32(row["score"])
        assert a.properties["count"] == int(row["count"])
        assert CELL_TYPES[a.properties["cell_type"]] == row["cell_type"]
        assert a.properties["color"] == tuple(bytes.fromhex(row["color"][1:]))
        assert a.related == [segments(row["segment"])]
    lower = np.array(info["lower_bound"])
    seen: dict[int, int] = {}
    for number, (level, cells) in enumerate(zip(info["spatial"], collection.spatial)):
        for cell, entries in cells.items():
            assert 0 < len(entries) <= level["limit"]
            for ident, annotation in entries:
                assert ident not in seen, f"annotation {ident} at two levels or in two cells"
                seen[ident] = number
                stored = collection.by_id[ident]
                assert (annotation.geometry, annotation.properties) == (stored.geometry, stored.properties)
                where = np.floor((np.array(annotation.geometry) - lower) / level["chunk_size"])
                assert tuple(np.clip(where, 0, np.array(level["grid_shape"]) - 1).astype(int)) == cell
    assert len(seen) == len(rows)
    big = max((e for cells in collection.spatial for e in cells.values()), key=len)
    assert [i for i, _ in big] != sorted(i for i, _ in big), "a cell's annotations are in random order"
    assert len(collection.spatial) > 2 and len(collection.spatial[0][(0, 0, 0)]) < len(rows) / 10
    expected: dict[int, set[int]] = {}
    for i, row in enumerate(rows):
        for s in segments(row["segment"]):
            expected.setdefault(s, set()).add(i)
    assert {s: {i for i, _ in v} for s, v in collection.related[0].items()} == expected


def test_every_table_format_gives_the_same_collection(tmp_path: Path) -> None:
    """CSV, TSV, JSON Lines, JSON (Neuroglancer's own: a position as a list) and Parquet."""
    path = tmp_path / "cells.csv"
    write_table(path, 2000, "point", seed=9)
    rows = rows_of(path)
    (tmp_path / "cells.tsv").write_text(path.read_text().replace(",", "\t"))
    objects = [{"point": [float(r["x"]), float(r["y"]), float(r["z"])], "score": float(r["score"]),
                "count": int(r["count"]), "cell_type": r["cell_type"], "color": r["color"],
                "segment": segments(r["segment"])} for r in rows]
    (tmp_path / "cells.jsonl").write_text("\n".join(json.dumps(o) for o in objects))
    (tmp_path / "cells.json").write_text(json.dumps({"annotations": objects}))
    outputs = []
    for name in ["cells.csv", "cells.tsv", "cells.jsonl", "cells.json"]:
        write_annotations(tmp_path / name, tmp_path / f"out-{name}", OPTIONS, workers=0)
        outputs.append(_files(tmp_path / f"out-{name}"))
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    columns = {k: [r[k] for r in rows] for k in ["x", "y", "z", "score", "cell_type", "color"]}
    table = pa.table({**{k: pa.array([float(v) for v in columns[k]]) for k in ["x", "y", "z", "score"]},
                      "count": pa.array([int(r["count"]) for r in rows], pa.int32()),
                      "cell_type": columns["cell_type"], "color": columns["color"],
                      "segment": pa.array([segments(r["segment"]) for r in rows], pa.list_(pa.uint64()))})
    pq.write_table(table, tmp_path / "cells.parquet", row_group_size=700)
    write_annotations(tmp_path / "cells.parquet", tmp_path / "out-parquet", OPTIONS, workers=0)
    outputs.append(_files(tmp_path / "out-parquet"))
    assert all(o == outputs[0] for o in outputs[1:])


def test_verify_finds_every_row_and_a_flipped_byte(table: Path, tmp_path: Path) -> None:
    small = tmp_path / "cells.csv"
    with open(table) as src, open(small, "w") as out:
        for _, line in zip(range(3001), src):
            out.write(line)
    write_annotations(small, tmp_path / "out", OPTIONS, workers=0)
    ok = subprocess.run([STREAMCONV, "verify", str(small), str(tmp_path / "out")], capture_output=True, text=True)
    assert ok.returncode == 0 and "3000 annotations found" in ok.stderr, ok.stderr
    for index in ["by_id", "spatial/0", "rel_segment"]:
        victim = sorted(p for p in (tmp_path / "out" / index).iterdir())[0]
        original = victim.read_bytes()
        data = bytearray(original)
        data[len(data) // 2] ^= 0x40
        victim.write_bytes(bytes(data))
        bad = subprocess.run([STREAMCONV, "verify", str(small), str(tmp_path / "out")], capture_output=True,
                             text=True)
        assert bad.returncode == 1 and bad.stderr.startswith("streamconv: error:"), (index, bad.stderr)
        victim.write_bytes(original)


def test_murmur64_is_the_shard_hash() -> None:
    values = np.array([0, 1, 42, 2 ** 63 + 5, 2 ** 64 - 1, 123456789012345], np.uint64)
    assert murmur64(values).tolist() == [murmurhash3_x86_128_low64(int(v)) for v in values]


@pytest.fixture(scope="module")
def sharded(table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The table's collection, sharded (written once for the tests that read it)."""
    out = tmp_path_factory.mktemp("sharded") / "out"
    report = write_annotations(table, out, OPTIONS, workers=2, memory="96MiB")
    assert report.annotations == 100_000
    return out


def test_100000_points_sharded(table: Path, sharded: Path) -> None:
    info = json.loads((sharded / "info").read_text())
    assert "sharding" in info["by_id"] and "sharding" in info["spatial"][-1]
    check_points(read_collection(sharded), rows_of(table))


def test_points_unsharded_same_annotations(table: Path, sharded: Path, tmp_path: Path) -> None:
    """100,000 rows as files, one per key (a TSV of the same rows); the same annotations as the
    sharded output."""
    tsv = tmp_path / "cells.tsv"
    tsv.write_text(table.read_text().replace(",", "\t"))
    write_annotations(tsv, tmp_path / "files", AnnotationOptions(resolution="1000,1000,2000", limit=500,
                                                                 sharding="off"), workers=2)
    info = json.loads((tmp_path / "files" / "info").read_text())
    assert "sharding" not in info["by_id"] and not any("sharding" in level for level in info["spatial"])
    files, shards = read_collection(tmp_path / "files"), read_collection(sharded)
    check_points(files, rows_of(tsv))
    assert files.by_id == shards.by_id and files.spatial == shards.spatial and files.related == shards.related


def _cells_of_box(low: np.ndarray, high: np.ndarray, level: dict, lower: np.ndarray) -> set[tuple[int, ...]]:
    top = np.array(level["grid_shape"]) - 1
    first = np.clip(np.floor((low - lower) / level["chunk_size"]), 0, top).astype(int)
    last = np.clip(np.floor((high - lower) / level["chunk_size"]), 0, top).astype(int)
    return {(x, y, z) for x in range(first[0], last[0] + 1) for y in range(first[1], last[1] + 1)
            for z in range(first[2], last[2] + 1)}


def _segment_meets(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> bool:
    """Does the segment a-b meet the box [lo, hi]? (sampled finely: the test's own check)."""
    t = np.linspace(0, 1, 1001)[:, None]
    points = a + t * (b - a)
    size = hi - lo
    return bool(np.any(np.all((points >= lo - 1e-3 * size) & (points <= hi + 1e-3 * size), axis=1)))


@pytest.mark.parametrize("kind", ["line", "box", "ellipsoid"])
def test_lines_boxes_ellipsoids(kind: str, tmp_path: Path) -> None:
    """Two-vector types: geometry read back, and each annotation listed at one level in the
    cells it meets: boxes in exactly the cells they overlap, lines in their endpoints' cells
    and only cells they cross, ellipsoids in their centre's cell."""
    path = tmp_path / f"{kind}.csv"
    write_table(path, 1500 if kind == "line" else 3000, kind, size=(64, 64, 32), seed=5, plain=True)
    options = AnnotationOptions(type=kind, resolution="1000,1000,2000", limit=100)
    write_annotations(path, tmp_path / "out", options, workers=0)
    collection = read_collection(tmp_path / "out")
    info = collection.info
    assert info["annotation_type"] == {"box": "axis_aligned_bounding_box"}.get(kind, kind)
    names = ["x", "y", "z", "rx", "ry", "rz"] if kind == "ellipsoid" else ["x1", "y1", "z1", "x2", "y2", "z2"]
    shifted = [True] * 3 + [kind != "ellipsoid"] * 3
    rows = rows_of(path)
    lower = np.array(info["lower_bound"])
    where: dict[int, tuple[int, set]] = {}
    for number, cells in enumerate(collection.spatial):
        for cell, entries in cells.items():
            for ident, _ in entries:
                level, found = where.setdefault(ident, (number, set()))
                assert level == number
                found.add(cell)
    assert sorted(where) == list(range(len(rows)))
    for i, row in enumerate(rows):
        g = expected_geometry(row, names, shifted).astype(np.float64).reshape(2, 3)
        assert np.array_equal(np.array(collection.by_id[i].geometry, np.float32), g.reshape(-1).astype(np.float32))
        g = np.array(collection.by_id[i].geometry, np.float64).reshape(2, 3)
        number, cells = where[i]
        level = info["spatial"][number]
        if kind == "box":
            assert cells == _cells_of_box(g.min(0), g.max(0), level, lower)
        elif kind == "line":
            assert _cells_of_box(g[0], g[0], level, lower) <= cells
            assert _cells_of_box(g[1], g[1], level, lower) <= cells
            for cell in cells:
                lo = lower + np.array(cell) * level["chunk_size"]
                assert _segment_meets(g[0], g[1], lo, lo + level["chunk_size"])
        else:
            assert _cells_of_box(g[0], g[0], level, lower) <= cells
            assert cells <= _cells_of_box(g[0] - g[1], g[0] + g[1], level, lower)


def test_neuroglancer_writer_gives_the_same_annotations(table: Path, tmp_path: Path) -> None:
    """The `neuroglancer` package's writer (one level, unsharded, in memory), given the same
    rows, decodes to the same annotation for every id: geometry, properties, segments."""
    neuroglancer = pytest.importorskip("neuroglancer")
    from neuroglancer.write_annotations import AnnotationWriter

    rows = rows_of(table)[:10_000]
    space = neuroglancer.CoordinateSpace(names=["x", "y", "z"], units="nm", scales=list(RESOLUTION))
    properties = [neuroglancer.AnnotationPropertySpec(id="score", type="float32"),
                  neuroglancer.AnnotationPropertySpec(id="count", type="uint16"),
                  neuroglancer.AnnotationPropertySpec(id="cell_type", type="uint8", enum_values=[0, 1, 2],
                                                      enum_labels=CELL_TYPES),
                  neuroglancer.AnnotationPropertySpec(id="color", type="rgb")]
    writer = AnnotationWriter(space, "point", relationships=["segment"], properties=properties)
    for i, row in enumerate(rows):
        writer.add_point([float(row[a]) + 0.5 for a in "xyz"], id=i, score=float(row["score"]),
                         count=int(row["count"]), cell_type=CELL_TYPES.index(row["cell_type"]),
                         color=row["color"], segment=segments(row["segment"]))
    writer.write(tmp_path / "theirs")
    with open(tmp_path / "part.csv", "w") as out, open(table) as src:
        for _, line in zip(range(len(rows) + 1), src):
            out.write(line)
    write_annotations(tmp_path / "part.csv", tmp_path / "ours", OPTIONS, workers=0)
    theirs, ours = read_collection(tmp_path / "theirs"), read_collection(tmp_path / "ours")
    assert sorted(theirs.by_id) == sorted(ours.by_id)
    assert len(theirs.by_id) == 10_000
    for ident, annotation in theirs.by_id.items():
        assert ours.by_id[ident] == annotation, ident
    assert {s: sorted(i for i, _ in v) for s, v in theirs.related[0].items()} == \
        {s: sorted(i for i, _ in v) for s, v in ours.related[0].items()}
    assert theirs.info["dimensions"] == ours.info["dimensions"]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".streamconv" not in p.parts}


def _kill_when(args: list[str], journal: Path, line: str, timeout: float = 60) -> None:
    """Start the command in its own process group; SIGKILL the group as soon as the journal
    holds `line` (a phase under way), or after `timeout`."""
    proc = subprocess.Popen(args, start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if journal.exists() and line in journal.read_text():
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stderr:
            proc.stderr.close()


def test_killed_and_resumed_is_byte_identical(table: Path, tmp_path: Path) -> None:
    """SIGKILL while sorting, then while writing, then a run to the end: the bytes of an
    uninterrupted run (with another worker count and memory: neither changes a byte)."""
    common = ["--resolution", "1000,1000,2000", "--limit", "500", "-q"]
    reference = tmp_path / "reference"
    done = subprocess.run([STREAMCONV, "annotations", str(table), str(reference), *common, "--workers", "0"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "killed"
    args = [STREAMCONV, "annotations", str(table), str(out), *common, "--workers", "2", "--memory", "64MiB"]
    journal = out / ".streamconv" / "annotations" / "journal"
    _kill_when(args, journal, "slab 1 ")
    assert not (out / "info").exists()
    _kill_when(args, journal, "slab 2 ")
    assert not (out / "info").exists()
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _files(out) == _files(reference)
    assert not (out / ".streamconv" / "annotations" / "spool").exists()


def test_millimetres_through_transform_json(tmp_path: Path) -> None:
    """--coordinates mm: the image's transform.json (voxel-corner nm -> world nm) inverted;
    without one, a clear error."""
    image = tmp_path / "image"
    image.mkdir()
    info = {"type": "image", "data_type": "uint8", "num_channels": 1, "scales": [
        {"key": "1mm", "size": [100, 100, 100], "resolution": [1e6, 1e6, 1e6], "voxel_offset": [0, 0, 0],
         "chunk_sizes": [[64, 64, 64]], "encoding": "raw"}]}
    (image / "info").write_text(json.dumps(info))
    table = tmp_path / "mm.csv"
    table.write_text("x,y,z,rx,ry,rz\n10,-20,5,2,2,4\n")
    options = AnnotationOptions(coordinates="mm", image=str(image))
    result = subprocess.run([STREAMCONV, "annotations", str(table), str(tmp_path / "no"), "--coordinates", "mm",
                             "--image", str(image)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "transform.json" in result.stderr and "Traceback" not in result.stderr
    transform = [[1, 0, 0, -50e6], [0, 1, 0, -60e6], [0, 0, 1, -40e6], [0, 0, 0, 1]]
    (image / "transform.json").write_text(json.dumps(transform))
    write_annotations(table, tmp_path / "out", options, workers=0)
    annotation = read_collection(tmp_path / "out").by_id[0]
    # world (10, -20, 5) mm = voxel corner (60, 40, 45); radii 2, 2, 4 mm = 2, 2, 4 voxels
    assert np.allclose(annotation.geometry, [60, 40, 45, 2, 2, 4])
    assert math.isclose(json.loads((tmp_path / "out" / "info").read_text())["dimensions"]["x"][0], 1e-3)


def test_bad_tables_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    cases = {"x,y,z\n1,2,3\n4,five,6\n": "row 1: column 'y' holds 'five', not a number",
             "x,y,z\n1,2\n": "not a number",  # a short row: its last fields are empty
             "x,y,z\n1,2,3,4,5\n": "fields", "a,b\n1,2\n": "geometry", "x,y,z,id\n1,2,3,7\n4,5,6,7\n": "twice"}
    for text, words in cases.items():
        bad.write_text(text)
        result = subprocess.run([STREAMCONV, "annotations", str(bad), str(tmp_path / "out"), "--resolution", "8",
                                 "--overwrite", "--workers", "0"], capture_output=True, text=True, timeout=60)
        assert result.returncode in (1, 2) and words in result.stderr, (text, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
