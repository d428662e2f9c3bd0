"""Where a conversion on a Dask cluster spends its time (issue 26): the local engine with
`--workers N`, then the same conversion on a cluster of N workers (`dask_cluster.py`), with the
CPU-seconds of the client's process tree, of the workers and of the scheduler, and the
scheduler's task stream (when the first task started, how busy the workers were, compute time
per scale). `--py-spy FILE` also records the first worker with py-spy (raw format, idle
samples included) for the shares of its task time.

    python tools/profile_dask.py volume --workers 1 --rounds 2
    python tools/profile_dask.py /tmp/stack-64 --workers 1 --memory 6GiB --py-spy /tmp/worker.txt

`volume` is tools/bench.py's 1 GiB volume (made if missing); any other input is a directory of
sections converted as tools/bench.py's stack. CPU-seconds, not wall time, on a loaded machine.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from dask_cluster import DaskCluster
from make_volume import make_volume
from measuring import measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="'volume' or a directory of sections")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--memory", default="1GiB")
    parser.add_argument("--workdir", default="/tmp/streamconv-bench")
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--py-spy", help="record the first worker with py-spy into this file")
    args = parser.parse_args()
    from distributed import Client

    from streamconv.units import parse_size

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if args.input == "volume":
        source = [str(make_volume(work / "vol-1024x1024x1024-uint8.nii", (1024, 1024, 1024))), "--chunk-size", "64"]
    else:
        source = [args.input, "--resolution", "21166.67,20000,21166.67", "--input-orientation", "RIA"]
    out = work / "out-profile"

    def command(*extra: str) -> list[str]:
        shutil.rmtree(out, ignore_errors=True)
        os.sync()
        return [sys.executable, "-m", "streamconv", "convert", source[0], str(out), *source[1:],
                "--memory", args.memory, "-q", *extra]

    for _ in range(0 if args.skip_local else args.rounds):
        m = measure("local", [command("--workers", str(args.workers))])
        print(f"local --workers {args.workers}: {m.seconds:.2f} s, {m.cpu_seconds:.2f} CPU-s", flush=True)
    cluster = DaskCluster(work, args.workers, parse_size(args.memory))
    spy = None
    try:
        scheduler, workers = cluster.processes[0], cluster.workers
        if args.py_spy:
            spy = subprocess.Popen(["py-spy", "record", "--idle", "-r", "100", "--format", "raw", "--nonblocking",
                                    "-p", str(workers[0].pid), "-o", args.py_spy])
        with Client(cluster.address) as client:
            client.get_task_stream()  # the scheduler records from now on
            for _ in range(args.rounds):
                cmd = command("--scheduler", cluster.address)
                cluster.reset()
                w0, s0 = sum(sum(w.cpu_times()[:2]) for w in workers), sum(scheduler.cpu_times()[:2])
                t0 = time.time()
                m = measure("dask", [cmd])
                t1 = time.time()
                w1, s1 = sum(sum(w.cpu_times()[:2]) for w in workers), sum(scheduler.cpu_times()[:2])
                print(f"dask x{args.workers}: {m.seconds:.2f} s; CPU-s: client {m.cpu_seconds:.2f}, workers "
                      f"{w1 - w0:.2f}, scheduler {s1 - s0:.2f}; worker peaks "
                      + ", ".join(f"{p >> 20} MiB" for p in cluster.peaks))
                stream(client.get_task_stream(start=t0), t0, t1, args.workers)
    finally:
        if spy is not None:
            spy.send_signal(2)
            spy.wait()
        cluster.close()


def stream(tasks: list[dict], t0: float, t1: float, workers: int) -> None:
    """The task stream of one run: when tasks ran, how busy the workers were, compute per scale."""
    compute: dict[str, float] = collections.defaultdict(float)
    other: dict[str, float] = collections.defaultdict(float)
    spans = [s for t in tasks for s in t["startstops"]]
    if not spans:
        return
    first, last = min(s["start"] for s in spans), max(s["stop"] for s in spans)
    for t in tasks:
        key = t["key"]
        kind = "scale " + key.split("-")[2] if key.startswith("streamconv-slab") else key.split("-")[0]
        for s in t["startstops"]:
            (compute if s["action"] == "compute" else other)[kind if s["action"] == "compute" else s["action"]] \
                += s["stop"] - s["start"]
    busy = sum(compute.values())
    print(f"  first task {first - t0:.2f} s after launch, exit {t1 - last:.2f} s after the last; span "
          f"{last - first:.2f} s, compute {busy:.2f} s ({busy / (last - first) / workers:.0%} of {workers} "
          f"worker(s)); " + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(compute.items()))
          + ("; " + ", ".join(f"{k} {v:.2f} s" for k, v in other.items()) if other else ""), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
