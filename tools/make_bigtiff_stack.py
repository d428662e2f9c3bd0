"""Synthetic big sections: tiled BigTIFF files of uint8, written tile by tile in bounded memory.

    python tools/make_bigtiff_stack.py OUTDIR [--sections 48 --width 32768 --height 32768]
        [--tile 512] [--compression zlib|jpeg|zstd|none] [--workers N]

The stack of issue 25 (48 sections of 32768 x 32768, 1 GiB each decoded) is the default; tests
use small ones (`--sections 4 --width 1300 --height 1000`). Measured on a loaded machine: a
section of 16384 x 16384 took 22 s in one process with 44 MB resident and 84 MB of zlib tiles,
so the full stack is about 16 GB with zlib (about 7 GB with jpeg) and some 70 CPU-minutes.

The content is BigBrain-like (tools/make_sections.py's look: an elliptical slab of tissue with
folds, drifting from section to section, mild noise, background 255), computed per tile from
absolute coordinates at a quarter of the resolution and enlarged, so a section is never held
whole: memory is a few tiles per process, whatever the size. Sections are written in parallel,
one per process; one that exists already is kept.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import tifffile
from make_sections import tissue

NOISE = 512  # side of the fixed noise pattern, shifted per section


def make_tile(index: int, count: int, top: int, left: int, tile: int, width: int, height: int,
              noise: np.ndarray) -> np.ndarray:
    """The (tile, tile) pixels of section `index` whose corner is (top, left): the same values
    whatever the tile size, since they follow from absolute coordinates only."""
    q = -(-tile // 4)
    y = (-1 + 2 * (top // 4 + np.arange(q, dtype=np.float32)) / max(height / 4 - 1, 1))[:, None]
    x = (-1 + 2 * (left // 4 + np.arange(q, dtype=np.float32)) / max(width / 4 - 1, 1))[None, :]
    small = tissue(x, y, index / max(count, 1))
    smooth = small.repeat(4, 0).repeat(4, 1)[:tile, :tile]
    rows = (top + np.arange(tile) - index * 37) % NOISE
    columns = (left + np.arange(tile) - index * 91) % NOISE
    noisy = smooth + noise[np.ix_(rows, columns)]
    return np.where(smooth == 255, 255, np.clip(noisy, 0, 254)).astype(np.uint8)


def tiles(index: int, count: int, width: int, height: int, tile: int) -> Iterator[np.ndarray]:
    """The tiles of a section in TIFF order (rows of tiles, top to bottom), each full size."""
    noise = np.random.default_rng(0).integers(-4, 5, (NOISE, NOISE), dtype=np.int16)
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            yield make_tile(index, count, top, left, tile, width, height, noise)


def write_section(path: Path, index: int, count: int, width: int, height: int, tile: int,
                  compression: str | None) -> str:
    """One tiled BigTIFF section, written through a temporary name so that a killed run leaves
    no partial file under the final one."""
    part = path.with_suffix(".part")
    tifffile.imwrite(part, tiles(index, count, width, height, tile), shape=(height, width), dtype=np.uint8,
                     tile=(tile, tile), compression=compression, bigtiff=True, photometric="minisblack",
                     metadata=None)
    part.replace(path)
    return str(path)


def make_stack(outdir: str | os.PathLike, sections: int = 48, width: int = 32768, height: int = 32768,
               tile: int = 512, compression: str | None = "zlib", workers: int | None = None) -> list[str]:
    """Write the sections not there yet; return all their paths."""
    if tile % 16:
        raise SystemExit("--tile must be a multiple of 16 (TIFF tiles are)")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"section_{k:04d}.tif" for k in range(sections)]
    todo = [(p, k) for k, p in enumerate(paths) if not p.exists()]
    with ProcessPoolExecutor(max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))) as pool:
        futures = [pool.submit(write_section, p, k, sections, width, height, tile, compression) for p, k in todo]
        for future in futures:
            future.result()
    return [str(p) for p in paths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--sections", type=int, default=48)
    parser.add_argument("--width", type=int, default=32768)
    parser.add_argument("--height", type=int, default=32768)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--compression", default="zlib", choices=["zlib", "jpeg", "zstd", "none"])
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    make_stack(args.outdir, args.sections, args.width, args.height, args.tile,
               None if args.compression == "none" else args.compression, args.workers)


if __name__ == "__main__":
    main()
