"""Benchmarks: streamconv against a tensorstore script, neuroglancer-scripts and the I/O floor.

    python tools/bench.py volume --shape 1024,1024,1024 --dtype uint8 --memory 512MiB
    python tools/bench.py volume --shape 512,512,512 --dtype uint32 --labels 1000 --memory 1GiB \
        --encoding compressed_segmentation
    python tools/bench.py volume --shape 512,512,512 --dtype uint32 --labels 24 --label-shape curved \
        --memory 1GiB --encoding compressed_segmentation --skip-ngscripts
    python tools/bench.py stack --count 256 --memory 4GiB
    python tools/bench.py s3 --shape 512,512,512 --dtype uint8 --memory 512MiB
    python tools/bench.py volume --memory 512MiB --sharding auto --skip-ngscripts
    python tools/bench.py volume --memory 1GiB --skip-ngscripts --dask-workers 1 2
    python tools/bench.py igneous --shape 512,512,512 --labels 200 --memory 1GiB   (tools/bench_igneous.py)

`--dask-workers N...` adds, for each N, streamconv on a Dask cluster of N `dask worker` processes
(one thread each, `--resources MEMORY=<--memory>`, started and stopped here on 127.0.0.1) next to
the local engine with `--workers N`, round by round: the ratio of per-worker throughput, CPU-seconds
(client, workers, scheduler) and each worker's peak RSS against its budget (tools/bench_dask.py);
`--cluster-only` runs only those rows.

Each contestant runs as a child process; its wall time and the peak memory of its whole process
tree (sum of RSS every 20 ms, and sum of PSS, which counts shared pages once, every 100 ms) are
sampled (`measuring.measure`).
Before each run the output is removed, the filesystem synced and the input read once, so every
contestant starts from the same page cache. The floor reads the input once and writes files of
the same count and sizes as streamconv's output, nothing else. neuroglancer-scripts (a bench
dependency: `pip install .[bench]`) runs its documented steps with `--flat --no-gzip` and the
same chunk size. With `--durable` every contestant's time includes a final sync(1): the time
until its output is on disk, which streamconv does not wait for (nor do the others).

Every round runs the floor, streamconv and the tensorstore script (tools/ts_convert.py: the same
scales, chunk sizes, encoding and JPEG quality, taken from streamconv's info; `--skip-tensorstore`
leaves it out), one after the other; after the first round the script's output is read back
scale by scale and must hold streamconv's voxels exactly (lossless encodings; jpeg: the largest
difference is printed). neuroglancer-scripts runs once, after the rounds. streamconv runs as
`python -m streamconv` with this checkout first on PYTHONPATH, so a working tree benchmarks its
own code, not the installed one; its bytecode is compiled first, as pip does at install (with
PYTHONDONTWRITEBYTECODE set, a checkout would otherwise compile every module in the main process
and the fork server at every start: 0.2-0.4 CPU-seconds a run, measured in issue 18).
With `--sharding MODE` each round also runs streamconv with `--sharding MODE` ("streamconv
sharded"), and the report gives its time against the unsharded run and the file counts.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from bench_dask import dask_bench
from make_sections import make_sections
from make_volume import LABEL_SHAPES, make_volume
from measuring import BIN, Measurement, measure, settle

ROOT = Path(__file__).resolve().parent.parent
# children (streamconv, its workers, dask workers) import this checkout's package
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
STREAMCONV = [sys.executable, "-m", "streamconv"]
TS_SCRIPT = [sys.executable, str(ROOT / "tools" / "ts_convert.py")]
MiB = 1 << 20


def tree_files(root: Path) -> list[tuple[str, int]]:
    """Chunk files of an output (relative path, size), without info and streamconv's state."""
    return [(str(p.relative_to(root)), p.stat().st_size) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "info" and ".streamconv" not in p.parts]


def floor(inputs_file: str, sizes_file: str, out: str) -> None:
    """The I/O floor: read every input once, write files of the given sizes, nothing else."""
    buf = bytearray(64 * MiB)
    for path in json.loads(Path(inputs_file).read_text()):
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
    view = memoryview(buf)
    made = set()
    for rel, size in json.loads(Path(sizes_file).read_text()):
        target = Path(out) / rel
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        with open(target, "wb") as f:
            f.write(view[:size])


def run_floor(work: Path, inputs: list[Path], reference: Path, durable: bool) -> Measurement:
    (work / "floor-inputs.json").write_text(json.dumps([str(p) for p in inputs]))
    (work / "floor-sizes.json").write_text(json.dumps(tree_files(reference)))
    out = work / "out-floor"
    settle(inputs, out)
    m = measure("I/O floor", [[sys.executable, __file__, "floor", str(work / "floor-inputs.json"),
                               str(work / "floor-sizes.json"), str(out)]], durable)
    m.output_bytes = sum(size for _, size in tree_files(out))
    return m


def bench(name: str, work: Path, inputs: list[Path], streamconv_cmd, ngscripts_cmds,
          args: argparse.Namespace, tensorstore_cmd=None) -> list[Measurement]:
    """Rounds of floor, streamconv (sharded too with --sharding) and the tensorstore script
    (`tensorstore_cmd(out, layout)`), then neuroglancer-scripts once; with --cluster-only, only
    the cluster rows (`bench_dask.py`). `streamconv_cmd(out, workers)`."""
    if args.cluster_only:
        return dask_bench(work, inputs, streamconv_cmd, args, output_size)
    ours = work / "out-streamconv"
    settle(inputs, ours)
    subprocess.run(streamconv_cmd(ours), check=True, capture_output=True)  # warm-up, and the sizes
    layout = work / "tensorstore-layout.json"  # streamconv's scales, for the tensorstore script
    shutil.copyfile(ours / "info", layout)
    ts_out = work / "out-tensorstore"
    results: list[Measurement] = []
    for round_ in range(args.repeat):
        results.append(run_floor(work, inputs, ours, args.durable))
        settle(inputs, ours)
        m = measure("streamconv", [streamconv_cmd(ours)], args.durable)
        m.output_bytes, m.files = output_size(ours)
        results.append(m)
        if args.sharding != "off":
            sharded = work / "out-streamconv-sharded"
            settle(inputs, ours, sharded)
            m = measure("streamconv sharded", [streamconv_cmd(sharded) + [
                "--sharding", args.sharding, "--shard-size", args.shard_size]], args.durable)
            m.output_bytes, m.files = output_size(sharded)
            results.append(m)
            subprocess.run(streamconv_cmd(ours), check=True, capture_output=True)  # the floor's sizes
        if tensorstore_cmd and not args.skip_tensorstore:
            settle(inputs, ts_out)
            m = measure("tensorstore script", [tensorstore_cmd(ts_out, layout)], args.durable)
            m.output_bytes, m.files = output_size(ts_out)
            results.append(m)
            if round_ == 0:
                print("tensorstore script against streamconv, largest difference per scale:",
                      compare_outputs(ours, ts_out))
    if not args.skip_ngscripts:
        theirs = work / "out-ngscripts"
        settle(inputs, theirs)
        theirs.mkdir()
        m = measure("neuroglancer-scripts", ngscripts_cmds(theirs), args.durable)
        m.output_bytes = sum(size for _, size in tree_files(theirs))
        results.append(m)
    report(name + (", each run timed until its output is on disk" if args.durable else ""), results)
    if args.dask_workers:
        results += dask_bench(work, inputs, streamconv_cmd, args, output_size)
    return results


def compare_outputs(ours: Path, theirs: Path) -> list[float]:
    """The largest absolute difference of the voxels of each scale, read back with tensorstore in
    slabs of 64 planes along z. Lossless encodings must give 0 everywhere (SystemExit otherwise)."""
    import numpy as np
    import tensorstore as ts

    info = json.loads((ours / "info").read_text())
    worst = []
    for k, scale in enumerate(info["scales"]):
        a, b = (ts.open({"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": str(root)},
                         "scale_index": k}).result() for root in (ours, theirs))
        if a.shape != b.shape:
            raise SystemExit(f"tensorstore script: scale {k} is {b.shape}, streamconv's {a.shape}")
        diff = 0.0
        for z0 in range(0, a.shape[2], 64):
            z1 = min(z0 + 64, a.shape[2])
            x, y = a[:, :, z0:z1].read().result(), b[:, :, z0:z1].read().result()
            diff = max(diff, float(np.abs(x.astype(np.float64) - y).max()))
        worst.append(diff)
        if diff and scale["encoding"] != "jpeg":
            raise SystemExit(f"tensorstore script: scale {k} ({scale['encoding']}) differs from streamconv's "
                             f"by up to {diff}")
    return worst


def output_size(root: Path) -> tuple[int, int]:
    """Bytes and number of files of an output, its info included."""
    files = tree_files(root)
    return sum(size for _, size in files), len(files) + 1


def best(results: list[Measurement], name: str) -> Measurement | None:
    found = [m for m in results if m.name == name]
    return min(found, key=lambda m: m.seconds) if found else None


def report(name: str, results: list[Measurement]) -> None:
    print(f"\n{name} on {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
          f"Python {platform.python_version()}")
    print(f"{'contestant':24} {'seconds':>8} {'CPU-s':>7} {'peak RSS sum':>13} {'peak PSS sum':>13} {'output':>10} "
          f"{'files':>8}")
    for m in results:
        print(f"{m.name:24} {m.seconds:8.2f} {m.cpu_seconds:7.2f} {m.peak_rss / MiB:9.0f} MiB "
              f"{m.peak_pss / MiB:9.0f} MiB "
              f"{m.output_bytes / MiB:6.0f} MiB {m.files or '':>8}"
              + (" workers: " + ", ".join(f"{w / MiB:.0f} MiB" for w in m.worker_rss) if m.worker_rss else ""))
    sharded = best(results, "streamconv sharded")
    if sharded:
        pairs = [(a.seconds / b.seconds) for a, b in zip(
            [m for m in results if m.name == "streamconv sharded"], [m for m in results if m.name == "streamconv"])]
        print("streamconv sharded / unsharded per round:", ", ".join(f"{r:.2f}x" for r in pairs),
              f"(median {statistics.median(pairs):.2f}x)")
    ours, low, theirs = best(results, "streamconv"), best(results, "I/O floor"), best(results, "neuroglancer-scripts")
    script = [m for m in results if m.name == "tensorstore script"]
    if ours and script:
        pairs = [(b.seconds / a.seconds) for a, b in zip([m for m in results if m.name == "streamconv"], script)]
        print("tensorstore script / streamconv per round:", ", ".join(f"{r:.2f}x" for r in pairs),
              f"(median {statistics.median(pairs):.2f}x)")
        cpu = [(b.cpu_seconds / a.cpu_seconds) for a, b in zip([m for m in results if m.name == "streamconv"], script)
               if a.cpu_seconds]
        if cpu:
            print("  in CPU-seconds:", ", ".join(f"{r:.2f}x" for r in cpu), f"(median {statistics.median(cpu):.2f}x)")
    if ours and low:
        print(f"streamconv / I/O floor: {ours.seconds / low.seconds:.2f}x (best of each)")
        pairs = [(a.seconds / b.seconds) for a, b in zip(
            [m for m in results if m.name == "streamconv"], [m for m in results if m.name == "I/O floor"])]
        print("  per round (floor run just before):", ", ".join(f"{r:.2f}x" for r in pairs),
              f"(median {statistics.median(pairs):.2f}x)")
    if ours and theirs:
        print(f"neuroglancer-scripts / streamconv: {theirs.seconds / ours.seconds:.1f}x")


def volume_bench(args) -> list[Measurement]:
    shape = tuple(int(n) for n in args.shape.split(","))
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    tag = f"{'x'.join(map(str, shape))}-{args.dtype}" + (f"-labels{args.labels}" if args.labels else "")
    tag += f"-{args.label_shape}" if args.labels and args.label_shape != "blocky" else ""
    name = f"volume {tag}, {args.encoding}"
    vol = make_volume(work / f"vol-{tag}.nii", shape, args.dtype, args.labels, label_shape=args.label_shape)
    segmentation = ["--type", "segmentation"] if args.labels else []

    def ours(out: Path, workers: int = args.workers) -> list[str]:
        return [*STREAMCONV, "convert", str(vol), str(out), "--memory", args.memory,
                "--workers", str(workers), "--chunk-size", "64", "--encoding", args.encoding, "-q",
                *segmentation, *args.extra]

    def theirs(out: Path) -> list[list[str]]:
        method = ["--downscaling-method", "majority"] if args.labels else []
        return [[str(BIN / "volume-to-precomputed"), "--generate-info", str(vol), str(out)],
                [str(BIN / "generate-scales-info"), str(out / "info_fullres.json"), str(out),
                 "--target-chunk-size", "64", "--encoding", args.encoding, *segmentation],
                [str(BIN / "volume-to-precomputed"), "--flat", "--no-gzip", str(vol), str(out)],
                [str(BIN / "compute-scales"), "--flat", "--no-gzip", *method, str(out)]]

    return bench(name, work, [vol], ours, theirs, args, lambda out, layout: TS_SCRIPT + [
        str(vol), str(out), "--info", str(layout), *jpeg_quality(args.extra)])


def jpeg_quality(extra: list[str]) -> list[str]:
    """The tensorstore script's --jpeg-quality: streamconv's, if --extra sets it."""
    return ["--jpeg-quality", extra[extra.index("--jpeg-quality") + 1]] if "--jpeg-quality" in extra else []


def stack_bench(args) -> list[Measurement]:
    work = Path(args.workdir)
    sections_dir = work / f"sections-{args.width}x{args.height}"
    paths = [Path(p) for p in make_sections(sections_dir, args.count, args.width, args.height)]
    stack = work / f"stack-{args.count}"
    if not stack.exists():  # the first `count` sections, as a directory of their own
        stack.mkdir(parents=True)
        for p in paths:
            os.link(p, stack / p.name)
    resolution = "21166.67,20000,21166.67"

    def ours(out: Path, workers: int = args.workers) -> list[str]:
        return [*STREAMCONV, "convert", str(stack), str(out), "--resolution", resolution,
                "--input-orientation", "RIA", "--memory", args.memory, "--workers", str(workers),
                "-q", *args.extra]

    def theirs(out: Path) -> list[list[str]]:
        info = {"type": "image", "data_type": "uint8", "num_channels": 1,
                "scales": [{"size": [args.width, args.count, args.height], "voxel_offset": [0, 0, 0],
                            "resolution": [float(r) for r in resolution.split(",")]}]}
        (out / "info_fullres.json").write_text(json.dumps(info))
        return [[str(BIN / "generate-scales-info"), str(out / "info_fullres.json"), str(out),
                 "--target-chunk-size", "64"],
                [str(BIN / "slices-to-precomputed"), "--input-orientation", "RIA", "--flat",
                 "--no-gzip", str(stack), str(out)],
                [str(BIN / "compute-scales"), "--flat", "--no-gzip", str(out)]]

    results = bench(f"stack of {args.count} sections {args.width}x{args.height}", work,
                    sorted(stack.iterdir()), ours, theirs, args,
                    lambda out, layout: TS_SCRIPT + [str(stack), str(out), "--info", str(layout), "--orientation",
                                                     "RIA", *jpeg_quality(args.extra)])
    ours_best = best(results, "streamconv")
    if ours_best:
        full = ours_best.seconds / args.count * 7404
        print(f"extrapolated to BigBrain's 7404 sections: {full / 3600:.1f} h "
              f"({ours_best.seconds / args.count:.2f} s per section)")
    if args.sharding == "auto":
        print(bigbrain_sharded(args.width, args.height, args.memory, args.shard_size, args.workers))
    return results


def s3_bench(args) -> list[Measurement]:
    """The same conversion to local disk and into a bucket of a moto S3 server on loopback,
    through a proxy that counts the requests (both run in this process, outside the measured
    process tree, on the same cores)."""
    from loopback_s3 import S3, Proxy

    shape = tuple(int(n) for n in args.shape.split(","))
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    tag = f"{'x'.join(map(str, shape))}-{args.dtype}"
    vol = make_volume(work / f"vol-{tag}.nii", shape, args.dtype, None)
    server = S3()
    results: list[Measurement] = []
    counts: list[str] = []
    try:
        for _ in range(args.repeat):
            def ours(out: str) -> list[str]:
                return [*STREAMCONV, "convert", str(vol), out, "--memory", args.memory,
                        "--workers", str(args.workers), "-q", *args.extra]

            local = work / "out-local"
            settle([vol], local)
            m = measure("streamconv, local disk", [ours(str(local))])
            m.output_bytes = sum(size for _, size in tree_files(local))
            results.append(m)
            bucket = server.bucket()
            with Proxy(server.endpoint) as proxy:
                os.environ.update({**server.env, "AWS_ENDPOINT_URL": proxy.url})
                results.append(measure("streamconv, moto S3", [ours(f"s3://{bucket}/out")]))
            results[-1].output_bytes = m.output_bytes
            counts.append(", ".join(f"{n} {k}" for k, n in sorted(proxy.requests.items())))
    finally:
        server.server.stop()
    report(f"volume {tag} to local disk and to S3 (moto on loopback)", results)
    for k, line in enumerate(counts):
        print(f"requests to S3, round {k + 1}: {line}")
    return results


def bigbrain_sharded(width: int, height: int, memory: str, shard_size: str, workers: int) -> str:
    """The full BigBrain stack (7404 sections, RIA, jpeg, 64^3 chunks) sharded `auto`: shard
    files per scale and the spool's bound, from the same planning code a run uses."""
    import numpy as np

    from streamconv.encodings import make_codec
    from streamconv.engine.budget import plan_slabs
    from streamconv.format.pyramid import plan_pyramid
    from streamconv.format.sharding_choice import AutoSharding, apply_sharding
    from streamconv.layout.spool import ShardCompletion, ShardedLevel
    from streamconv.stores.local import LocalStore
    from streamconv.units import parse_size

    size, resolution = (width, 7404, height), (21166.67, 20000.0, 21166.67)
    scales, info = plan_pyramid(size, resolution, np.dtype("uint8"), 1, "image", 64, None, make_codec("jpeg"))
    info = apply_sharding(info, AutoSharding(parse_size(shard_size)), gzip=False)
    plan = plan_slabs(scales, 1, np.dtype("uint8"), workers, parse_size(memory), True, 1)
    levels = [ShardedLevel(k, s, si.sharding, plan.slab_planes[k], 1)
              for k, (s, si) in enumerate(zip(scales, info.scales)) if si.sharding is not None]
    unsharded = sum(s.num_chunks for s in scales)
    return (f"BigBrain {size} sharded auto ({shard_size} shards), unsharded {unsharded} chunk files:\n"
            + ShardCompletion(LocalStore("/nonexistent"), "spool", levels, 1).describe())


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "floor":
        floor(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("volume", "stack", "s3"):
        p = sub.add_parser(name)
        p.add_argument("--workdir", default="/tmp/streamconv-bench")
        p.add_argument("--memory", default="512MiB")
        p.add_argument("--workers", type=int, default=os.cpu_count())
        p.add_argument("--repeat", type=int, default=3)
        p.add_argument("--skip-ngscripts", action="store_true")
        p.add_argument("--skip-tensorstore", action="store_true", help="leave out the tensorstore script")
        p.add_argument("--durable", action="store_true",
                       help="time until the output is on disk: a sync(1) ends every contestant")
        p.add_argument("--json", help="save the measurements here")
        p.add_argument("--sharding", default="off",
                       help="also run streamconv with --sharding MODE (auto, or P,M,S bits) each round")
        p.add_argument("--shard-size", default="2GiB")
        p.add_argument("--dask-workers", type=int, nargs="*", default=[],
                       help="also run on Dask clusters of these many workers, each against --workers N "
                            "(tools/bench_dask.py)")
        p.add_argument("--cluster-only", action="store_true",
                       help="only the --dask-workers rows and their local rows")
        p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more streamconv options")
        if name in ("volume", "s3"):
            p.add_argument("--shape", default="1024,1024,1024")
            p.add_argument("--dtype", default="uint8")
            p.add_argument("--labels", type=int)
            p.add_argument("--label-shape", choices=LABEL_SHAPES, default="blocky",
                           help="blocky: 16-voxel cells; curved: regions with smooth boundaries, as in atlases")
            p.add_argument("--encoding", default="raw", help="for both streamconv and neuroglancer-scripts")
        else:
            p.add_argument("--count", type=int, default=256)
            p.add_argument("--width", type=int, default=6572)
            p.add_argument("--height", type=int, default=5711)
    p = sub.add_parser("igneous", help="igneous-pipeline on the jobs both do (tools/bench_igneous.py)")
    p.add_argument("--workdir", default="/tmp/streamconv-bench")
    p.add_argument("--memory", default="1GiB")
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--json", help="save the measurements here")
    p.add_argument("--shape", default="512,512,512", help="the uint8 image volume")
    p.add_argument("--label-shape-size", default="256,256,256", help="the uint32 label volume (curved regions)")
    p.add_argument("--labels", type=int, default=200)
    p.add_argument("--rows", nargs="*", default=["downsample", "xfer", "meshes"])
    p.add_argument("--repeat", type=int, default=1, help="rounds, interleaved (every row, then again)")
    p.add_argument("--igneous-memory", type=float, default=3.5e9, help="igneous' task memory target (its default)")
    args = parser.parse_args()
    compileall.compile_dir(ROOT / "streamconv", quiet=1)  # as installed: see the docstring
    from bench_igneous import igneous_bench

    results = {"volume": volume_bench, "stack": stack_bench, "s3": s3_bench,
               "igneous": igneous_bench}[args.what](args)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(m) for m in results], indent=1))


if __name__ == "__main__":
    main()
