"""A Dask cluster for tools/bench.py: `dask scheduler` and workers on 127.0.0.1, started and
stopped here."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import psutil
from measuring import BIN


class DaskCluster:
    """`dask scheduler` and `n` x `dask worker` on 127.0.0.1, each worker's RSS sampled every 20 ms."""

    def __init__(self, work: Path, n: int, memory: int) -> None:
        file = work / "scheduler.json"
        file.unlink(missing_ok=True)
        local = ["--no-dashboard", "--host", "127.0.0.1"]
        self.processes = [psutil.Popen([str(BIN / "dask"), "scheduler", "--port", "0", "--scheduler-file", str(file),
                                        *local], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        while not file.exists():
            time.sleep(0.1)
        self.address = json.loads(file.read_text())["address"]
        self.workers = [psutil.Popen([str(BIN / "dask"), "worker", self.address, "--nthreads", "1", "--no-nanny",
                                      "--resources", f"MEMORY={memory}", *local],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(n)]
        self.processes += self.workers
        from distributed import Client

        with Client(self.address) as client:
            client.wait_for_workers(n, timeout=120)
        self.peaks = [0] * n
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            for i, w in enumerate(self.workers):
                try:
                    self.peaks[i] = max(self.peaks[i], w.memory_info().rss)
                except psutil.Error:
                    pass
            self._stop.wait(0.02)

    def cpu(self) -> float:
        """CPU-seconds (user + system) the scheduler and the workers have used so far."""
        total = 0.0
        for w in self.processes:
            try:
                t = w.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def reset(self) -> None:
        self.peaks = [0] * len(self.workers)

    def close(self) -> None:
        self._stop.set()
        self._sampler.join()
        for p in self.processes:
            p.terminate()
        for p in self.processes:
            try:
                p.wait(30)
            except psutil.TimeoutExpired:
                p.kill()
                p.wait()
