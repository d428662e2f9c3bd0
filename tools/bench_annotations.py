"""Annotations benchmark (issue 27): `streamconv annotations` on 10 million points with two
properties under `--memory 512MiB`, next to the `neuroglancer` package's writer
(`neuroglancer.write_annotations.AnnotationWriter`: in memory, one spatial cell, one file per
annotation) on 1 and 10 million points.

    python tools/bench_annotations.py [--rows 10000000] [--ng-rows 1000000,10000000] [--ng-timeout 1800]

Time and peak memory (RSS and PSS summed over the process tree) as tools/bench.py measures
them (tools/measuring.py), files and bytes written. The neuroglancer writer gets the same rows
(read from the same CSV by the csv module, one `add_point` each); a run past `--ng-timeout`
seconds is stopped and reported with what it had written.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from make_annotations import write_table
from measuring import BIN, Measurement, measure

MiB = 1 << 20


def files_of(root: Path) -> tuple[int, int]:
    count = size = 0
    for dirpath, _, names in os.walk(root):
        if ".streamconv" in dirpath:
            continue
        for name in names:
            count += 1
            size += os.path.getsize(os.path.join(dirpath, name))
    return count, size


def ng_write(table: str, out: str, rows: int) -> None:
    """The contestant: neuroglancer's own writer given the table's first `rows` points."""
    import neuroglancer
    from neuroglancer.write_annotations import AnnotationWriter

    space = neuroglancer.CoordinateSpace(names=["x", "y", "z"], units="nm", scales=[1000, 1000, 1000])
    writer = AnnotationWriter(space, "point", properties=[
        neuroglancer.AnnotationPropertySpec(id="score", type="float32"),
        neuroglancer.AnnotationPropertySpec(id="count", type="uint16")])
    with open(table, newline="") as f:
        reader = csv.DictReader(f)
        for i, row in zip(range(rows), reader):
            writer.add_point([float(row["x"]) + 0.5, float(row["y"]) + 0.5, float(row["z"]) + 0.5], id=i,
                             score=float(row["score"]), count=int(row["count"]))
    writer.write(out)


def run(name: str, command: list[str], out: Path) -> Measurement | str:
    try:
        result = measure(name, [command])
    except SystemExit as exc:
        count, size = files_of(out)
        why = str(exc).splitlines()[-1][:200]
        return f"{name}: did not finish ({why}); {count} files, {size / MiB:.0f} MiB written"
    result.files, result.output_bytes = files_of(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/streamconv-bench-annotations")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--ng-rows", default="1000000,10000000")
    parser.add_argument("--ng-timeout", type=int, default=1800)
    parser.add_argument("--memory", default="512MiB")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--ng-write", nargs=3, metavar=("TABLE", "OUT", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ng_write:
        ng_write(args.ng_write[0], args.ng_write[1], int(args.ng_write[2]))
        return
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    table = work / f"points-{args.rows}.csv"
    if not table.exists():
        write_table(table, args.rows, "point", plain=True)
    results: list[Measurement | str] = []
    out = work / "streamconv"
    os.system(f"rm -rf {out}")
    results.append(run(f"streamconv {args.rows:,}", [
        str(BIN / "streamconv"), "annotations", str(table), str(out), "--resolution", "1000", "--memory",
        args.memory, "--workers", str(args.workers), "-q"], out))
    for rows in (int(v) for v in args.ng_rows.split(",") if v):
        out = work / f"neuroglancer-{rows}"
        os.system(f"rm -rf {out}")
        results.append(run(f"neuroglancer {rows:,}", [
            "timeout", "-s", "KILL", str(args.ng_timeout), sys.executable, __file__, "--ng-write", str(table), str(out),
            str(rows)], out))
    print(f"\nannotations: {args.rows} points, two properties, --memory {args.memory}, "
          f"{args.workers} workers, {os.cpu_count()} cores")
    print(f"{'contestant':22} {'seconds':>8} {'peak RSS sum':>13} {'peak PSS sum':>13} {'output':>9} {'files':>9}")
    for m in results:
        if isinstance(m, str):
            print(m)
        else:
            print(f"{m.name:22} {m.seconds:8.1f} {m.peak_rss / MiB:9.0f} MiB {m.peak_pss / MiB:9.0f} MiB "
                  f"{m.output_bytes / MiB:5.0f} MiB {m.files:9}")


if __name__ == "__main__":
    main()
