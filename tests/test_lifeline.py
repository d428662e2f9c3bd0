"""SIGKILL of the main process alone (the OOM killer's usual choice): its fork server, workers
and resource tracker must not outlive it, and the rerun leaves nothing in /dev/shm."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import psutil

STREAMCONV = str(Path(sys.executable).with_name("streamconv"))


def mapped_shm(processes: list[psutil.Process]) -> set[str]:
    """The /dev/shm files these processes have mapped: the run's semaphores and buffers."""
    names: set[str] = set()
    for proc in processes:
        try:
            names |= {Path(m.path).name for m in proc.memory_maps(grouped=True)
                      if m.path.startswith("/dev/shm/")}
        except (psutil.Error, OSError):
            continue
    return names


def test_killing_the_main_process_alone_leaves_nothing_behind(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, (256, 256, 512), dtype=np.uint8)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "vol.nii")
    out = tmp_path / "out"
    shm_before = set(os.listdir("/dev/shm"))
    args = [STREAMCONV, "convert", "-q", "--workers", "2", "--chunk-size", "32", "--memory", "300MiB",
            str(tmp_path / "vol.nii"), str(out)]
    with subprocess.Popen(args) as main:
        journal = out / ".streamconv" / "journal"
        deadline = time.monotonic() + 120
        while not (journal.exists() and "slab" in journal.read_text()) and time.monotonic() < deadline:
            time.sleep(0.01)
        children = psutil.Process(main.pid).children(recursive=True)
        assert len(children) >= 3  # the fork server, the workers, the resource tracker
        held = mapped_shm([psutil.Process(main.pid), *children])  # its semaphores and buffers
        os.kill(main.pid, signal.SIGKILL)  # the main process only, not its group
        main.wait()
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, [p.cmdline() for p in alive]
    pids = {main.pid} | {p.pid for p in children}

    with subprocess.Popen(args, stderr=subprocess.PIPE, text=True) as rerun:
        _, errors = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, errors
    left = set(os.listdir("/dev/shm")) - shm_before
    assert not [n for n in left if n.startswith("streamconv-")
                and int(n.split("-")[1]) in pids | {rerun.pid}]
    assert not held & set(os.listdir("/dev/shm"))  # other runs' files are not ours to judge
