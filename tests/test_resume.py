"""Resume: killed runs finish where they stopped, byte for byte; the lock, signals and a full
disk leave a resumable output."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imagecodecs
import nibabel as nib
import numpy as np
import pytest

import streamconv
from streamconv.errors import OutputError, UsageError

STREAMCONV = str(Path(sys.executable).with_name("streamconv"))


def files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".streamconv" not in p.parts}


def mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*")
            if p.is_file() and ".streamconv" not in p.parts}


@pytest.fixture(scope="module")
def volume(tmp_path_factory) -> Path:
    """A 48 MiB volume with structure: long enough to be killed in the middle."""
    path = tmp_path_factory.mktemp("vol") / "vol.nii"
    x, y, z = np.meshgrid(np.arange(256), np.arange(384), np.arange(512), indexing="ij", sparse=True)
    data = ((x * 3 + y * 5 + z * 7) % 251 + (x * y) % 5).astype(np.uint8)
    nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.5, 1.0, 1.0])), path)
    return path


@pytest.fixture(scope="module")
def label_volume(tmp_path_factory) -> Path:
    """32 MiB of uint32 labels: blocky regions."""
    path = tmp_path_factory.mktemp("labels") / "labels.nii"
    x, y, z = np.meshgrid(np.arange(256), np.arange(256), np.arange(128), indexing="ij", sparse=True)
    data = ((x // 12) * 7919 + (y // 9) * 104729 + (z // 5) * 1299709).astype(np.uint32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("stack")
    rng = np.random.default_rng(5)
    base = rng.integers(0, 200, (300, 400), dtype=np.uint8)
    for k in range(160):
        imagecodecs.imwrite(directory / f"s{k:03d}.png", np.roll(base, k, axis=1) + (k % 50))
    return directory


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([STREAMCONV, "convert", *args], capture_output=True, text=True, **kwargs)


class LocalOutput:
    """An output directory, as the kill-and-resume test looks at it (tests/test_object_stores.py
    has the same for a bucket)."""

    def __init__(self, root: Path) -> None:
        self.root, self.url = root, str(root)

    def files(self) -> dict[str, bytes]:
        return files(self.root)

    def versions(self) -> dict[str, object]:
        return dict(mtimes(self.root)) if self.root.exists() else {}

    def finished(self) -> bool:
        job = self.root / ".streamconv" / "job.json"  # absent when killed before the plan was saved
        return job.exists() and '"complete": true' in job.read_text()

    def leftovers(self) -> list[str]:
        """Temporary files and the lock: none once a run has finished."""
        lock = self.root / ".streamconv" / "lock"
        return [str(p) for p in self.root.rglob("*.tmp")] + ([str(lock)] if lock.exists() else [])


def kill_and_resume(src: Path, out: Path | LocalOutput, args: list[str], seed: int, kills: int = 3,
                    reference: Path | None = None, env: dict[str, str] | None = None,
                    pace: float = 1.0) -> dict:
    """Kill the whole process group at random moments, then let a last run finish; measure
    how many chunk files each resume wrote again. `out`: a directory, or any output with the
    methods of `LocalOutput`; `reference`: where the uninterrupted local run goes; `pace`: how
    much longer a run into `out` takes than the local one (kills land within that time)."""
    target = LocalOutput(out) if isinstance(out, Path) else out
    reference = reference or Path(target.url + "-ref")
    started = time.monotonic()
    assert run(str(src), str(reference), "-q", *args).returncode == 0
    duration = (time.monotonic() - started) * pace
    rng = random.Random(seed)
    redone = killed = 0
    finished = False
    for _ in range(kills + 1):
        before = target.versions()
        proc = subprocess.Popen([STREAMCONV, "convert", str(src), target.url, "-q", *args],
                                start_new_session=True, stderr=subprocess.PIPE, env=env)
        try:  # the last run is left to finish
            proc.wait(timeout=rng.uniform(0.15, 0.85) * duration if killed < kills else None)
            assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
            finished = True
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed += 1  # even after it finished: the next run is then a no-op (issue 16)
            finished = target.finished()
        finally:
            if proc.stderr:
                proc.stderr.close()
        after = target.versions()
        redone += sum(1 for k, t in before.items() if after.get(k, t) != t)
        if finished:
            break
    assert target.files() == files(reference)
    assert not target.leftovers()
    report = {"killed": killed, "redone_chunks": redone, "chunks": len(files(reference)) - 1}
    print(f"\n{src.name}: {report}")  # the redone work, reported (pytest -s shows it)
    return report


def test_volume_survives_sigkill_at_random_moments(volume, tmp_path):
    report = kill_and_resume(volume, tmp_path / "out", ["--chunk-size", "32", "--workers", "2"], seed=11)
    assert report["redone_chunks"] < report["chunks"]


def test_slice_stack_survives_sigkill_at_random_moments(stack, tmp_path):
    report = kill_and_resume(stack, tmp_path / "out", ["--chunk-size", "16", "--workers", "2",
                                                       "--resolution", "20um,20um,20um"], seed=5)
    assert report["redone_chunks"] < report["chunks"]


def test_compressed_encoding_survives_sigkill_at_random_moments(label_volume, tmp_path):
    report = kill_and_resume(label_volume, tmp_path / "out",
                             ["--chunk-size", "32", "--workers", "2", "--type", "segmentation",
                              "--encoding", "compressed_segmentation", "--gzip"], seed=3)
    assert report["redone_chunks"] < report["chunks"]


@pytest.mark.parametrize("seed, gzip", [(7, []), (23, ["--gzip"])])
def test_sharded_volume_survives_sigkill_at_random_moments(volume, tmp_path, seed, gzip):
    """Raw chunks are written in place (their shard files laid out at the start): a redone
    slab rewrites its ranges. With --gzip they are spooled: spools, shard files and the journal
    agree after a kill at any moment: shards of slabs all complete are assembled by the resume,
    the other slabs redone into their segments."""
    report = kill_and_resume(volume, tmp_path / "out", ["--chunk-size", "32", "--workers", "2",
                                                        "--sharding", "auto", "--shard-size", "1MiB",
                                                        *gzip], seed=seed, kills=4)
    assert report["chunks"] > 20  # shard files
    assert not (tmp_path / "out" / ".streamconv" / "spool").exists()


@pytest.mark.parametrize("encoding, scales", [("png", []), ("jpeg", ["--max-scales", "1"])])
def test_sharded_slice_stack_survives_sigkill_at_random_moments(stack, tmp_path, encoding, scales):
    """png and jpeg: chunks of sizes known only once encoded, spooled, shard data stored raw.
    jpeg with one scale only: a resume rebuilds a lost coarser slab from the finer chunks on
    disk (the replay), and jpeg has changed those, sharded or not, so its coarser scales are
    not the uninterrupted run's bytes; scale 0 never is replayed, so there it must be exact."""
    kill_and_resume(stack, tmp_path / "out", ["--chunk-size", "16", "--workers", "2", "--encoding", encoding,
                                              "--resolution", "20um,20um,20um", "--sharding", "auto",
                                              "--shard-size", "256KiB", *scales], seed=9, kills=4)


def test_resume_refuses_a_changed_input_or_parameters(tmp_path, volume):
    small = tmp_path / "small.nii"
    nib.save(nib.Nifti1Image(np.arange(40 * 30 * 20, dtype=np.uint16).reshape(40, 30, 20), np.eye(4)), small)
    out = tmp_path / "out"
    (out / ".streamconv").mkdir(parents=True)
    streamconv.convert(small, out, workers=0, chunk_size=8)
    job = (out / ".streamconv" / "job.json").read_text()
    (out / ".streamconv" / "job.json").write_text(job.replace('"complete": true', '"complete": false'))
    with pytest.raises(OutputError, match="chunk_sizes"):
        streamconv.convert(small, out, workers=0, chunk_size=16)
    with pytest.raises(UsageError, match="--no-resume"):
        streamconv.convert(small, out, workers=0, chunk_size=8, resume=False)
    report = streamconv.convert(small, out, workers=0, chunk_size=8)
    assert report.resumed and report.chunks_written == 0
    again = streamconv.convert(small, out, workers=2, chunk_size=8)  # issue 16: the same job is a no-op
    assert again.complete and again.chunks_written == 0 and not again.resumed
    with pytest.raises(OutputError, match="finished conversion of something else.*chunk_sizes"):
        streamconv.convert(small, out, workers=0, chunk_size=16)
    assert streamconv.convert(small, out, workers=0, chunk_size=16, overwrite=True).chunks_written > 0


def restart_machine(out: Path) -> None:
    """What a restart does to an output's records, as seen by the next run: the boot id the
    run wrote is no longer the current one."""
    from streamconv.engine.journal import boot_id
    for name in ("job.json", "journal"):
        record = out / ".streamconv" / name
        record.write_text(record.read_text().replace(boot_id(), "an-earlier-boot"))


def test_after_a_restart_only_synced_checkpoints_are_trusted(tmp_path, volume, monkeypatch):
    from streamconv.engine import journal
    reference = tmp_path / "reference"
    streamconv.convert(volume, reference, workers=0, chunk_size=32)
    out = tmp_path / "out"
    monkeypatch.setattr(journal, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint after every slab
    first = streamconv.convert(volume, out, workers=0, chunk_size=32)
    again = streamconv.convert(volume, out, workers=0, chunk_size=32)  # same boot: finished, nothing redone
    assert again.complete and again.chunks_written == 0
    restart_machine(out)  # it ended without a sync: what came after the last checkpoint is redone
    report = streamconv.convert(volume, out, workers=0, chunk_size=32)
    assert report.resumed and report.chunks_written < first.chunks_written
    assert files(out) == files(reference)
    monkeypatch.setattr(journal, "CHECKPOINT_SECONDS", 3600.0)  # no checkpoint: everything is redone
    out = tmp_path / "unsynced"
    streamconv.convert(volume, out, workers=0, chunk_size=32)
    restart_machine(out)
    report = streamconv.convert(volume, out, workers=0, chunk_size=32)
    assert report.resumed and report.chunks_written == first.chunks_written
    assert files(out) == files(reference)


def test_a_second_run_is_locked_out_and_a_stale_lock_is_taken_over(tmp_path, volume):
    from streamconv.engine.journal import boot_id

    out = tmp_path / "out"
    lock = out / ".streamconv" / "lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen(["sleep", "60"])  # a live process that holds the output
    try:
        lock.write_text(f"{holder.pid} {boot_id()}")
        second = run(str(volume), str(out), "--chunk-size", "32")
        assert second.returncode == 1 and "another run" in second.stderr and str(holder.pid) in second.stderr
        assert not (out / "info").exists()
    finally:
        holder.kill()
        holder.wait()
    assert lock.exists()  # its process is gone: stale now, and taken over
    assert run(str(volume), str(out), "-q", "--chunk-size", "32").returncode == 0
    assert not lock.exists() and (out / "info").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_cleanly_and_say_how_to_resume(tmp_path, volume, sig):
    out = tmp_path / "out"
    proc = subprocess.Popen([STREAMCONV, "convert", str(volume), str(out), "--chunk-size", "32"],
                            start_new_session=True, stderr=subprocess.PIPE, text=True)
    journal = out / ".streamconv" / "journal"
    for _ in range(500):
        if journal.exists() and "slab" in journal.read_text():
            break
        time.sleep(0.01)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 130 and "resume" in err and "Traceback" not in err
    assert not list(out.rglob("*.tmp")) and not (out / ".streamconv" / "lock").exists()
    assert run(str(volume), str(out), "-q", "--chunk-size", "32").returncode == 0
    reference = tmp_path / "ref"
    assert run(str(volume), str(reference), "-q", "--chunk-size", "32").returncode == 0
    assert files(out) == files(reference)


def small_filesystem(path: Path, size: str) -> bool:
    """Mount a tmpfs of `size` at `path`; False where this machine does not let us."""
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_full_disk_stops_cleanly_and_resumes_after_space_is_freed(tmp_path, volume):
    mount = tmp_path / "small"
    if not small_filesystem(mount, "40m"):
        pytest.skip("cannot mount a small tmpfs here (needs root and mount)")
    try:
        filler = mount / "filler"
        filler.write_bytes(b"\0" * (20 << 20))  # the output needs about 55 MiB
        out = mount / "out"
        refused = run(str(volume), str(out), "--chunk-size", "32")  # raw chunks: refused before writing
        assert refused.returncode == 1 and "free" in refused.stderr and len(refused.stderr.splitlines()) == 1
        assert not any(out.glob("*_*_*"))
        # With --skip-empty the need is an upper bound, not refused up front: the disk fills mid-run.
        full = run(str(volume), str(out), "--chunk-size", "32", "--skip-empty")
        assert full.returncode == 1 and "no space left" in full.stderr and "resume" in full.stderr
        assert len(full.stderr.strip().splitlines()) == 1
        assert not list(out.rglob("*.tmp"))
        filler.unlink()
        shutil.rmtree(tmp_path / "ref", ignore_errors=True)
        assert run(str(volume), str(tmp_path / "ref"), "-q", "--chunk-size", "32", "--skip-empty").returncode == 0
        # The output needs more than the tmpfs holds even empty: grow it, as freeing space would.
        subprocess.run(["mount", "-o", "remount,size=200m", str(mount)], check=True)
        resumed = run(str(volume), str(out), "--chunk-size", "32", "--skip-empty")
        assert resumed.returncode == 0, resumed.stderr
        assert files(out) == files(tmp_path / "ref")
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_killed_worker_fails_the_run_clearly_and_the_rerun_resumes(tmp_path, volume):
    import psutil

    out = tmp_path / "out"
    proc = psutil.Popen([STREAMCONV, "convert", str(volume), str(out), "--chunk-size", "32",
                         "--workers", "2"], stderr=subprocess.PIPE, text=True)
    journal = out / ".streamconv" / "journal"
    victim = None
    for _ in range(1000):
        workers = [p for p in proc.children(recursive=True) if p.ppid() != proc.pid]
        if workers and journal.exists() and "slab" in journal.read_text():
            victim = workers[0]
            break
        time.sleep(0.005)
    if victim is None:
        proc.communicate()
        pytest.skip("the run finished before a worker could be killed")
    victim.kill()  # as the OOM killer would
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before the worker died")
    assert proc.returncode == 1 and "worker process died" in err and "resume" in err
    assert len(err.strip().splitlines()) == 1
    assert run(str(volume), str(out), "-q", "--chunk-size", "32").returncode == 0
    reference = tmp_path / "ref"
    assert run(str(volume), str(reference), "-q", "--chunk-size", "32").returncode == 0
    assert files(out) == files(reference)




def _die_soon(told: Path) -> None:
    """Say so, then die as the OOM killer would kill a worker, once the caller has stopped."""
    told.write_text(str(os.getpid()))
    time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGKILL)


def test_work_queued_when_a_worker_dies_is_dropped_without_a_thread_error(tmp_path):
    """Stopping, then a worker dies before the pool is shut down (the CI run where SIGTERM
    reached the main process and the workers at once). Before Python 3.12, a queued task the
    main thread had cancelled made the pool's own thread, failing the queue of a broken pool,
    raise InvalidStateError (CPython gh-107219): a traceback on stderr, and that thread dead
    with workers left running."""
    import threading

    import psutil

    from streamconv.engine.executor import bounded, executor
    from streamconv.errors import Interrupted

    told = tmp_path / "dying"
    errors: list[BaseException | None] = []
    previous, threading.excepthook = threading.excepthook, lambda args: errors.append(args.exc_value)
    try:
        with executor(2) as pool:
            calls = [(_die_soon, told)] + [(time.sleep, 5)] * 100
            with pytest.raises(Interrupted):
                for _ in bounded(pool, len(calls), told.exists, calls):
                    pass
            psutil.Process(int(told.read_text())).wait(timeout=10)
    finally:
        threading.excepthook = previous
    assert errors == []
