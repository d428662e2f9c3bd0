"""Run a fixed matrix of conversions and step commands, and print one digest per output.

    python tools/digest_outputs.py WORKDIR [--streamconv PATH]

Each digest is the sha256 of every file a reader sees (path and bytes; not `.streamconv/`).
Run it before and after a change that must not change any output byte, and compare the two
listings (a refactor of the core did this, docs/design.md). Inputs are made here: nilearn's
MNI152 template, dipy's anisotropic volume, synthetic labels and sections from tools/.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from make_sections import make_sections
from make_surface import surface_of_mask, write_gifti
from make_volume import make_volume


def digest(out: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(out.rglob("*")):
        if p.is_file() and ".streamconv" not in p.parts:
            h.update(str(p.relative_to(out)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir")
    parser.add_argument("--streamconv", default=str(Path(sys.executable).parent / "streamconv"))
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    from dipy.data import get_fnames
    from nilearn.datasets import MNI152_FILE_PATH, load_mni152_brain_mask

    mni, aniso = MNI152_FILE_PATH, get_fnames(name="aniso_vox")
    labels = str(make_volume(work / "labels.nii", (70, 50, 40), "uint16", labels=12))
    sections = work / "sections"
    make_sections(sections, 9, 100, 80, workers=1)
    mask = load_mni152_brain_mask()
    surface = work / "brain.gii"
    if not surface.exists():
        write_gifti(surface, *surface_of_mask(np.asarray(mask.dataobj) > 0, mask.affine))
    (work / "links.csv").write_text("1,brain\n")

    def run(*argv: object) -> None:
        result = subprocess.run([args.streamconv, *map(str, argv)], capture_output=True, text=True)
        if result.returncode:
            raise SystemExit(f"{' '.join(map(str, argv))}: {result.stderr.strip()}")

    cases: dict[str, list[list[object]]] = {
        "mni-raw": [["convert", mni, "{o}"]],
        "mni-jpeg": [["convert", mni, "{o}", "--encoding", "jpeg", "--jpeg-quality", "80"]],
        "mni-jpeg-xz": [["convert", mni, "{o}", "--encoding", "jpeg", "--jpeg-plane", "xz",
                         "--chunk-size", "32"]],
        "mni-png-gzip": [["convert", mni, "{o}", "--encoding", "png", "--gzip"]],
        "mni-inline-stride": [["convert", mni, "{o}", "--workers", "0", "--downsampling", "stride",
                               "--max-scales", "2"]],
        "aniso": [["convert", aniso, "{o}", "--outside-value", "7"]],
        "labels-cseg": [["convert", labels, "{o}", "--type", "segmentation", "--encoding",
                         "compressed_segmentation", "--cseg-block-size", "4,8,8"]],
        "labels-raw-skip": [["convert", labels, "{o}", "--type", "segmentation", "--skip-empty",
                             "--gzip"]],
        "stack": [["convert", sections, "{o}", "--input-orientation", "RIA", "--resolution", "20um"]],
        "steps": [["volume-to-precomputed", "--generate-info", mni, "{o}"],
                  ["generate-scales-info", "{o}/info_fullres.json", "{o}", "--encoding", "png"],
                  ["volume-to-precomputed", mni, "{o}", "--gzip"],
                  ["compute-scales", "{o}", "--downscaling-method", "stride"]],
        "convert-chunks": [["convert-chunks", "{w}/mni-raw", "{o}", "--encoding", "jpeg"]],
        "convert-chunks-copy": [["convert-chunks", "{w}/labels-cseg", "{o}", "--copy-info", "--gzip"]],
        "meshes": [["convert", labels, "{o}", "--type", "segmentation", "--max-scales", "1"],
                   ["mesh-to-precomputed", surface, "{o}", "--no-gzip", "--mesh-name", "brain", "--coord-transform",
                    "1,0,0,1,0,1,0,2,0,0,-1,3"],
                   ["link-mesh-fragments", "{w}/links.csv", "{o}"]],
    }
    for name, commands in cases.items():
        out = work / name
        shutil.rmtree(out, ignore_errors=True)
        for argv in commands:
            run(*[str(a).format(o=out, w=work) for a in argv])
        print(f"{name:22s} {digest(out)}", flush=True)


if __name__ == "__main__":
    main()
