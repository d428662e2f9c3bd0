"""Meshing benchmark: streamconv convert with and without --meshes, and igneous-style meshing
(tools/mesh_whole.py: zmesh on the whole volume in one process), on the labels benchmark volume.

    python tools/bench_meshes.py --shape 512,512,512 --labels 1000 --memory 1GiB

Time and peak memory of each contestant's process tree are measured as in tools/bench.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench import report, tree_files
from make_volume import make_volume
from measuring import BIN, Measurement, measure, settle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/streamconv-bench")
    parser.add_argument("--shape", default="512,512,512")
    parser.add_argument("--labels", type=int, default=1000)
    parser.add_argument("--memory", default="1GiB")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--mesh-format", default="multilod")
    args = parser.parse_args()
    x, y, z = (int(n) for n in args.shape.split(","))
    shape = (x, y, z)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    tag = f"{'x'.join(map(str, shape))}-uint32-labels{args.labels}"
    volume = make_volume(work / f"vol-{tag}.nii", shape, "uint32", args.labels)
    out = work / "out-meshes"

    def convert(*more: str) -> list[str]:
        return [str(BIN / "streamconv"), "convert", str(volume), str(out), "--type", "segmentation",
                "--encoding", "compressed_segmentation", "--memory", args.memory,
                "--workers", str(args.workers), "-q", *more]

    results: list[Measurement] = []
    for name, command in [("streamconv", convert()),
                          ("streamconv --meshes", convert("--meshes", "--mesh-format", args.mesh_format)),
                          ("zmesh whole volume", [sys.executable, str(Path(__file__).with_name("mesh_whole.py")),
                                                  str(volume), str(out / "whole")])]:
        settle([volume], out)
        result = measure(name, [command])
        result.output_bytes = sum(size for _, size in tree_files(out))
        results.append(result)
    report(f"meshes of {tag}", results)


if __name__ == "__main__":
    main()
