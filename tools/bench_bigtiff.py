"""Big sections (issue 25): a stack of tiled BigTIFF sections (tools/make_bigtiff_stack.py)
converted within a budget far below one section, next to the time to decode its sections alone,
and checked with tensorstore.

    python tools/make_bigtiff_stack.py /tmp/big/in --sections 48          (32768^2, zlib tiles)
    python tools/bench_bigtiff.py /tmp/big/in /tmp/big/out --memory 1GiB --encoding jpeg

Rows, each a child process measured as tools/bench_tiles.py measures (wall, CPU-seconds and the
peak of the whole process tree, shared memory counted once, sampled every 50 ms):

* decode alone: every tile of every section decoded by tifffile (`TiffPage.segments`) and
  dropped, one section per process, as many processes as `--workers`: the floor for this input.
* streamconv: `convert IN OUT --memory M --encoding E --resolution R --workers N`.

Then tensorstore reads `--patches` random tiles (aligned to the sections' own tiles) of every
section from scales 0, 1 and 2 and compares them with the sections, decoded by tifffile, and
with their 2x2 and 4x4 averages (the reference downsampler for anisotropic sections: each scale
halves x and y, as the plan's scales of 1 x 1 x 20 um voxels do). Lossless encodings must match
exactly up to the averages' rounding; jpeg within the codec's error (the mean and the largest
difference are printed; the mean must stay under 2 grey levels).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_tiles import _bytes, run

ROOT = Path(__file__).resolve().parent.parent
STREAMCONV = [sys.executable, "-m", "streamconv"]


def _decode_all(path: str) -> int:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return sum(1 for _ in tif.pages[0].segments(maxworkers=1))


def decode_floor(sections: list[str], workers: int) -> None:
    """Every tile of every section decoded once and dropped (the child process of the floor row)."""
    with ProcessPoolExecutor(workers) as pool:
        tiles = sum(pool.map(_decode_all, sections))
    print(f"decoded {tiles} tiles of {len(sections)} sections")


def _tile(path: Path, ty: int, tx: int) -> np.ndarray:
    """The section's tile (ty, tx), decoded by tifffile alone."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        across = -(-page.imagewidth // page.tilewidth)
        index = ty * across + tx
        tif.filehandle.seek(page.dataoffsets[index])
        data = tif.filehandle.read(page.databytecounts[index])
        tile = page.decode(data, index, jpegtables=page.jpegtables)[0]
    return np.asarray(tile).reshape(page.tilelength, page.tilewidth)


def check(sections: list[Path], out: Path, patches: int, lossless: bool) -> bool:
    """Scales 0-2 against the sections on random 2x2 groups of their tiles."""
    import tensorstore as ts
    import tifffile

    with tifffile.TiffFile(sections[0]) as tif:
        page = tif.pages[0]
        th, tw, height, width = page.tilelength, page.tilewidth, page.imagelength, page.imagewidth
    scales = [ts.open({"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": f"{out}/"},
                       "scale_index": i}).result() for i in range(3)]
    if any(s.shape[2] != len(sections) for s in scales):
        raise SystemExit("scales 1 and 2 are expected to keep every section (anisotropic voxels)")
    rng = np.random.default_rng(25)
    diffs: list[list[np.ndarray]] = [[], [], []]
    for k, path in enumerate(sections):
        for _ in range(patches):
            ty, tx = int(rng.integers(0, height // th - 1)), int(rng.integers(0, width // tw - 1))
            block = np.block([[_tile(path, ty + i, tx + j) for j in (0, 1)] for i in (0, 1)]).astype(float)
            y, x = ty * th, tx * tw
            for level in range(3):
                f = 2 ** level
                ref = block.reshape(2 * th // f, f, 2 * tw // f, f).mean(axis=(1, 3))
                got = scales[level][x // f:(x + 2 * tw) // f, y // f:(y + 2 * th) // f, k, 0].read().result().T
                diffs[level].append(np.abs(got.astype(float) - ref).ravel())
    ok = True
    for level, parts in enumerate(diffs):
        d = np.concatenate(parts)
        # level 0 is exact when lossless; coarser scales average the rounded scale below
        limit_mean, limit_max = (2.0, 255.0) if not lossless else ((0.0, 0.0) if level == 0 else (1.0, float(level)))
        good = d.mean() <= limit_mean and d.max() <= limit_max
        ok &= good
        print(f"scale {level}: {d.size} voxels, mean |difference| {d.mean():.3f}, 99th percentile "
              f"{np.percentile(d, 99):.2f}, largest {d.max():.2f} ({'ok' if good else 'NOT OK'})")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--memory", default="1GiB")
    parser.add_argument("--encoding", default="jpeg")
    parser.add_argument("--resolution", default="1000,1000,20000")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--patches", type=int, default=4, help="random 2x2 tile groups checked per section")
    parser.add_argument("--skip-floor", action="store_true")
    args = parser.parse_args()
    sections = sorted(Path(args.input).glob("*.tif"))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    if not args.skip_floor:
        os.sync()
        seconds, cpu, peak, last = run([sys.executable, __file__, "--floor", str(args.workers), *map(str, sections)])
        print(f"decode alone: {seconds:.1f} s, {cpu:.1f} CPU-s, peak {peak / 2**20:.0f} MiB; {last}", flush=True)
    shutil.rmtree(args.output, ignore_errors=True)
    os.sync()
    cmd = [*STREAMCONV, "convert", args.input, args.output, "--memory", args.memory, "--encoding", args.encoding,
           "--resolution", args.resolution, "--workers", str(args.workers)]
    seconds, cpu, peak, last = run(cmd)
    within = "within" if peak <= _bytes(args.memory) else "OVER"
    print(f"streamconv: {seconds:.1f} s, {cpu:.1f} CPU-s, peak {peak / 2**20:.0f} MiB of the tree "
          f"({within} --memory {args.memory})\n  {last}", flush=True)
    ok = check(sections, Path(args.output), args.patches, args.encoding not in ("jpeg",))
    raise SystemExit(0 if ok and within == "within" else 1)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--floor":
        decode_floor(sys.argv[3:], int(sys.argv[2]))
    else:
        main()
