"""Synthetic annotation tables for tests and benchmarks: cell detections and the like, written in
pieces (CSV or TSV), so ten million rows never sit in memory.

    python tools/make_annotations.py OUT.csv --rows 10000000 [--type point] [--size 512,512,256]

Columns: the geometry of the type (x,y,z; x1..z2; x,y,z,rx,ry,rz), `score` (float), `count`
(small whole numbers), `cell_type` (text of three values: an enum), `color` (#rrggbb) and
`segment` (ids 0-49, 0 meaning none; every tenth row two ids). Positions cluster around a few
centres, as detections in tissue do. `--plain` keeps only the geometry, `score` and `count`
(the benchmark's "two properties").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

PIECE = 200_000
TYPES = ("point", "line", "box", "ellipsoid")
CELL_TYPES = np.array(["neuron", "glia", "unknown"])


def _columns(kind: str) -> list[str]:
    if kind == "point":
        return ["x", "y", "z"]
    if kind == "ellipsoid":
        return ["x", "y", "z", "rx", "ry", "rz"]
    return ["x1", "y1", "z1", "x2", "y2", "z2"]


def table_piece(kind: str, rows: int, size: tuple[int, int, int], rng: np.random.Generator,
                plain: bool = False) -> dict[str, np.ndarray]:
    """One piece of rows as columns of numbers and text."""
    centres = np.array([[0.3, 0.4, 0.5], [0.7, 0.6, 0.4], [0.5, 0.5, 0.5]]) * size
    which = rng.integers(0, 4, rows)
    spread = np.asarray(size) * 0.08
    positions = np.where((which < 3)[:, None], centres[np.minimum(which, 2)] + rng.normal(0, 1, (rows, 3)) * spread,
                         rng.uniform(0, 1, (rows, 3)) * size)
    positions = np.clip(positions, 0, np.asarray(size) - 1)
    out: dict[str, np.ndarray] = {}
    names = _columns(kind)
    for d in range(3):
        out[names[d]] = np.round(positions[:, d], 2)
    if kind in ("line", "box"):
        other = np.clip(positions + rng.normal(0, 6, (rows, 3)), 0, np.asarray(size) - 1)
        for d in range(3):
            out[names[3 + d]] = np.round(other[:, d], 2)
    elif kind == "ellipsoid":
        for d in range(3):
            out[names[3 + d]] = np.round(rng.uniform(0.5, 4, rows), 2)
    out["score"] = np.round(rng.normal(0, 1, rows), 4)
    out["count"] = rng.integers(0, 300, rows)
    if plain:
        return out
    out["cell_type"] = CELL_TYPES[rng.integers(0, 3, rows)]
    colours = rng.integers(0, 256, (rows, 3))
    out["color"] = np.array([f"#{r:02x}{g:02x}{b:02x}" for r, g, b in colours.tolist()])
    first = rng.integers(0, 50, rows)
    second = rng.integers(1, 50, rows)
    out["segment"] = np.array([f"{a};{b}" if i % 10 == 0 and a else str(a)
                               for i, (a, b) in enumerate(zip(first.tolist(), second.tolist()))])
    return out


def write_table(path: Path, rows: int, kind: str = "point", size: tuple[int, int, int] = (512, 512, 256),
                seed: int = 0, plain: bool = False) -> None:
    rng = np.random.default_rng(seed)
    sep = "\t" if path.suffix == ".tsv" else ","
    with open(path, "w") as out:
        done = 0
        while done < rows:
            piece = table_piece(kind, min(PIECE, rows - done), size, rng, plain)
            if done == 0:
                out.write(sep.join(piece) + "\n")
            text = [np.asarray(v).astype(str) for v in piece.values()]
            out.write("\n".join(sep.join(row) for row in zip(*text)) + "\n")
            done += len(text[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--type", choices=TYPES, default="point")
    parser.add_argument("--size", default="512,512,256")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plain", action="store_true")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split(","))
    write_table(args.output, args.rows, args.type, size, args.seed, args.plain)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
