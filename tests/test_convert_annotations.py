"""`convert INPUT OUTPUT --annotations TABLE` (issue 27): the table's collection written in the
same run, in OUTPUT/annotations/, read back by the test's own reader (`annotation_reader`) and
held against the table and against the volume the conversion wrote (tensorstore); `verify` of
the collection; `view` shows it over its volume, placed as the volume is; a SIGKILL and a rerun
end with the bytes of an uninterrupted run. The collection alone: test_annotations.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from annotation_reader import read_collection
from atlas import streamconv
from test_annotations import _files, _kill_when, rows_of, segments

from streamconv import convert
from streamconv.annotations import AnnotationOptions
from streamconv.commands.view import served_datasets, viewer_state

sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))

from make_annotations import write_table

STREAMCONV = str(Path(sys.executable).with_name("streamconv"))


def test_points_beside_a_segmentation(aseg, tmp_path: Path) -> None:
    """Voxel coordinates of the volume written: every row by id at its voxel's centre, under its
    segments; the volume's bytes as without --annotations; verify passes; view shows the
    collection over the volume with the volume's transform."""
    volume, _, labels = aseg
    table = tmp_path / "cells.csv"
    write_table(table, 3000, "point", size=labels.shape, seed=5)
    out, plain = tmp_path / "out", tmp_path / "plain"
    report = convert(volume, out, volume_type="segmentation", annotations=table,
                     annotation_options=AnnotationOptions(limit=200), workers=1)
    assert report.annotated is not None and report.annotated.table is not None
    assert report.annotated.table.annotations == 3000
    convert(volume, plain, volume_type="segmentation", workers=1)
    volume_files = _files(out)
    assert {k: v for k, v in volume_files.items() if not k.startswith("annotations/")} == _files(plain)
    collection = read_collection(out / "annotations")
    rows = rows_of(table)
    assert sorted(collection.by_id) == list(range(len(rows)))
    for i, row in enumerate(rows):
        a = collection.by_id[i]
        expected = np.array([float(row[c]) + 0.5 for c in "xyz"], np.float32)  # voxel centres, offset 0
        assert np.array_equal(np.array(a.geometry, np.float32), expected)
        assert a.related == [segments(row["segment"])]
    info = json.loads((out / "annotations" / "info").read_text())
    volume_info = json.loads((out / "info").read_text())
    assert [d[0] * 1e9 for d in info["dimensions"].values()] == volume_info["scales"][0]["resolution"]
    assert "Traceback" not in streamconv("verify", table, out / "annotations").stderr
    state = viewer_state(served_datasets([out]), "http://127.0.0.1:1")
    image, layer = state["layers"]
    assert layer["type"] == "annotation" and layer["name"] == "out/annotations"
    assert layer["source"]["url"].endswith("/data/out/annotations")
    assert layer["source"]["transform"] == image["source"]["transform"]
    assert layer["linkedSegmentationLayer"] == {"segment": "out"}


def test_millimetres_land_on_their_voxels(aseg, tmp_path: Path) -> None:
    """--annotation-coordinates mm through the transform.json of the conversion: a volume stored
    flipped (LAS on disk, RAS in the output); each table row is the world position (mm) of a
    voxel of the file, and lands in the output voxel holding that voxel's label."""
    ts = pytest.importorskip("tensorstore")
    _, _, labels = aseg
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [98.0, -134.0, -72.0]
    las = tmp_path / "las.nii.gz"
    nib.save(nib.Nifti1Image(labels, affine), las)
    rng = np.random.default_rng(2)
    voxels = rng.integers(0, labels.shape, (200, 3))
    world = (affine @ np.c_[voxels, np.ones(len(voxels))].T).T[:, :3]
    table = tmp_path / "mm.csv"
    table.write_text("x,y,z\n" + "\n".join(",".join(map(str, p)) for p in world.tolist()) + "\n")
    out = tmp_path / "out"
    streamconv("convert", las, out, "--type", "segmentation", "--annotations", table,
               "--annotation-coordinates", "mm", "--workers", "1", "-q")
    collection = read_collection(out / "annotations")
    opened = ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{out}"}).result()
    stored = opened[..., 0].read().result()
    for i, voxel in enumerate(voxels):
        at = np.floor(collection.by_id[i].geometry).astype(int)
        assert stored[tuple(at)] == labels[tuple(voxel)]
        assert np.allclose(np.array(collection.by_id[i].geometry) % 1, 0.5, atol=1e-3)  # voxel centres


def test_killed_and_resumed_is_byte_identical(aseg, tmp_path: Path) -> None:
    """SIGKILL once the collection is being written, then a rerun: the bytes of an uninterrupted
    run, volume and collection."""
    volume, _, labels = aseg
    table = tmp_path / "cells.csv"
    write_table(table, 40_000, "point", size=labels.shape, seed=6)
    common = ["--type", "segmentation", "--annotations", str(table), "--annotation-limit", "300", "-q"]
    reference = tmp_path / "reference"
    streamconv("convert", volume, reference, *common, "--workers", "0")
    out = tmp_path / "killed"
    args = [STREAMCONV, "convert", str(volume), str(out), *common, "--workers", "2", "--memory", "320MiB"]
    _kill_when(args, out / "annotations" / ".streamconv" / "annotations" / "journal", "slab 1 ")
    assert not (out / "info").exists() and (out / "annotations" / ".streamconv").exists()
    streamconv(*args[1:])
    assert _files(out) == _files(reference)


def test_bad_table_is_refused_before_any_work(aseg, tmp_path: Path) -> None:
    volume, _, _ = aseg
    table = tmp_path / "bad.csv"
    table.write_text("a,b\n1,2\n")
    result = streamconv("convert", volume, tmp_path / "out", "--annotations", table, code=2)
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_collection_made_for_an_image_is_placed_as_the_image(aseg, tmp_path: Path) -> None:
    """`streamconv annotations --image OUTPUT` is written in that image's voxels, so it keeps a copy
    of the image's transform.json, and `view IMAGE COLLECTION` places both layers alike."""
    volume, _, labels = aseg
    table = tmp_path / "cells.csv"
    write_table(table, 500, "point", size=labels.shape, seed=7)
    image, cells = tmp_path / "image", tmp_path / "cells"
    convert(volume, image, volume_type="segmentation", workers=1)
    result = streamconv("annotations", table, cells, "--image", image, "--workers", "1", "-q")
    assert result.returncode == 0, result.stderr
    assert (cells / "transform.json").read_bytes() == (image / "transform.json").read_bytes()
    state = viewer_state(served_datasets([image, cells]), "http://127.0.0.1:1")
    volume_layer, layer = state["layers"]
    assert layer["type"] == "annotation" and layer["source"]["url"].endswith("/data/cells")
    assert layer["source"]["transform"] == volume_layer["source"]["transform"]
