"""A conversion on a real Dask cluster (Dask's own `dask scheduler` and `dask worker`) makes the
local engine's bytes, through a worker killed mid-run and a client killed mid-run.

The workers run in a private mount namespace with an empty /dev/shm of their own, so that any
reliance on memory shared with the client fails: on several hosts nothing is shared.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nilearn.datasets import MNI152_FILE_PATH

pytest.importorskip("distributed")

BIN = Path(sys.executable).parent
TOOLS = Path(__file__).parents[1] / "tools"
MEMORY = 1 << 30  # each worker's MEMORY resource, and streamconv's --memory
# Dask's HTTP server (health, metrics) runs even without the dashboard, by default on 0.0.0.0:8787,
# where a LocalCluster of another test would warn that the port is taken.
LOCALHOST = ["--no-dashboard", "--dashboard-address", "127.0.0.1:0", "--host", "127.0.0.1"]
PRIVATE_SHM = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount -t tmpfs tmpfs /dev/shm && exec "$0" "$@"']


def _namespaces_work() -> str | None:
    """Why workers cannot get a private /dev/shm here, or None."""
    try:
        run = subprocess.run([*PRIVATE_SHM, "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if run.returncode == 0 else run.stderr.decode().strip() or "unshare failed"


class Cluster:
    """`dask scheduler` and `workers` x `dask worker` (one thread, no nanny: killing the process
    kills the worker), on 127.0.0.1, stopped by `close`. One serves the whole module (starting
    it is the slow part); `revive` replaces a worker a test killed."""

    def __init__(self, tmp: Path, workers: int = 2, options: tuple[str, ...] = ("--resources", f"MEMORY={MEMORY}")
                 ) -> None:
        file = tmp / "scheduler.json"
        self.options = options
        self.logs = open(tmp / "cluster.log", "wb")
        self.scheduler = subprocess.Popen([str(BIN / "dask"), "scheduler", "--port", "0", "--scheduler-file",
                                           str(file), *LOCALHOST], stdout=self.logs, stderr=self.logs)
        self.workers: list[subprocess.Popen] = []
        self.names: list[str] = []
        try:
            deadline = time.monotonic() + 60
            while not file.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.address = json.loads(file.read_text())["address"]
            for i in range(workers):
                self._start(i)
            self._wait_for_workers(deadline)
        except BaseException:
            self.close()
            raise

    def _start(self, i: int) -> None:
        """Worker `i`, under a name no earlier worker had (the scheduler may not have dropped a
        killed one yet)."""
        name = f"w{i}-{time.monotonic_ns()}"
        process = subprocess.Popen(
            [*PRIVATE_SHM, str(BIN / "dask"), "worker", self.address, "--nthreads", "1", "--no-nanny",
             *self.options, "--name", name, *LOCALHOST],
            stdout=self.logs, stderr=self.logs)
        if i < len(self.workers):
            self.workers[i], self.names[i] = process, name
        else:
            self.workers.append(process)
            self.names.append(name)

    def revive(self) -> None:
        """Every worker alive again, and the scheduler knowing exactly those."""
        for i, process in enumerate(self.workers):
            if process.poll() is not None:
                self._start(i)
        self._wait_for_workers(time.monotonic() + 60)

    def _wait_for_workers(self, deadline: float) -> None:
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            while {w.get("name") for w in client.scheduler_info()["workers"].values()} != set(self.names):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the workers {self.names} did not all join {self.address}")
                time.sleep(0.1)

    def close(self) -> None:
        for process in [*self.workers, self.scheduler]:
            if process.poll() is None:
                process.terminate()
        for process in [*self.workers, self.scheduler]:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.logs.close()


@pytest.fixture(scope="module")
def module_cluster(tmp_path_factory) -> Iterator[Cluster]:
    reason = _namespaces_work()
    if reason is not None:
        pytest.skip(f"no private mount namespace for the workers: {reason}")
    running = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def cluster(module_cluster: Cluster) -> Cluster:
    """The module's cluster, with all its workers (one a test killed is replaced first)."""
    module_cluster.revive()
    return module_cluster


def chunk_files(out: Path) -> dict[str, bytes]:
    """Chunks and info (not the journal, nor the placement: transform.json, placement.json)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".streamconv" not in p.parts
            and p.name not in ("transform.json", "placement.json")}


def streamconv(command: str, args: list[str], *extra: str) -> subprocess.Popen:
    """A command that runs the engine, quiet, with --memory the workers' MEMORY."""
    return subprocess.Popen([str(BIN / "streamconv"), command, *args, "-q", "--memory", str(MEMORY), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def convert(args: list[str], *extra: str) -> subprocess.Popen:
    return streamconv("convert", args, *extra)


def finish(process: subprocess.Popen) -> None:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, list[str]]:
    """The command lines of three kinds of input: the MNI template (a gzip NIfTI, read in order),
    a slice stack on its side (RIA), a label volume in compressed_segmentation."""
    tmp = tmp_path_factory.mktemp("inputs")
    stack, labels = tmp / "sections", tmp / "labels.nii"
    subprocess.run([sys.executable, str(TOOLS / "make_sections.py"), str(stack), "--count", "40",
                    "--width", "150", "--height", "120"], check=True, capture_output=True)
    subprocess.run([sys.executable, str(TOOLS / "make_volume.py"), str(labels), "--shape", "100,90,80",
                    "--dtype", "uint32", "--labels", "50"], check=True, capture_output=True)
    return {"mni": [MNI152_FILE_PATH, "--chunk-size", "32"],
            "stack": [str(stack), "--input-orientation", "RIA", "--resolution", "20um", "--chunk-size", "16"],
            "labels": [str(labels), "--type", "segmentation", "--encoding", "compressed_segmentation",
                       "--chunk-size", "16"]}


def test_a_cluster_without_shared_memory_writes_the_local_engines_bytes(cluster, inputs, tmp_path):
    for name, args in inputs.items():
        local, remote = tmp_path / f"{name}-local", tmp_path / f"{name}-dask"
        finish(convert([args[0], str(local), *args[1:]], "--workers", "2"))
        finish(convert([args[0], str(remote), *args[1:]], "--scheduler", cluster.address))
        assert chunk_files(remote) == chunk_files(local), name
        assert not (remote / ".streamconv" / "pieces").exists(), "pieces are removed at the end"



def own_cluster(tmp: Path, workers: int, *options: str) -> Cluster:
    """A cluster of the test's own, its workers started with `options` instead of MEMORY."""
    reason = _namespaces_work()
    if reason is not None:
        pytest.skip(f"no private mount namespace for the workers: {reason}")
    tmp.mkdir()
    return Cluster(tmp, workers, options)


def test_a_stock_cluster_is_planned_from_the_workers_memory_limits(inputs, tmp_path):
    """Workers started without MEMORY (Dask's defaults but a memory limit): the plan is made from
    the room each has under Dask's limit, which is below --memory here; the local bytes, meshes
    (whose tasks are placed the same way) included."""
    stock = own_cluster(tmp_path / "stock", 2, "--memory-limit", "600MiB")
    try:
        for name, args in inputs.items():
            local, remote = tmp_path / f"{name}-local", tmp_path / f"{name}-dask"
            extra = ["--meshes"] if name == "labels" else []
            finish(convert([args[0], str(local), *args[1:], *extra], "--workers", "2"))
            finish(convert([args[0], str(remote), *args[1:], *extra], "--scheduler", stock.address))
            assert chunk_files(remote) == chunk_files(local), name
    finally:
        stock.close()


@pytest.mark.parametrize("options", [("--memory-limit", "64MiB"),
                                     ("--memory-limit", "64MiB", "--resources", f"MEMORY={MEMORY}")])
def test_a_worker_without_room_for_a_task_is_refused_in_one_line(inputs, tmp_path, options):
    """A worker whose memory limit the idle worker nearly fills (Dask pauses it), stock or
    declaring MEMORY: one line, no wait on the paused worker."""
    small = own_cluster(tmp_path / "small", 1, *options)
    try:
        args = inputs["labels"]
        started = time.monotonic()
        run = subprocess.run([str(BIN / "streamconv"), "convert", args[0], str(tmp_path / "out"), *args[1:],
                              "--scheduler", small.address], capture_output=True, timeout=120)
        elapsed = time.monotonic() - started
    finally:
        small.close()
    lines = run.stderr.decode().strip().splitlines()
    assert run.returncode == 2, lines
    assert len(lines) == 1 and "64.0 MiB" in lines[0] and "paused" in lines[0], lines
    assert "a task of this conversion needs" in lines[0], lines
    assert elapsed < 30, f"refused after {elapsed:.0f} s"
    assert not (tmp_path / "out").exists()


def test_names_and_meshes_on_the_cluster_are_the_local_runs(cluster, inputs, tmp_path):
    """--segment-names and --meshes under --scheduler: the mesh pass's block and label tasks run
    on the workers (no shared memory), reading scale 0 back from the output; every file,
    meshes and segment properties included, is the local run's."""
    args = inputs["labels"]
    table = tmp_path / "names.json"
    volume = np.asarray(nib.load(args[0]).dataobj)
    table.write_text(json.dumps({str(int(v)): f"region {i}" for i, v in enumerate(np.unique(volume)[1:])}))
    extra = ["--segment-names", str(table), "--meshes", "--sharding", "auto"]
    local, remote = tmp_path / "local", tmp_path / "dask"
    finish(convert([args[0], str(local), *args[1:], *extra], "--workers", "2"))
    finish(convert([args[0], str(remote), *args[1:], *extra], "--scheduler", cluster.address))
    files = chunk_files(remote)
    assert any(name.startswith("mesh/") and name.endswith(".shard") for name in files)
    assert "segment_properties/info" in files
    assert files == chunk_files(local)


def prepare_steps(out: Path, input: str, reading: dict[str, str], planning: dict[str, str]) -> None:
    """The info steps, run here (they only read a header): `out` holds an info of 16^3 chunks."""
    from streamconv.commands import steps

    steps.generate_info(input, out, **reading)
    steps.generate_scales_info(out / "info_fullres.json", out, target_chunk_size=16, **planning)


@pytest.mark.parametrize("name, reading, planning, fullres, scales", [
    ("labels", {}, {"volume_type": "segmentation", "encoding": "compressed_segmentation"},
     ["volume-to-precomputed"], ["--downscaling-method", "majority"]),
    ("stack", {"input_orientation": "RIA", "resolution": "20um"}, {},
     ["slices-to-precomputed", "--input-orientation", "RIA"], ["--outside-value", "255"]),
])
def test_the_step_commands_on_a_cluster_write_the_local_steps_bytes(cluster, inputs, tmp_path, name, reading,
                                                                     planning, fullres, scales):
    """volume-to-precomputed or slices-to-precomputed, then compute-scales, with --scheduler."""
    local, remote = tmp_path / "local", tmp_path / "dask"
    prepare_steps(local, inputs[name][0], reading, planning)
    shutil.copytree(local, remote)
    for out, engine in ((local, ["--workers", "2"]), (remote, ["--scheduler", cluster.address])):
        finish(streamconv(fullres[0], [*fullres[1:], inputs[name][0], str(out)], *engine))
        finish(streamconv("compute-scales", [*scales, str(out)], *engine))
    assert chunk_files(remote) == chunk_files(local)
    assert len(json.loads((remote / "info").read_text())["scales"]) > 2
    assert not list((remote / ".streamconv").rglob("pieces")), "pieces are removed at the end"


def test_compute_scales_on_a_cluster_resumes_after_the_client_is_killed(cluster, tmp_path):
    """The MNI template's full resolution written by the local engine, its scales on the cluster
    by a compute-scales killed after its first slab and run again: the local steps' bytes."""
    local, remote = tmp_path / "local", tmp_path / "dask"
    prepare_steps(local, MNI152_FILE_PATH, {}, {})
    finish(streamconv("volume-to-precomputed", [MNI152_FILE_PATH, str(local)], "--workers", "2"))
    shutil.copytree(local, remote)
    finish(streamconv("compute-scales", [str(local)], "--workers", "2"))
    run = streamconv("compute-scales", [str(remote)], "--scheduler", cluster.address)
    _wait_for_journal(remote, 1, run, "scales")
    run.kill()
    run.communicate(timeout=60)
    job = json.loads((remote / ".streamconv" / "scales" / "job.json").read_text())
    assert not job["complete"], "the client was killed before the run's end"
    rerun = streamconv("compute-scales", [str(remote)], "--scheduler", cluster.address)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()
    assert b"resuming" in err
    assert chunk_files(remote) == chunk_files(local)


def slabs_done(out: Path, step: str = "") -> int:
    journal = out / ".streamconv" / step / "journal"
    return journal.read_text().count("slab ") if journal.exists() else 0


def _wait_for_journal(out: Path, lines: int, process: subprocess.Popen, step: str = "") -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if slabs_done(out, step) >= lines:
            return
        time.sleep(0.02)
    pytest.fail(f"the run ended or stalled before {lines} slabs: {process.poll()}")


MNI_SMALL_CHUNKS = [MNI152_FILE_PATH, "--chunk-size", "16"]


def test_a_worker_killed_mid_run_changes_nothing(cluster, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "dask"
    finish(convert([MNI_SMALL_CHUNKS[0], str(local), *MNI_SMALL_CHUNKS[1:]], "--workers", "2"))
    run = convert([MNI_SMALL_CHUNKS[0], str(remote), *MNI_SMALL_CHUNKS[1:]], "--scheduler", cluster.address)
    _wait_for_journal(remote, 1, run)
    os.kill(cluster.workers[0].pid, signal.SIGKILL)
    killed_at = slabs_done(remote)
    finish(run)
    assert killed_at < slabs_done(remote), "the worker was killed before the run's end"
    assert chunk_files(remote) == chunk_files(local)


CUT_SHORT = """
import sys
from pathlib import Path

import streamconv
from streamconv.errors import DataError

path, out, scheduler = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
whole = path.stat().st_size


def cut_after_the_first_slab(scales):
    def progress(scale, chunks, nbytes):
        with open(path, "r+b") as f:
            f.truncate(whole // 2)
    return progress


try:
    streamconv.convert(path, out, chunk_size=16, memory="1GiB", scheduler=scheduler, progress=cut_after_the_first_slab)
except DataError as exc:
    print(exc)
    sys.exit(3)
"""


def test_an_input_cut_short_under_the_tasks_mapping_is_a_data_error(cluster, tmp_path):
    """Slab tasks map an uncompressed NIfTI, as the local engine's do: a file cut short during
    the run ends it with a DataError that says so (a task that maps it afterwards cannot; one
    that touched it while mapped died of SIGBUS, which the client then explains)."""
    path = tmp_path / "v.nii"
    nib.save(nib.Nifti1Image(np.arange(64 * 64 * 256, dtype=np.uint32).reshape(64, 64, 256) % 7, np.eye(4)), path)
    run = subprocess.run([sys.executable, "-c", CUT_SHORT, str(path), str(tmp_path / "out"), cluster.address],
                         capture_output=True, timeout=120)
    assert run.returncode == 3, run.stderr.decode()[-2000:]
    assert b"cut short during the conversion" in run.stdout
    assert b"Traceback" not in run.stderr, run.stderr.decode()[-2000:]


@pytest.fixture(scope="module")
def region_volume(tmp_path_factory) -> str:
    """An uncompressed NIfTI: read by region, so that a tiled run reads each tile for its size."""
    path = tmp_path_factory.mktemp("region") / "volume.nii"
    subprocess.run([sys.executable, str(TOOLS / "make_volume.py"), str(path), "--shape", "100,90,80",
                    "--dtype", "uint16"], check=True, capture_output=True)
    return str(path)


@pytest.mark.parametrize("tiled", [False, True, "png"], ids=["planes", "tiles", "tiles-png"])
def test_a_client_killed_mid_run_resumes_to_the_same_bytes(cluster, region_volume, inputs, tmp_path, monkeypatch,
                                                           tiled):
    """Tiled (STREAMCONV_TILE, planned on the client and sent to the workers in each task): a
    block per task, journalled by its index; the rerun writes the local untiled run's bytes.
    PNG sections: a task per slab of scale 0 runs its tiles, each journalled by its index."""
    local, remote = tmp_path / "local", tmp_path / "dask"
    source, *options = (inputs["stack"] if tiled == "png" else
                        [region_volume if tiled else MNI_SMALL_CHUNKS[0], *MNI_SMALL_CHUNKS[1:]])
    args = [source, str(remote), *options]
    finish(convert([source, str(local), *options], "--workers", "2"))
    if tiled:
        monkeypatch.setenv("STREAMCONV_TILE", "32")
    run = convert(args, "--scheduler", cluster.address)
    _wait_for_journal(remote, 1, run)
    run.kill()
    run.communicate(timeout=60)
    assert not (remote / "info").exists(), "the client was killed before the run's end"
    if tiled:
        record = json.loads((remote / ".streamconv" / "job.json").read_text())["job"]
        assert record["tiles"][0] == [32, 32], record
    rerun = convert(args, "--scheduler", cluster.address)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()
    assert b"resuming" in err
    assert chunk_files(remote) == chunk_files(local)


def test_a_sharded_run_whose_client_is_killed_resumes_to_the_same_bytes(cluster, tmp_path):
    """gzip shards are spooled by the slab tasks: after the client is killed, the rerun assembles
    the shards whose slabs are all journalled and redoes the rest into their segments."""
    local, remote = tmp_path / "local", tmp_path / "dask"
    sharded = [*MNI_SMALL_CHUNKS[1:], "--sharding", "auto", "--shard-size", "256KiB", "--gzip"]
    finish(convert([MNI_SMALL_CHUNKS[0], str(local), *sharded], "--workers", "2"))
    run = convert([MNI_SMALL_CHUNKS[0], str(remote), *sharded], "--scheduler", cluster.address)
    _wait_for_journal(remote, 1, run)
    run.kill()
    run.communicate(timeout=60)
    assert not (remote / "info").exists(), "the client was killed before the run's end"
    finish(convert([MNI_SMALL_CHUNKS[0], str(remote), *sharded], "--scheduler", cluster.address))
    files = chunk_files(local)
    assert sum(name.endswith(".shard") for name in files) > 4
    assert chunk_files(remote) == files
    assert not (remote / ".streamconv" / "spool").exists()


def test_a_local_cluster_from_the_library_writes_the_same_bytes(tmp_path):
    """`scheduler="local"`: a LocalCluster of this machine (no namespaces needed)."""
    import streamconv

    streamconv.convert(MNI152_FILE_PATH, tmp_path / "local", workers=2, chunk_size=32)
    report = streamconv.convert(MNI152_FILE_PATH, tmp_path / "dask", workers=2, chunk_size=32,
                                scheduler="local", memory="512MiB")
    assert report.chunks_written == len(chunk_files(tmp_path / "local")) - 2  # all but the info and stats.json
    assert chunk_files(tmp_path / "dask") == chunk_files(tmp_path / "local")


def test_an_address_that_is_no_scheduler_is_a_usage_error(tmp_path):
    run = subprocess.run([str(BIN / "streamconv"), "convert", MNI152_FILE_PATH, str(tmp_path / "out"),
                          "--scheduler", "no-port"], capture_output=True, timeout=120)
    assert run.returncode == 2
    assert b"cannot reach the Dask scheduler at no-port" in run.stderr
    assert not (tmp_path / "out").exists()


def test_sharded_output_on_a_local_cluster_is_the_local_engines_bytes(tmp_path):
    """Shards under --scheduler: raw chunks written in place by the slab tasks, and
    compressed_segmentation chunks spooled by them and assembled by a task of its own once
    their slabs are journalled; the same shard files as the local engine's."""
    import streamconv

    labels = tmp_path / "labels.nii"
    subprocess.run([sys.executable, str(TOOLS / "make_volume.py"), str(labels), "--shape", "100,90,80",
                    "--dtype", "uint32", "--labels", "50"], check=True, capture_output=True)
    for name, src, options in [("mni", MNI152_FILE_PATH, {"chunk_size": 32}),
                               ("labels", labels, {"chunk_size": 16, "volume_type": "segmentation",
                                                   "encoding": "compressed_segmentation"})]:
        local, remote = tmp_path / f"{name}-local", tmp_path / f"{name}-dask"
        streamconv.convert(src, local, workers=2, sharding="auto", shard_size="64KiB", **options)
        streamconv.convert(src, remote, workers=2, sharding="auto", shard_size="64KiB", scheduler="local",
                           memory="512MiB", **options)
        files = chunk_files(local)
        assert sum(name.endswith(".shard") for name in files) > 4, name
        assert chunk_files(remote) == files, name
        assert not (remote / ".streamconv" / "spool").exists()


@pytest.mark.parametrize("input, sharding", [
    ("region", ()), ("region", ("--sharding", "auto", "--shard-size", "64KiB", "--gzip")), ("stack", ())],
    ids=["raw", "sharded", "sections-decoded-whole"])
def test_a_tiled_run_on_a_cluster_writes_the_local_untiled_bytes(region_volume, inputs, tmp_path, input, sharding):
    """Tiles forced by STREAMCONV_TILE on a LocalCluster: one task per block of every scale, each
    coarser block filled from its finer blocks' pieces; the bytes of whole planes run locally.
    A stack of PNG sections (decoded whole): one task per slab of scale 0 runs its tiles."""
    args = [region_volume, "--chunk-size", "16"] if input == "region" else inputs["stack"]
    local, remote = tmp_path / "local", tmp_path / "dask"
    finish(convert([args[0], str(local), *args[1:], *sharding], "--workers", "2"))
    run = subprocess.run([str(BIN / "streamconv"), "convert", args[0], str(remote), *args[1:],
                          *sharding, "--workers", "2", "--scheduler", "local", "--memory", "512MiB", "-v"],
                         capture_output=True, timeout=300, env={**os.environ, "STREAMCONV_TILE": "32"})
    assert run.returncode == 0, run.stderr.decode()
    assert b" tiles of 32 x 32" in run.stderr  # -v: the plan
    assert (b"each section decoded once per slab by one task" in run.stderr) == (input == "stack")
    files = chunk_files(local)
    assert not sharding or sum(name.endswith(".shard") for name in files) > 4
    assert chunk_files(remote) == files
    assert not (remote / ".streamconv" / "pieces").exists()


def test_a_tiled_stack_on_a_cluster_decodes_each_section_once(inputs, tmp_path, monkeypatch):
    """PNG sections cannot be read by region: on a cluster too each is decoded once, by the task
    of its slab (into a scratch file on its worker's local directory, which the slab's tiles read),
    never once per tile; the scratch is gone at the end, of a task that failed too, and the bytes
    are the local untiled run's. The workers are threads of this process, so that the decodes can be counted here."""
    from distributed import LocalCluster

    import streamconv
    from streamconv.errors import OutputError
    from streamconv.sources.sections import SectionFormat

    sections = Path(inputs["stack"][0])
    options = {"input_orientation": "RIA", "resolution": "20um", "chunk_size": 16}
    streamconv.convert(sections, tmp_path / "local", workers=0, **options)
    decoded: list[str] = []  # every decode of a PNG section, whole or for a region
    decode = SectionFormat.decode
    monkeypatch.setattr(SectionFormat, "decode", lambda self, s, file, out: decoded.append(s.name)
                        or decode(self, s, file, out))
    monkeypatch.setenv("STREAMCONV_TILE", "32")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, resources={"MEMORY": MEMORY}) as cluster:
        streamconv.convert(sections, tmp_path / "dask", scheduler=cluster.scheduler_address, memory=MEMORY,
                           **options)

        def scratch() -> list[Path]:
            return [p for w in cluster.workers.values() for p in Path(w.local_directory).iterdir()
                    if p.name.startswith("streamconv-scratch-")]

        leftovers = scratch()
        assert sorted(decoded) == sorted(str(p) for p in sections.iterdir())
        # a task that fails after decoding (its piece cannot be written) leaves no scratch either
        (tmp_path / "failing" / ".streamconv").mkdir(parents=True)
        (tmp_path / "failing" / ".streamconv" / "pieces").write_bytes(b"")
        with pytest.raises(OutputError, match="cannot write"):
            streamconv.convert(sections, tmp_path / "failing", scheduler=cluster.scheduler_address, memory=MEMORY,
                               **options)
        assert len(decoded) > len(list(sections.iterdir())), "the failing run decoded nothing"
        # the run's other tasks were cancelled, but one running goes on to its end (Dask does
        # not interrupt a running task): its scratch goes then
        deadline = time.monotonic() + 60
        while scratch() and time.monotonic() < deadline:
            time.sleep(0.1)
        leftovers += scratch()
    assert len(json.loads((tmp_path / "dask" / ".streamconv" / "job.json").read_text())["job"]["tiles"]) > 0
    assert leftovers == []
    assert chunk_files(tmp_path / "dask") == chunk_files(tmp_path / "local")
