"""The cost of the value statistics (`streamconv/stats.py`), in CPU-seconds, so that it can be
measured on a loaded machine:

    python tools/bench_stats.py --size 256
    python tools/bench_stats.py --input /tmp/streamconv-bench/vol-1024x1024x1024-uint8.nii --repeat 1

1. the band kernel alone (a `stats.Meter` fed the 16 chunks of 64^3 of a band, and its sample),
   CPU nanoseconds per voxel;
2. a whole conversion in this process (`--workers 0`: every CPU-second is ours) with and without
   statistics (`Job.collect_stats` switched off), CPU nanoseconds per voxel of scale 0, best of
   `--repeat` runs of each, interleaved;
3. the statistics' own CPU time inside a raw conversion (their functions timed): on a loaded
   machine the difference of two conversions varies more than the statistics cost.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

import streamconv
from streamconv.engine import pipeline, runner
from streamconv.engine.runner import Job
from streamconv.kernels.stats import EXACT, SAMPLED_PLANES, SAMPLED_ROWS, Meter, Sampling
from streamconv.layout.statsfile import VolumeStats


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def values(shape: tuple[int, ...], dtype: str, seed: int, clipped: bool) -> np.ndarray:
    """Normal values around 100 (sd 40); cast to an integer type they wrap around and reach its
    limits, which spares the minimum and maximum from then on (`stats._Channel.limits`):
    `clipped` keeps them in [5, 250], as in an image that never reaches them."""
    data = np.random.default_rng(seed).standard_normal(shape) * 40 + 100
    return (np.clip(data, 5, 250) if clipped else data).astype(dtype)


def kernel(dtype: str, repeat: int, sample: Sampling, clipped: bool = False) -> float:
    """CPU ns per voxel of a band task's `Meter` on a band of 64 x 256 x 256 voxels: each of its
    16 chunks of 64^3 added (as the band task adds the contiguous copy it encodes; the copies
    are made before the clock starts), then the band's histogram sample, then the result."""
    band = values((1, 64, 256, 256), dtype, 0, clipped)
    chunks = [np.ascontiguousarray(band[:, :, y:y + 64, x:x + 64]) for y in range(0, 256, 64)
              for x in range(0, 256, 64)]
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()  # not getrusage: its best of 5 runs under a millisecond can be 0
        meter = Meter(band.dtype, sample)  # one per band task
        for chunk in chunks:
            meter.add(chunk)
        meter.sample(band, (0, 0, 0))
        meter.result()
        best = min(best, time.process_time() - start)
    return best / band.size * 1e9


def conversion(source: Path, out: Path, repeat: int, **options: object) -> tuple[float, float]:
    """Best CPU-seconds of a conversion in this process without and with statistics, the runs
    interleaved (off, on, off, on...) so that a change in the machine's load hits both alike."""
    original = Job.collect_stats
    best = {False: float("inf"), True: float("inf")}
    try:
        for _ in range(repeat):
            for stats in (False, True):
                Job.collect_stats = original if stats else property(lambda self: False)  # type: ignore[method-assign]
                shutil.rmtree(out, ignore_errors=True)
                start = cpu()
                streamconv.convert(source, out, workers=0, **options)
                best[stats] = min(best[stats], cpu() - start)
        return best[False], best[True]
    finally:
        Job.collect_stats = original  # type: ignore[method-assign]


def own_cost(source: Path, out: Path, repeat: int) -> tuple[float, float]:
    """Best CPU-seconds of a conversion with statistics, and of the statistics' own code in it
    (the band tasks' `Meter`: `add`, `sample`, `result`; the main process's merges, slab files and `stats.json`): less
    noisy on a loaded machine than the difference of two conversions."""
    spent = [0.0]

    def timed(function):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            start = cpu()
            try:
                return function(*args, **kwargs)
            finally:
                spent[0] += cpu() - start
        return wrapper

    patched = [(Meter, "add"), (Meter, "sample"), (Meter, "result"), (pipeline, "merge"),
               (VolumeStats, "slab_done"), (runner, "write_stats")]
    patched = [(owner, name) for owner, name in patched if hasattr(owner, name)]  # an older tree: no sample
    originals = [getattr(owner, name) for owner, name in patched]
    for owner, name in patched:
        setattr(owner, name, timed(getattr(owner, name)))
    best, own = float("inf"), float("inf")
    try:
        for _ in range(repeat):
            shutil.rmtree(out, ignore_errors=True)
            spent[0] = 0.0
            start = cpu()
            streamconv.convert(source, out, workers=0)
            best, own = min(best, cpu() - start), min(own, spent[0])
        return best, own
    finally:
        for (owner, name), original in zip(patched, originals):
            setattr(owner, name, original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256, help="edge of the test volume")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--raw-only", action="store_true", help="skip the gzip conversions (slow)")
    parser.add_argument("--clipped", action="store_true", help="values in [5, 250]: never an integer type's limits")
    parser.add_argument("--input", help="only the statistics' own code, on this volume (e.g. tools/bench.py's 1 GiB)")
    args = parser.parse_args()
    if args.input:
        with tempfile.TemporaryDirectory() as tmp:
            total, own = own_cost(Path(args.input), Path(tmp) / "out", args.repeat)
        print(f"{args.input}: convert raw {total:.2f} CPU-s, of which the statistics' own code {own:.3f} "
              f"({own / total:.1%}); {time.strftime('%H:%M')}, load {os.getloadavg()[0]:.1f}")
        return
    n = args.size
    print(f"CPU time (getrusage), best of {args.repeat}; {time.strftime('%H:%M')}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for dtype in ("uint8", "uint16", "float32"):
            rows, planes = Sampling(SAMPLED_ROWS, 1), Sampling(SAMPLED_ROWS, SAMPLED_PLANES)
            kernels = [kernel(dtype, args.repeat, s, args.clipped) for s in (EXACT, rows, planes)]
            print(f"{dtype}: kernel {kernels[0]:.2f} ns/voxel (histogram of every voxel), "
                  f"{kernels[1]:.2f} (every {SAMPLED_ROWS}th row), {kernels[2]:.2f} "
                  f"(every {SAMPLED_ROWS}th row of every {SAMPLED_PLANES}th plane)")
            data = values((n, n, n), dtype, 1, args.clipped)
            nib.save(nib.Nifti1Image(data, np.eye(4)), root / "in.nii")
            for options in ({},) if args.raw_only else ({}, {"gzip": True}):
                off, on = conversion(root / "in.nii", root / "out", args.repeat, **options)
                name = "gzip" if options else "raw"
                print(f"  convert {name}: {off / n**3 * 1e9:.2f} -> {on / n**3 * 1e9:.2f} ns/voxel "
                      f"({(on - off) / off:+.1%}) without -> with statistics")
            total, own = own_cost(root / "in.nii", root / "out", args.repeat)
            print(f"  convert raw: {total / n**3 * 1e9:.2f} ns/voxel, of which the statistics' own code "
                  f"{own / n**3 * 1e9:.2f} ({own / total:.1%})")


if __name__ == "__main__":
    main()
