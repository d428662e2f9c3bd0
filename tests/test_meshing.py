"""Label meshes (meshing/): blocks that meet without cracks, legacy meshes read back by
cloud-volume, sharded meshes read back through the spec, a killed mesh pass resumed, reruns,
--overwrite and the lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from atlas import check_meshes, same_meshes, streamconv
from mesh_reader import read_multilod, watertight

from streamconv import convert
from streamconv.commands.annotate import Annotations, annotate
from streamconv.commands.steps import generate_meshes
from streamconv.engine.executor import executor
from streamconv.format.sharding import ShardingSpec
from streamconv.layout.dataset import read_info
from streamconv.meshing import MeshOptions
from streamconv.stores import open_output


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
