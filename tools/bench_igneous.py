"""igneous as a contestant (`python tools/bench.py igneous ...`): the jobs both tools do, each run
the way igneous' README says (a local file queue, then `igneous -p WORKERS execute -x`), and
streamconv's step command for the same job on the same existing layer.

Rows (each contestant times its whole job; igneous' task creation, which also writes the new
scales or mesh directories into the info, counts in its time as our info steps count in ours):

* downsample: an existing full-resolution layer (64^3 raw chunks) into a pyramid of 2x2x2
  scales. streamconv: `generate-scales-info` + `compute-scales`; igneous: `image downsample
  --volumetric --num-mips N --compress none` (N: as many scales as ours). Images (average) and
  labels (mode).
* xfer: an existing raw pyramid re-encoded to JPEG (quality 90 for both). streamconv:
  `convert-chunks --encoding jpeg`; igneous: `image xfer --encoding jpeg --encoding-level 90
  --compress none`, which transfers scale 0 and downsamples it into the same scales.
* meshes: multi-resolution Draco meshes of every label of an existing segmentation, with the
  same number of levels of detail, unsharded and sharded. streamconv: `generate-meshes
  [--sharding auto]`; igneous: `mesh forge` + `mesh merge --nlod` (sharded: `mesh forge
  --sharded` + `mesh merge-sharded --nlod`).

Outputs are compared: voxels of every scale (read with tensorstore; jpeg: the largest
difference), meshes: the same labels, and each label's vertices at the finest level of detail
spanning the same box within one voxel.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from make_volume import make_volume
from measuring import BIN, Measurement, measure

STREAMCONV = [sys.executable, "-m", "streamconv"]
IGNEOUS = str(BIN / "igneous")


def _layer(work: Path, vol: Path, name: str, *options: str) -> Path:
    """A full-resolution layer written by streamconv (the existing layer both tools start from)."""
    out = work / name
    if not (out / "info").exists():
        subprocess.run([*STREAMCONV, "convert", str(vol), str(out), "--max-scales", "1", "--chunk-size", "64",
                        "-q", *options], check=True)
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".streamconv"))
    return dst


def _igneous(queue: Path, workers: int, *create: str) -> list[list[str]]:
    """Fill a file queue with the tasks of `create`, then run them with `workers` processes."""
    shutil.rmtree(queue, ignore_errors=True)
    return [[IGNEOUS, *create, "--queue", f"fq://{queue}"],
            [IGNEOUS, "-p", str(workers), "execute", "-x", f"fq://{queue}"]]


def compare_volumes(ours: Path, theirs: Path) -> list[str]:
    """Per scale of ours: the largest voxel difference and the share of voxels that differ
    (tensorstore reads both)."""
    import tensorstore as ts

    info = json.loads((ours / "info").read_text())
    worst = []
    for k in range(len(info["scales"])):
        a, b = (ts.open({"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": str(root)},
                         "scale_index": k}).result().read().result() for root in (ours, theirs))
        if a.shape != b.shape:
            worst.append(f"shapes {a.shape} and {b.shape}")
            continue
        worst.append(f"{float(np.abs(a.astype(np.float64) - b).max()):g} ({np.mean(a != b):.2%} differ)")
    return worst


def _mesh_dir(layer: Path) -> Path:
    return layer / json.loads((layer / "info").read_text())["mesh"]


def _labels(mesh_dir: Path, volume_labels: list[int]) -> list[int]:
    """The labels that have a mesh (read through the test suite's independent reader)."""
    from mesh_reader import read_multilod

    found = []
    for label in volume_labels:
        try:
            read_multilod(mesh_dir, label)
        except (FileNotFoundError, KeyError, ValueError):
            continue
        found.append(label)
    return found


def compare_meshes(ours: Path, theirs: Path, labels: list[int], voxel: float) -> str:
    from mesh_reader import read_multilod

    a, b = _mesh_dir(ours), _mesh_dir(theirs)
    have_a, have_b = _labels(a, labels), _labels(b, labels)
    worst, lods = 0.0, set()
    for label in sorted(set(have_a) & set(have_b))[:40]:
        ma, mb = read_multilod(a, label), read_multilod(b, label)
        lods.add((len(ma), len(mb)))
        va, vb = ma[0][0], mb[0][0]
        worst = max(worst, float(np.abs(va.min(0) - vb.min(0)).max()), float(np.abs(va.max(0) - vb.max(0)).max()))
    return (f"labels: ours {len(have_a)}, igneous {len(have_b)}, same: {have_a == have_b}; levels of detail "
            f"(ours, igneous): {sorted(lods)}; finest level's bounding boxes differ by up to "
            f"{worst / voxel:.2f} voxel (40 labels)")


def igneous_bench(args) -> list[Measurement]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # mesh_reader
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    memory = ["--memory", args.memory, "--workers", str(args.workers), "-q"]
    shape = tuple(int(n) for n in args.shape.split(","))
    image = make_volume(work / f"vol-{args.shape.replace(',', 'x')}-uint8.nii", shape, "uint8")  # type: ignore[arg-type]
    labels_vol = make_volume(work / f"vol-{args.label_shape_size.replace(',', 'x')}-uint32-labels{args.labels}.nii",
                             tuple(int(n) for n in args.label_shape_size.split(",")),  # type: ignore[arg-type]
                             "uint32", args.labels, label_shape="curved")
    results: list[Measurement] = []
    notes: list[str] = []
    rows = set(args.rows)

    for round_ in range(args.repeat):  # rounds interleaved: every row of a round before the next round
        first = round_ == 0
        for kind, vol, options in [("image", image, []),
                                   ("labels", labels_vol, ["--type", "segmentation"])]:
            if "downsample" not in rows:
                continue
            full = _layer(work, vol, f"full-{kind}", *options)
            ours, theirs = _copy(full, work / f"ds-ours-{kind}"), _copy(full, work / f"ds-igneous-{kind}")
            method = ["--downscaling-method", "majority"] if kind == "labels" else []
            m = measure(f"downsample {kind}: streamconv", [
                [*STREAMCONV, "generate-scales-info", str(ours / "info"), str(ours), "--target-chunk-size", "64",
                 "--overwrite"],
                [*STREAMCONV, "compute-scales", str(ours), *method, *memory]])
            results.append(m)
            mips = len(json.loads((ours / "info").read_text())["scales"]) - 1
            results.append(measure(f"downsample {kind}: igneous", _igneous(
                work / "queue", args.workers, "image", "downsample", f"file://{theirs}", "--mip", "0",
                "--num-mips", str(mips), "--volumetric", "--compress", "none")))
            if first:
                notes.append(f"downsample {kind}: largest voxel difference per scale (share of voxels that "
                             f"differ) {compare_volumes(ours, theirs)}")

        if "xfer" in rows:
            src = work / "pyramid-image"
            if not (src / "info").exists():
                subprocess.run([*STREAMCONV, "convert", str(image), str(src), "--chunk-size", "64", *memory],
                               check=True)
            ours, theirs = work / "xfer-ours", work / "xfer-igneous"
            shutil.rmtree(ours, ignore_errors=True)
            shutil.rmtree(theirs, ignore_errors=True)
            results.append(measure("xfer to jpeg: streamconv", [
                [*STREAMCONV, "convert-chunks", str(src), str(ours), "--encoding", "jpeg", "--jpeg-quality", "90",
                 *memory]]))
            results.append(measure("xfer to jpeg: igneous", _igneous(
                work / "queue", args.workers, "image", "xfer", f"file://{src}", f"file://{theirs}", "--encoding",
                "jpeg", "--encoding-level", "90", "--compress", "none", "--chunk-size", "64,64,64", "--volumetric",
                "--memory", str(int(args.igneous_memory)))))
            if first:
                notes.append(f"xfer to jpeg: largest voxel difference per scale (share of voxels that differ) "
                             f"{compare_volumes(ours, theirs)}")

        if "meshes" in rows:
            full = _layer(work, labels_vol, "full-labels", "--type", "segmentation")
            import nibabel as nib

            present = [int(v) for v in np.unique(np.asarray(nib.load(str(labels_vol)).dataobj)) if v]
            for sharded in (False, True):
                tag = "sharded" if sharded else "unsharded"
                ours, theirs = _copy(full, work / f"mesh-ours-{tag}"), _copy(full, work / f"mesh-igneous-{tag}")
                results.append(measure(f"meshes {tag}: streamconv", [
                    [*STREAMCONV, "generate-meshes", str(ours), *memory[:-1],  # it has no -q
                     *(["--sharding", "auto"] if sharded else [])]]))
                lods = len(_first_manifest_lods(ours, present))
                forge = ["mesh", "forge", f"file://{theirs}", "--mip", "0", *(["--sharded"] if sharded else [])]
                # igneous gives a label min(nlod, log2(its extent / --min-chunk-size)) extra levels
                # (tasks/mesh/multires.py): with its default 256^3, none for labels a few tens of
                # voxels across. 16^3 lets it make as many levels as ours.
                merge = ["mesh", "merge-sharded" if sharded else "merge", f"file://{theirs}", "--nlod",
                         str(lods - 1), "--min-chunk-size", "16,16,16"]
                results.append(measure(f"meshes {tag}: igneous", _igneous(work / "queue", args.workers, *forge)
                                       + _igneous(work / "queue2", args.workers, *merge)))
                try:
                    if first:
                        notes.append(f"meshes {tag}: " + compare_meshes(ours, theirs, present, 1e6))
                except Exception as exc:  # a report line, not a stop: the timings stand
                    notes.append(f"meshes {tag}: comparison failed: {exc!r}")
    _report(results, notes)
    return results


def _first_manifest_lods(layer: Path, labels: list[int]) -> list:
    from mesh_reader import read_multilod

    for label in labels:
        try:
            return read_multilod(_mesh_dir(layer), label)
        except (FileNotFoundError, KeyError):
            continue
    raise SystemExit(f"{layer}: no label has a mesh")


def _report(results: list[Measurement], notes: list[str]) -> None:
    MiB = 1 << 20
    print(f"{'row':40} {'seconds':>8} {'CPU-s':>7} {'peak RSS sum':>13} {'peak PSS sum':>13}")
    for m in results:
        print(f"{m.name:40} {m.seconds:8.2f} {m.cpu_seconds:7.2f} {m.peak_rss / MiB:9.0f} MiB "
              f"{m.peak_pss / MiB:9.0f} MiB")
    pairs: dict[str, dict[str, list[Measurement]]] = {}
    for m in results:
        row, who = m.name.rsplit(": ", 1)
        pairs.setdefault(row, {}).setdefault(who, []).append(m)
    for row, p in pairs.items():  # per round: each round's streamconv run against its igneous run
        ratios = [(b.seconds / a.seconds, b.cpu_seconds / max(a.cpu_seconds, 1e-9))
                  for a, b in zip(p.get("streamconv", []), p.get("igneous", []))]
        if ratios:
            print(f"{row}: igneous / streamconv per round: "
                  + ", ".join(f"{w:.2f}x wall ({c:.2f}x CPU-s)" for w, c in ratios))
    for line in notes:
        print(line)
