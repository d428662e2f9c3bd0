"""Synthetic BigBrain-like sections: 8-bit PNGs with smooth tissue on a white background.

    python tools/make_sections.py OUTDIR --count 256 [--width 6572 --height 5711] [--start 0]

Each section has an elliptical slab of tissue whose outline and folds drift slowly from section
to section, intensity gradients, cortex-like bands and mild noise (so PNG compresses about as
real histology does), and background 255. Sections are written in parallel, one per process.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import imagecodecs
import numpy as np


def tissue(x: np.ndarray, y: np.ndarray, t: float) -> np.ndarray:
    """The smooth picture, uint8, at points (x, y) of [-1, 1]^2 (a row and a column that
    broadcast) of the section at `t` in [0, 1): a slab of tissue with folds, background 255.
    tools/make_bigtiff_stack.py draws its tiles with it too."""
    rx, ry = 0.80 + 0.1 * np.sin(3 * t), 0.75 + 0.1 * np.cos(2 * t)
    r = np.sqrt((x / rx) ** 2 + (y / ry) ** 2)
    angle = np.arctan2(y, x)
    outline = 1 + 0.06 * np.sin(7 * angle + 5 * t) + 0.03 * np.sin(17 * angle - 3 * t)
    folds = np.sin(40 * r + 6 * np.sin(5 * angle + 2 * t))
    grey = 150 - 40 * r + 25 * folds + 15 * np.cos(3 * x + 2 * t) * np.sin(4 * y)
    return np.where(r < outline, np.clip(grey, 0, 250), 255).astype(np.uint8)


def make_section(index: int, width: int, height: int, count: int, seed: int = 0) -> np.ndarray:
    """One section, (height, width) uint8; neighbouring indices give similar sections.

    The smooth part is computed at a quarter of the resolution and enlarged; the noise is a
    fixed tile shifted per section: fast enough to write hundreds of full-size sections.
    """
    h4, w4 = -(-height // 4), -(-width // 4)
    y = np.linspace(-1, 1, h4, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, w4, dtype=np.float32)[None, :]
    small = tissue(x, y, index / max(count, 1))
    section = small.repeat(4, 0).repeat(4, 1)[:height, :width]
    noise = np.random.default_rng(seed).integers(-4, 5, (512, 512), dtype=np.int16)
    tile = np.roll(noise, (index * 37, index * 91), axis=(0, 1))
    reps = (-(-height // 512), -(-width // 512))
    noisy = section + np.tile(tile, reps)[:height, :width]
    return np.where(section == 255, 255, np.clip(noisy, 0, 254)).astype(np.uint8)


def _write(args: tuple[Path, int, int, int, int]) -> str:
    outdir, index, width, height, count = args
    path = outdir / f"section_{index:04d}.png"
    imagecodecs.imwrite(path, make_section(index, width, height, count), level=1)
    return str(path)


def make_sections(outdir: str | os.PathLike, count: int, width: int = 6572, height: int = 5711,
                  start: int = 0, workers: int | None = None) -> list[str]:
    """Write sections start..start+count-1 that are not there yet; return all their paths."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    todo = [(out, i, width, height, count) for i in range(start, start + count)
            if not (out / f"section_{i:04d}.png").exists()]
    with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        list(pool.map(_write, todo))
    return [str(out / f"section_{i:04d}.png") for i in range(start, start + count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir")
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--width", type=int, default=6572)
    parser.add_argument("--height", type=int, default=5711)
    parser.add_argument("--start", type=int, default=0)
    args = parser.parse_args()
    paths = make_sections(args.outdir, args.count, args.width, args.height, args.start)
    print(f"{len(paths)} sections in {args.outdir}")


if __name__ == "__main__":
    main()
