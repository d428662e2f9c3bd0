"""A conversion on a real Dask cluster (Dask's own `dask scheduler` and `dask worker`) makes the
local engine's bytes, through a worker killed mid-run and a client killed mid-run.

The workers run in a private mount namespace with an empty /dev/shm of their own, so that any
reliance on memory shared with the client fails: on several hosts nothing is shared.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nilearn.datasets import MNI152_FILE_PATH

pytest.importorskip("distributed")

BIN = Path(sys.executable).parent
TOOLS = Path(__file__).parents[1] / "tools"
MEMORY = 1 << 30  # each worker's MEMORY resource, and streamconv's --memory
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
    kills the worker), on 127.0.0.1, stopped by `close`."""

    def __init__(self, tmp: Path, workers: int = 2) -> None:
        file = tmp / "scheduler.json"
        common = ["--no-dashboard", "--host", "127.0.0.1"]
        self.logs = open(tmp / "cluster.log", "wb")
        self.scheduler = subprocess.Popen([str(BIN / "dask"), "scheduler", "--port", "0", "--scheduler-file",
                                           str(file), *common], stdout=self.logs, stderr=self.logs)
        self.workers: list[subprocess.Popen] = []
        try:
            deadline = time.monotonic() + 60
            while not file.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.address = json.loads(file.read_text())["address"]
            self.workers = [subprocess.Popen(
                [*PRIVATE_SHM, str(BIN / "dask"), "worker", self.address, "--nthreads", "1", "--no-nanny",
                 "--resources", f"MEMORY={MEMORY}", "--name", f"w{i}", *common],
                stdout=self.logs, stderr=self.logs) for i in range(workers)]
            self._wait_for_workers(workers, deadline)
        except BaseException:
            self.close()
            raise

    def _wait_for_workers(self, n: int, deadline: float) -> None:
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(n, timeout=max(1.0, deadline - time.monotonic()))

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


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    reason = _namespaces_work()
    if reason is not None:
        pytest.skip(f"no private mount namespace for the workers: {reason}")
    running = Cluster(tmp_path)
    try:
        yield running
    finally:
        running.close()


def chunk_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".streamconv" not in p.parts}


def convert(args: list[str], *extra: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "streamconv"), "convert", *args, "-q", "--memory", str(MEMORY), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen) -> None:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()


def inputs(tmp: Path) -> dict[str, list[str]]:
    """The command lines of three kinds of input: the MNI template (a gzip NIfTI, read in order),
    a slice stack on its side (RIA), a label volume in compressed_segmentation."""
    stack, labels = tmp / "sections", tmp / "labels.nii"
    subprocess.run([sys.executable, str(TOOLS / "make_sections.py"), str(stack), "--count", "40",
                    "--width", "150", "--height", "120"], check=True, capture_output=True)
    subprocess.run([sys.executable, str(TOOLS / "make_volume.py"), str(labels), "--shape", "100,90,80",
                    "--dtype", "uint32", "--labels", "50"], check=True, capture_output=True)
    return {"mni": [MNI152_FILE_PATH, "--chunk-size", "32"],
            "stack": [str(stack), "--input-orientation", "RIA", "--resolution", "20um", "--chunk-size", "16"],
            "labels": [str(labels), "--type", "segmentation", "--encoding", "compressed_segmentation",
                       "--chunk-size", "16"]}


def test_a_cluster_without_shared_memory_writes_the_local_engines_bytes(cluster, tmp_path):
    for name, args in inputs(tmp_path).items():
        local, remote = tmp_path / f"{name}-local", tmp_path / f"{name}-dask"
        finish(convert([args[0], str(local), *args[1:]], "--workers", "2"))
        finish(convert([args[0], str(remote), *args[1:]], "--scheduler", cluster.address))
        assert chunk_files(remote) == chunk_files(local), name
        assert not (remote / ".streamconv" / "pieces").exists(), "pieces are removed at the end"


def slabs_done(out: Path) -> int:
    journal = out / ".streamconv" / "journal"
    return journal.read_text().count("slab ") if journal.exists() else 0


def _wait_for_journal(out: Path, lines: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if slabs_done(out) >= lines:
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


def test_a_client_killed_mid_run_resumes_to_the_same_bytes(cluster, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "dask"
    args = [MNI_SMALL_CHUNKS[0], str(remote), *MNI_SMALL_CHUNKS[1:]]
    finish(convert([MNI_SMALL_CHUNKS[0], str(local), *MNI_SMALL_CHUNKS[1:]], "--workers", "2"))
    run = convert(args, "--scheduler", cluster.address)
    _wait_for_journal(remote, 1, run)
    run.kill()
    run.communicate(timeout=60)
    assert not (remote / "info").exists(), "the client was killed before the run's end"
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
    assert report.chunks_written == len(chunk_files(tmp_path / "local")) - 1  # all but the info
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
