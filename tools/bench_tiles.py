"""Tiles (issue 25): a BigBrain-sized stack converted within a budget too small for whole planes
(tiled) and with a large one (whole planes): time, peak memory of the process tree, and whether
both wrote the same bytes.

    python tools/bench_tiles.py --count 128 --memory 1GiB --large 8GiB
    python tools/bench_tiles.py --count 128 --memory 1GiB --skip-large   (the tiled run only)
    python tools/bench_tiles.py --count 256 --memory 1GiB --large 4GiB --repeat 3

With `--repeat N` the two budgets run in N interleaved rounds, the order swapped every round
(tiled first, then large first, ...), every run reported. Before each run the previous output is
removed, the file system synced and the input read once, as tools/bench.py does. With
`--fresh-fs SIZE` (root) each run writes to an empty ext4 file system made for it, so that no
run pays for the deletion of another's output (measuring.fresh_filesystem).

The sections are tools/make_sections.py's (6572 x 5711 uint8 PNG, RIA, as tools/bench.py's
stack row; made once in --workdir). Peak memory is sampled every 50 ms as the sum over the
process tree of PSS less its shared-memory part, plus the bytes allocated by the run's files in
/dev/shm (`streamconv-<pid>-...`, the slab buffers, mapped or not): the whole tree, shared
memory counted once, which is what `--memory` bounds. The machine should be quiet for the times;
the peaks do not depend on it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from make_sections import make_sections
from measuring import _cpu, _tree, fresh_filesystem, settle

ROOT = Path(__file__).resolve().parent.parent
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
STREAMCONV = [sys.executable, "-m", "streamconv"]
SHM = Path("/dev/shm")


def _private(pid: int) -> int:
    """PSS less its shared-memory part (counted from /dev/shm instead)."""
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in ("Pss", "Pss_Shmem"):
                    fields[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError):
        return 0
    return fields.get("Pss", 0) - fields.get("Pss_Shmem", 0)


def _shm(pids: list[int]) -> int:
    total = 0
    prefixes = tuple(f"streamconv-{p}-" for p in pids)
    for entry in os.scandir(SHM):
        if entry.name.startswith(prefixes):
            try:
                total += entry.stat().st_blocks * 512
            except OSError:
                pass
    return total


def run(cmd: list[str]) -> tuple[float, float, int, str]:
    """Wall seconds, CPU-seconds of the tree (as tools/measuring.py counts them), peak bytes of
    the tree (shared memory once), and the run's last line."""
    peak = 0
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()

    seen: dict[int, float] = {}  # CPU-seconds of every process of the tree, as last sampled

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            tree = _tree(proc.pid)
            peak = max(peak, sum(_private(p) for p in tree) + _shm(tree))
            for p in tree:
                seen[p] = max(seen.get(p, 0.0), _cpu(p))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # rusage misses processes not reaped by a parent of the tree (the fork server's workers)
    cpu_seconds = max(after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime, sum(seen.values()))
    return seconds, cpu_seconds, peak, ((out + err).strip().splitlines() or [""])[-1]


def digest(root: Path) -> str:
    """One hash of every file of an output (its state in .streamconv/ aside)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and ".streamconv" not in p.parts:
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/streamconv-bench")
    parser.add_argument("--count", type=int, default=128)
    parser.add_argument("--width", type=int, default=6572)
    parser.add_argument("--height", type=int, default=5711)
    parser.add_argument("--memory", default="1GiB", help="the budget that tiles")
    parser.add_argument("--large", default="8GiB", help="a budget for whole planes")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds")
    parser.add_argument("--fresh-fs", metavar="SIZE", help="each run's output on an empty ext4 file system "
                        "of SIZE made for it (measuring.fresh_filesystem; root)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more streamconv options")
    args = parser.parse_args()
    work = Path(args.workdir)
    paths = make_sections(work / f"sections-{args.width}x{args.height}", args.count, args.width, args.height)
    stack = work / f"stack-{args.count}"
    if not stack.exists():
        stack.mkdir(parents=True)
        for p in paths:
            os.link(p, stack / Path(p).name)
    digests: dict[str, str] = {}
    times: dict[str, list[float]] = {}
    budgets = [args.memory] + ([] if args.skip_large else [args.large])
    for round_ in range(args.repeat):
        for budget in budgets if round_ % 2 == 0 else budgets[::-1]:
            out = work / f"out-tiles-{budget}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [*STREAMCONV, "convert", str(stack), str(out), "--resolution", "21166.67,20000,21166.67",
                   "--input-orientation", "RIA", "--memory", budget, "--workers", str(args.workers), *args.extra]
            plan = subprocess.run(cmd + ["--dry-run"], capture_output=True, text=True, check=True).stdout
            tiles = next((line for line in plan.splitlines() if line.startswith("slabs:")), "")
            with fresh_filesystem(out, args.fresh_fs) if args.fresh_fs else contextlib.nullcontext(out):
                settle(sorted(stack.iterdir()))
                seconds, cpu, peak, summary = run(cmd)
                if budget not in digests:
                    digests[budget] = digest(out)
            times.setdefault(budget, []).append(seconds)
            print(f"round {round_ + 1} --memory {budget}: {seconds:.1f} s, {cpu:.1f} CPU-s, peak "
                  f"{peak / 2**20:.0f} MiB of the tree ({'within' if peak <= _bytes(budget) else 'OVER'} "
                  f"the budget); {tiles}\n  {summary}", flush=True)
    if len(digests) == 2:
        print("same bytes" if len(set(digests.values())) == 1 else "DIFFERENT BYTES")
        ratios = [a / b for a, b in zip(times[args.memory], times[args.large])]
        print(f"--memory {args.memory} / {args.large} per round: " + ", ".join(f"{r:.2f}x" for r in ratios))


def _bytes(size: str) -> int:
    from streamconv.units import parse_size

    return parse_size(size)


if __name__ == "__main__":
    main()
