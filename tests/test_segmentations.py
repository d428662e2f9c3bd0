"""Segmentations people can read, end to end (commands/annotate.py): `convert --segment-names
--meshes` and `add-segment-names` on the atlas of tests/atlas.py, checked by tensorstore and by a
multi-resolution reader written from the spec (tests/mesh_reader.py). The tables alone:
test_names.py; the mesh pass: test_meshing.py."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from atlas import NAMED, check_meshes, check_properties, streamconv

from streamconv import convert
from streamconv.commands.steps import add_segment_names


def test_atlas_with_names_and_meshes(aseg, tmp_path, caplog):
    """The whole issue on one atlas: tensorstore reads the volume, every label has a watertight
    multi-resolution mesh on its voxels' boundary, the names are segment properties."""
    ts = pytest.importorskip("tensorstore")
    volume, lut, labels = aseg
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, "streamconv"):
        report = convert(volume, out, volume_type="segmentation", segment_names=lut, meshes=True,
                         encoding="compressed_segmentation", workers=1)
    assert report.annotated is not None and report.annotated.labels == 5
    warnings = [r.getMessage() for r in caplog.records]
    assert any("1 ids of the table are not in the volume (4)" in w for w in warnings), warnings
    assert any("1 labels of the volume are not in the table (77)" in w for w in warnings), warnings
    info = json.loads((out / "info").read_text())
    assert info["mesh"] == "mesh" and info["segment_properties"] == "segment_properties"
    store = ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{out}"}).result()
    assert np.array_equal(store[..., 0].read().result(), labels)
    resolution = np.asarray(info["scales"][0]["resolution"], np.float64)
    check_meshes(out, labels, resolution)
    properties = json.loads((out / "segment_properties/info").read_text())
    check_properties(properties)
    names = dict(zip(properties["inline"]["ids"], properties["inline"]["properties"][0]["values"]))
    assert all(names[str(i)] == n for i, n in NAMED.items())


def test_add_segment_names_to_a_pyramid(aseg, tmp_path):
    volume, lut, _ = aseg
    out = tmp_path / "out"
    convert(volume, out, volume_type="segmentation", workers=0)
    report = add_segment_names(out, lut, workers=0)
    assert report.labels == 5
    assert json.loads((out / "info").read_text())["segment_properties"] == "segment_properties"
    result = streamconv("add-segment-names", out, lut)
    assert "1 ids of the table are not in the volume" in result.stderr


def test_names_and_meshes_need_a_segmentation(aseg, tmp_path):
    volume, lut, _ = aseg
    result = streamconv("convert", volume, tmp_path / "img", "--segment-names", lut, code=2)
    assert "--type segmentation" in result.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("region,colour\nx,y\n")
    result = streamconv("convert", volume, tmp_path / "o", "--type", "segmentation", "--segment-names", bad,
                        code=1)
    assert "index column" in result.stderr
