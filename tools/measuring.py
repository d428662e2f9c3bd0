"""How tools/bench.py times a contestant and samples the memory of its process tree."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent  # this interpreter's scripts (dask, neuroglancer-scripts' steps)
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Measurement:
    name: str
    seconds: float
    peak_rss: int
    peak_pss: int
    output_bytes: int = 0
    files: int = 0
    worker_rss: list[int] = field(default_factory=list)  # Dask runs: each worker's peak (not in the tree)
    #: user + system CPU-seconds of the commands' process trees: less sensitive than wall time
    #: to a loaded machine. The larger of the waited-for children's (getrusage: misses workers
    #: whose parent never waits for them, as a fork server's) and the sum of what each process
    #: of the tree had used when last sampled (misses the last 20 ms of each, and processes
    #: shorter than that)
    cpu_seconds: float = 0.0


def _tree(pid: int) -> list[int]:
    """pid and its descendants, from /proc/PID/task/TID/children: a few small reads, where
    psutil's children() reads the stat file of every process on the machine."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:  # exited meanwhile
            pass
    return out


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration, ValueError):
        return 0


def _cpu(pid: int) -> float:
    """CPU-seconds (user + system) a process has used so far, from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def measure(name: str, commands: list[list[str]], durable: bool = False) -> Measurement:
    """Run commands one after another; time them and sample the process tree's memory.
    `durable`: the time includes a sync(1) after them, until the output is on disk.

    The sampler shares the machine's two cores with the contestant, so it must cost little,
    and the same per process whatever the contestant: every 20 ms it reads each process's
    statm (RSS), every 100 ms its smaps_rollup (PSS, which walks the page tables). Sampling
    streamconv's five processes (the 256 MiB compressed_segmentation row) costs 8-9% of a
    core; psutil's memory_full_info and children() cost 22-24%, more the more processes a
    contestant has, with the same peaks (issue 18)."""
    peak_rss = peak_pss = 0
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seen: dict[int, float] = {}  # CPU-seconds of each process of the trees, when last sampled
    for cmd in commands + ([["sync"]] if durable else []):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        stop = threading.Event()

        def sample(pid: int, stop: threading.Event) -> None:
            nonlocal peak_rss, peak_pss
            k = 0
            while not stop.is_set():
                tree = _tree(pid)
                peak_rss = max(peak_rss, sum(_rss(p) for p in tree))
                for p in tree:
                    seen[p] = max(seen.get(p, 0.0), _cpu(p))
                if k % 5 == 0:
                    peak_pss = max(peak_pss, sum(_pss(p) for p in tree))
                k += 1
                stop.wait(0.02)

        sampler = threading.Thread(target=sample, args=(proc.pid, stop), daemon=True)
        sampler.start()
        _, err = proc.communicate()
        stop.set()
        sampler.join()
        if proc.returncode:
            raise SystemExit(f"{name}: {' '.join(cmd)} failed:\n{err.decode()[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = max(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, sum(seen.values()))
    return Measurement(name, time.perf_counter() - started, peak_rss, peak_pss, cpu_seconds=cpu)


def settle(inputs: list[Path], *outputs: Path) -> None:
    """The same start for every run: its outputs removed, nothing dirty in the page cache, the
    input read once (a warm page cache for everyone)."""
    for out in outputs:
        shutil.rmtree(out, ignore_errors=True)
    os.sync()
    for path in inputs:  # the same warm page cache for everyone
        with open(path, "rb") as f:
            while f.read(64 << 20):
                pass


@contextlib.contextmanager
def fresh_filesystem(mount: Path, size: str) -> Iterator[Path]:
    """An empty ext4 file system of `size` (sparse, on a loop device with direct I/O, so that
    its pages are cached once) mounted at `mount` for one run, then unmounted and deleted (root
    only). Every run then starts from the same file system state: on this VM's disk, creating
    files right after another run's output was deleted costs 2-3x (stop 30's profile: ext4's
    search of recently deleted inodes), so that in interleaved rounds the first run of each
    round, which follows the deletion of two outputs, was the slow one whichever it was."""
    image = mount.with_name(mount.name + ".img")
    shutil.rmtree(mount, ignore_errors=True)
    mount.mkdir(parents=True)
    subprocess.run(["truncate", "-s", size, str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    device = subprocess.run(["losetup", "--direct-io=on", "--find", "--show", str(image)], check=True,
                            capture_output=True, text=True).stdout.strip()
    try:
        subprocess.run(["mount", device, str(mount)], check=True)
        try:
            yield mount
        finally:
            subprocess.run(["umount", str(mount)], check=True)
    finally:
        subprocess.run(["losetup", "--detach", device], check=True)
        image.unlink()
