"""The cluster rows of tools/bench.py (`--dask-workers N...`): streamconv on a Dask cluster of N
workers next to the local engine with `--workers N`, the same command otherwise.

    python tools/bench.py volume --memory 1GiB --dask-workers 1 2 --cluster-only --repeat 3
    python tools/bench.py stack --count 256 --memory 6GiB --dask-workers 1 2 --cluster-only --repeat 3

(The stack at `--memory 4GiB` is refused on a cluster: a worker's plan keeps its 64-section slab
whole, a 5.6 GiB task; docs/benchmarks.md, issue 26's second pass.)

For each N, a cluster (`tools/dask_cluster.py`: `dask scheduler` and N x `dask worker --nthreads
1 --no-nanny --resources MEMORY=<--memory>` on 127.0.0.1) is started, then every round runs the
local engine with `--workers N` and the cluster run, one after the other (interleaved: a change
in the machine's load hits both). A first job on each, as bench.py's other rows have, is timed
apart and printed, not in the ratio: on the fresh cluster it is the one whose workers first
import and run streamconv, 0.1-0.25 s more than the jobs that follow on the same workers, as on
a long-lived cluster (docs/benchmarks.md, stop 34). The cluster run's CPU-seconds are the
client's process tree, the workers' and the scheduler's (psutil, before and after); each
worker's peak RSS is sampled.

The figure of issue 26: per-worker throughput on the cluster against the local engine's with
as many workers, i.e. local seconds / cluster seconds for the same N (same volume, same number
of workers), per round and its median; the target is 0.8. `--memory` is the budget of each
Dask worker and of the local engine's whole process tree: a worker's peak RSS is printed beside
it. The worker's share of the machine: the N workers, the scheduler and the client (locally:
the N workers and the main process) share the machine's cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable
from pathlib import Path

from dask_cluster import DaskCluster
from measuring import Measurement, measure, settle

MiB = 1 << 20


def dask_bench(work: Path, inputs: list[Path], streamconv_cmd: Callable[[Path, int], list[str]],
               args: argparse.Namespace, files: Callable[[Path], tuple[int, int]]) -> list[Measurement]:
    """For each N of --dask-workers, --repeat rounds of the local engine with `--workers N` and
    the same command with `--scheduler` on a cluster of N workers."""
    from streamconv.units import parse_size

    results = []
    local, remote = work / "out-local", work / "out-dask"
    for n in args.dask_workers:
        cluster = DaskCluster(work, n, parse_size(args.memory))
        try:
            first = []
            for out, extra in ((local, []), (remote, ["--scheduler", cluster.address])):
                settle(inputs, local, remote)
                first.append(measure("first job", [streamconv_cmd(out, n) + extra], args.durable).seconds)
            print(f"first job, x{n}: local {first[0]:.2f} s, on the fresh cluster {first[1]:.2f} s (not in the ratio)")
            for _ in range(args.repeat):
                settle(inputs, local, remote)
                m = measure(f"streamconv local x{n}", [streamconv_cmd(local, n)], args.durable)
                m.output_bytes, m.files = files(local)
                results.append(m)
                settle(inputs, local, remote)
                cluster.reset()
                before = cluster.cpu()
                m = measure(f"streamconv dask x{n}", [streamconv_cmd(remote, n) + ["--scheduler", cluster.address]],
                            args.durable)
                m.cpu_seconds += cluster.cpu() - before  # the client's tree, the workers and the scheduler
                m.worker_rss = list(cluster.peaks)
                m.output_bytes, m.files = files(remote)
                results.append(m)
        finally:
            cluster.close()
    cluster_report(results, parse_size(args.memory))
    return results


def cluster_report(results: list[Measurement], budget: int) -> None:
    """Per N: the ratio local seconds / cluster seconds per round (per-worker throughput on the
    cluster against the local engine's, the same N), CPU-seconds and memory per worker."""
    cores = os.cpu_count() or 1
    counts = sorted({int(m.name.rsplit("x", 1)[1]) for m in results if m.name.startswith("streamconv dask x")})
    for n in counts:
        local = [m for m in results if m.name == f"streamconv local x{n}"]
        remote = [m for m in results if m.name == f"streamconv dask x{n}"]
        if not local or not remote:
            continue
        wall = [a.seconds / b.seconds for a, b in zip(local, remote)]
        cpu = [a.cpu_seconds / b.cpu_seconds for a, b in zip(local, remote) if b.cpu_seconds]
        peak = max(max(m.worker_rss, default=0) for m in remote)
        print(f"\n{n} Dask worker{'s' * (n > 1)} against --workers {n} ({n} worker{'s' * (n > 1)}, the scheduler "
              f"and the client share {cores} cores: at most {min(1.0, cores / n):.2g} of a core per worker; "
              f"locally {n} worker{'s' * (n > 1)} and the main process share them)")
        print("  seconds, local:  " + ", ".join(f"{m.seconds:.2f}" for m in local)
              + "; CPU-seconds " + ", ".join(f"{m.cpu_seconds:.2f}" for m in local))
        print("  seconds, dask:   " + ", ".join(f"{m.seconds:.2f}" for m in remote)
              + "; CPU-seconds " + ", ".join(f"{m.cpu_seconds:.2f}" for m in remote))
        print("  per-worker throughput, dask / local (local s / dask s) per round: "
              + ", ".join(f"{r:.2f}" for r in wall) + f" (median {statistics.median(wall):.2f}; target 0.80)")
        if cpu:
            print("  CPU-seconds, local / dask (client, workers and scheduler) per round: "
                  + ", ".join(f"{r:.2f}" for r in cpu) + f" (median {statistics.median(cpu):.2f})")
        print(f"  peak RSS per Dask worker: {peak / MiB:.0f} MiB, budget (--memory) {budget / MiB:.0f} MiB: "
              + ("under" if peak <= budget else "OVER") + "; local process tree: "
              + ", ".join(f"{m.peak_rss / MiB:.0f}" for m in local) + " MiB RSS, "
              + ", ".join(f"{m.peak_pss / MiB:.0f}" for m in local) + " MiB PSS")
