"""Segmentations people can read: names tables written as segment properties, and every label's
surface mesh, checked by tensorstore, by a multi-resolution reader written here from the spec
(tests/mesh_reader.py) and by cloud-volume's legacy mesh reader.

The atlas is FreeSurfer-style: nilearn ships no atlas offline, so labels are made from the
tissue classes of the MNI template it does ship (white matter and cortex, left and right, with
FreeSurfer's ids), plus a LUT that names more structures than the volume holds."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from mesh_reader import read_multilod, watertight
from nilearn.datasets import load_mni152_gm_template, load_mni152_wm_template

from streamconv import convert
from streamconv.commands.annotate import Annotations, annotate
from streamconv.commands.names import read_segment_names
from streamconv.commands.steps import add_segment_names, generate_meshes
from streamconv.engine.executor import executor
from streamconv.format.sharding import ShardingSpec
from streamconv.layout.dataset import read_info
from streamconv.meshing import MeshOptions
from streamconv.stores import open_output

STREAMCONV = str(Path(sys.executable).with_name("streamconv"))
LUT = """\
#$Id: FreeSurferColorLUT.txt (a few rows of it)
#No. Label Name:                            R   G   B   A

0   Unknown                                 0   0   0   0
2   Left-Cerebral-White-Matter              245 245 245 0
3   Left-Cerebral-Cortex                    205 62  78  0
4   Left-Lateral-Ventricle                  120 18  134 0
41  Right-Cerebral-White-Matter             245 245 245 0
42  Right-Cerebral-Cortex                   205 62  78  0
"""
NAMED = {2: "Left-Cerebral-White-Matter", 3: "Left-Cerebral-Cortex", 41: "Right-Cerebral-White-Matter",
         42: "Right-Cerebral-Cortex"}


def streamconv(*args: object, code: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run([STREAMCONV, *map(str, args)], capture_output=True, text=True)
    assert result.returncode == code, result.stderr
    return result


@pytest.fixture(scope="module")
def aseg(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    """(volume, LUT, labels): the MNI template's tissue classes at 2 mm as an aseg, with a
    small closed blob (label 77) that the LUT does not name."""
    work = tmp_path_factory.mktemp("aseg")
    gm, wm = load_mni152_gm_template(resolution=None), load_mni152_wm_template(resolution=None)
    g, w = (np.asarray(i.dataobj, np.float32)[::2, ::2, ::2] for i in (gm, wm))
    labels = np.zeros(g.shape, np.uint8)
    right = (np.arange(g.shape[0]) >= g.shape[0] // 2)[:, None, None]
    labels[(w > 0.5) & ~right], labels[(w > 0.5) & right] = 2, 41
    labels[(g > 0.5) & (w <= 0.5) & ~right], labels[(g > 0.5) & (w <= 0.5) & right] = 3, 42
    x, y, z = np.indices(g.shape)
    labels[(x - 20) ** 2 + (y - 20) ** 2 + (z - 20) ** 2 < 16] = 77
    affine = gm.affine @ np.diag([2, 2, 2, 1])
    volume = work / "aseg.nii.gz"
    nib.save(nib.Nifti1Image(labels, affine), volume)
    lut = work / "FreeSurferColorLUT.txt"
    lut.write_text(LUT)
    return volume, lut, labels


def boundary_distance_ok(vertices_vox: np.ndarray, mask: np.ndarray, limit: float = 1.0) -> np.ndarray:
    """For each vertex (voxel-corner coordinates: voxel i spans [i, i + 1)), whether a face
    between a voxel of the mask and one outside it (or the volume's edge) lies within `limit`."""
    padded = np.pad(mask, 1)
    base = np.floor(vertices_vox).astype(np.int64) - 1  # voxel index of the lowest neighbour
    ok = np.zeros(len(vertices_vox), bool)
    span = range(-1, 3)
    for axis in range(3):
        for d in [(a, b, c) for a in span for b in span for c in span]:
            lo = base + np.asarray(d)
            hi = lo.copy()
            hi[:, axis] += 1
            a = padded[tuple((lo + 1).clip(0, np.asarray(padded.shape) - 1).T)]
            b = padded[tuple((hi + 1).clip(0, np.asarray(padded.shape) - 1).T)]
            face = (a != b)
            # the face between lo and hi: plane at hi[axis], square [lo, lo + 1) on the others
            nearest = np.clip(vertices_vox, lo, lo + 1).astype(np.float64)
            nearest[:, axis] = hi[:, axis]
            ok |= face & (np.linalg.norm(vertices_vox - nearest, axis=1) <= limit)
    return ok


def check_meshes(out: Path, labels: np.ndarray, resolution: np.ndarray) -> None:
    for label in sorted(set(np.unique(labels).tolist()) - {0}):
        lods = read_multilod(out / "mesh", label)
        assert len(lods) >= 2
        vertices, faces = lods[0]
        assert len(faces) > 0 and all(len(f) > 0 for _, f in lods)
        voxels = vertices / resolution  # the voxel-corner frame: voxel i spans [i, i + 1)
        assert boundary_distance_ok(voxels, labels == label).all(), label
        assert watertight(vertices, faces, tolerance=float(resolution.min()) * 1e-3), label
        assert len(lods[-1][1]) <= len(faces)


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


def test_blocks_meet_without_cracks(aseg, tmp_path):
    """Small blocks (many seams through every label) still give watertight finest meshes, and
    the legacy format reads back through cloud-volume."""
    volume, _, labels = aseg
    out = tmp_path / "out"
    convert(volume, out, volume_type="segmentation", workers=0)
    generate_meshes(out, block=16, workers=2)
    resolution = np.asarray(json.loads((out / "info").read_text())["scales"][0]["resolution"], np.float64)
    check_meshes(out, labels, resolution)
    multilod = read_multilod(out / "mesh", 2)[0][0]

    cloudvolume = pytest.importorskip("cloudvolume")
    streamconv("generate-meshes", out, "--mesh-format", "legacy", "--workers", "1", "--overwrite")
    mesh = cloudvolume.CloudVolume(f"file://{out}", progress=False).mesh.get(2)
    assert json.loads((out / "mesh/info").read_text())["@type"] == "neuroglancer_legacy_mesh"
    assert watertight(mesh.vertices, mesh.faces, tolerance=float(resolution.min()) * 1e-3)
    assert np.allclose(mesh.vertices.min(0), multilod.min(0), atol=resolution.max())


def check_properties(properties: dict) -> None:
    """The spec's rules (section 7): ids decimal strings, one entry each, typed properties."""
    assert properties["@type"] == "neuroglancer_segment_properties"
    ids = properties["inline"]["ids"]
    assert all(isinstance(i, str) and i.isdigit() and str(int(i)) == i for i in ids)
    assert len(set(ids)) == len(ids)
    seen = set()
    for prop in properties["inline"]["properties"]:
        assert prop["id"] not in seen and len(prop["values"]) == len(ids)
        seen.add(prop["id"])
        assert prop["type"] in ("label", "description", "string", "tags", "number")
        if prop["type"] in ("label", "description", "string"):
            assert all(isinstance(v, str) for v in prop["values"])
    kinds = [p["type"] for p in properties["inline"]["properties"]]
    assert kinds.count("label") <= 1 and kinds.count("description") <= 1


FSL_XML = """<?xml version="1.0" encoding="ISO-8859-1"?>
<atlas version="1.0">
  <header><name>Harvard-Oxford Subcortical Structural Atlas</name><type>Label</type></header>
  <data>
    <label index="0" x="58" y="119" z="59">Left Cerebral White Matter</label>
    <label index="1" x="62" y="136" z="70">Left Cerebral Cortex </label>
  </data>
</atlas>
"""


@pytest.mark.parametrize("name, text, expected", [
    ("lut.txt", LUT, {2: "Left-Cerebral-White-Matter", 4: "Left-Lateral-Ventricle"}),
    ("atlas.xml", FSL_XML, {1: "Left Cerebral White Matter", 2: "Left Cerebral Cortex"}),  # index + 1
    ("dseg.tsv", "index\tname\tabbreviation\tcolor\n1\tThalamus\tTH\t#ff0000\n2\tPutamen\tPU\tn/a\n",
     {1: "Thalamus", 2: "Putamen"}),
    ("names.csv", "1,Thalamus,deep grey\n2,Putamen\n", {1: "Thalamus", 2: "Putamen"}),
    ("names.json", '{"1": "Thalamus", "10": "Putamen"}', {1: "Thalamus", 10: "Putamen"}),
    ("misnamed.csv", LUT, {41: "Right-Cerebral-White-Matter"}),  # by content, not by extension
])
def test_tables_by_content(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    table = read_segment_names(path)
    names = {s.id: s.name for s in table.segments}
    assert all(names[i] == n for i, n in expected.items())
    from streamconv.commands.names import properties_info

    check_properties(properties_info(table))


def test_table_extras_become_description_and_colour(tmp_path):
    path = tmp_path / "dseg.tsv"
    path.write_text("index\tname\tabbreviation\tcolor\n1\tThalamus\tTH\t#FF0000\n2\tPutamen\tPU\tn/a\n")
    from streamconv.commands.names import properties_info

    properties = {p["id"]: p for p in properties_info(read_segment_names(path))["inline"]["properties"]}
    assert properties["description"]["values"] == ["abbreviation: TH", "abbreviation: PU"]
    assert properties["color"]["values"] == ["#ff0000", ""]


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


def same_meshes(a: Path, b: Path, labels: list[int]) -> None:
    """Every label reads back from both mesh directories with the same vertices and faces at
    every level of detail."""
    for label in labels:
        lods_a, lods_b = read_multilod(a, label), read_multilod(b, label)
        assert len(lods_a) == len(lods_b) >= 2, label
        for (va, fa), (vb, fb) in zip(lods_a, lods_b):
            assert len(fa) > 0 and np.array_equal(va, vb) and np.array_equal(fa, fb), label


def test_sharded_meshes(aseg, tmp_path):
    """`--meshes --sharding auto`: one murmurhash-keyed shard file, read back through the spec
    reader (and cloud-volume's) with the geometry of the unsharded meshes."""
    volume, _, labels = aseg
    ids = sorted(set(np.unique(labels).tolist()) - {0})
    plain, sharded = tmp_path / "plain", tmp_path / "sharded"
    convert(volume, plain, volume_type="segmentation", meshes=True, workers=1)
    streamconv("convert", volume, sharded, "--type", "segmentation", "--meshes", "--sharding", "auto",
               "--workers", "1", "-q")
    info = json.loads((sharded / "mesh/info").read_text())
    assert info["sharding"]["hash"] == "murmurhash3_x86_128" and info["sharding"]["preshift_bits"] == 0
    assert sorted(p.name for p in (sharded / "mesh").iterdir()) == ["0.shard", "info"]
    same_meshes(plain / "mesh", sharded / "mesh", ids)
    cloudvolume = pytest.importorskip("cloudvolume")
    mesh = cloudvolume.CloudVolume(f"file://{sharded}", progress=False).mesh.get(77, lod=0)[77]
    assert np.allclose(np.sort(mesh.vertices, 0), np.sort(read_multilod(plain / "mesh", 77)[0][0], 0), atol=1e-3)
    result = streamconv("convert", volume, tmp_path / "legacy", "--type", "segmentation", "--meshes",
                        "--mesh-format", "legacy", "--sharding", "auto", code=2)
    assert "no sharded variant" in result.stderr


class SpreadOut:
    """A sharding that spreads five labels over shards and minishards, and gzips manifests."""

    def spec(self, *_: object) -> None:
        return None

    def hashed(self, objects: int) -> ShardingSpec:
        return ShardingSpec(0, 1, 2, hash="murmurhash3_x86_128", data_encoding="gzip")


def test_sharded_meshes_over_shards_and_minishards(aseg, tmp_path):
    volume, _, labels = aseg
    ids = sorted(set(np.unique(labels).tolist()) - {0})
    plain, out = tmp_path / "plain", tmp_path / "out"
    for where in (plain, out):
        convert(volume, where, volume_type="segmentation", workers=0)
    generate_meshes(plain, workers=0, block=32)
    store = open_output(out)
    info = read_info(store)
    assert info is not None
    with executor(1) as pool:
        annotate(store, info, pool, 1, 1 << 30, Annotations(meshes=MeshOptions(block=32, sharding=SpreadOut())))
    (out / "info").write_text(info.with_member("mesh", "mesh").to_json().decode())
    assert len(list((out / "mesh").glob("*.shard"))) > 1
    same_meshes(plain / "mesh", out / "mesh", ids)


MESH_RUN = "import sys; from streamconv.steps import generate_meshes; " \
           "generate_meshes(sys.argv[1], block=16, workers=1, sharding=sys.argv[2])"


@pytest.mark.parametrize("sharding", ["off", "auto"])
def test_killed_mesh_pass_resumes(aseg, tmp_path, sharding):
    """SIGKILL `generate-meshes` while it meshes blocks; the rerun resumes from its journal and
    writes the same bytes as a run never interrupted."""
    volume, _, _ = aseg
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for out in (whole, killed):
        convert(volume, out, volume_type="segmentation", workers=0)
    first = generate_meshes(whole, block=16, workers=1, sharding=sharding).meshes
    run = subprocess.Popen([sys.executable, "-c", MESH_RUN, str(killed), sharding], start_new_session=True)
    journal = killed / ".streamconv/meshes/journal"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None:
        if journal.exists() and journal.read_text().count("slab") >= 20:
            break
        time.sleep(0.01)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert not json.loads((killed / ".streamconv/meshes/job.json").read_text())["complete"]
    report = generate_meshes(killed, block=16, workers=1, sharding=sharding)
    assert first is not None and report.meshes is not None and 0 < report.meshes.blocks < first.blocks
    files = sorted(p.relative_to(whole) for p in (whole / "mesh").iterdir())
    assert files == sorted(p.relative_to(killed) for p in (killed / "mesh").iterdir())
    assert all((whole / f).read_bytes() == (killed / f).read_bytes() for f in files)
    assert (whole / "info").read_bytes() == (killed / "info").read_bytes()
    assert not (killed / ".streamconv/meshes/spool").exists()


def test_mesh_reruns_overwrite_and_lock(aseg, tmp_path):
    """A rerun of a finished mesh pass does nothing; another format needs --overwrite, which
    removes what the first wrote; a second writer is refused while the lock is held."""
    volume, _, _ = aseg
    out = tmp_path / "out"
    convert(volume, out, volume_type="segmentation", workers=0)
    streamconv("generate-meshes", out, "--workers", "1")
    stamp = (out / "mesh/2.index").stat().st_mtime_ns
    assert "nothing to do" in streamconv("generate-meshes", out, "--workers", "1").stderr
    assert (out / "mesh/2.index").stat().st_mtime_ns == stamp
    result = streamconv("generate-meshes", out, "--sharding", "auto", code=1)
    assert "--overwrite" in result.stderr
    streamconv("generate-meshes", out, "--sharding", "auto", "--overwrite", "--workers", "1")
    assert sorted(p.name for p in (out / "mesh").iterdir()) == ["0.shard", "info"]
    (out / ".streamconv/lock").write_text(f"{os.getpid()} {Path('/proc/sys/kernel/random/boot_id').read_text()}")
    result = streamconv("generate-meshes", out, "--overwrite", code=1)
    assert "being written by another run" in result.stderr
