"""`streamconv view` in world space, in a real headless Chromium: a RAS and a LAS conversion of
one volume show its asymmetric marker at the same place on screen; a float volume in [-5, 3] and
an RGB volume render with visible contrast (screenshot statistics). And the state printed for a
Neuroglancer hosted elsewhere."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_view import CHROMEDRIVER, CHROMIUM, STREAMCONV, start

import streamconv


def convert(source: Path, output: Path) -> Path:
    """`streamconv convert` (RAS voxel order, its own transform.json)."""
    streamconv.convert(source, output, workers=0, chunk_size=16)
    return output


def marked_volume() -> np.ndarray:
    """40^3 of dim tissue with a bright marker off-centre in x and y, across the middle z plane."""
    data = np.full((40, 40, 40), 60, np.uint8)
    data[4:12, 24:33, 14:27] = 255
    return data


def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the test extra)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,800",
                     "--use-angle=swiftshader", "--enable-unsafe-swiftshader"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver


def shown(driver, output: Path, png: Path, ready: Callable[[np.ndarray], bool]) -> np.ndarray:
    """The xy panel (top left) of `streamconv view OUTPUT` once `ready` says the data has arrived
    (or after 60 s), as an RGB array."""
    from PIL import Image

    for url in start(output):
        driver.get(url)
        deadline = time.monotonic() + 60
        while True:
            time.sleep(2)
            driver.save_screenshot(str(png))
            image = np.asarray(Image.open(png).convert("RGB")).astype(int)
            height, width = image.shape[:2]
            panel = image[height // 8: height * 9 // 20, width // 50: width * 12 // 25]
            if ready(panel) or time.monotonic() > deadline:
                return panel
    raise AssertionError("unreachable")


def marker(panel: np.ndarray) -> np.ndarray | None:
    """Centre of the white marker's pixels in a panel, if it shows."""
    white = panel.min(axis=2) > 220
    if white.sum() < 40:
        return None
    ys, xs = np.nonzero(white)
    return np.array([xs.mean(), ys.mean()])


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")


@needs_chromium
def test_a_ras_and_a_las_conversion_show_the_marker_at_the_same_place(tmp_path):
    ras = nib.Nifti1Image(marked_volume(), np.diag([2.0, 2.0, 2.0, 1.0]) + np.array(
        [[0, 0, 0, -40], [0, 0, 0, -38], [0, 0, 0, -36], [0, 0, 0, 0]]))
    flip = np.array([[-1, 0, 0, 39], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])  # voxel i -> 39 - i
    # the same brain stored with x flipped, its affine flipped to match
    las = nib.Nifti1Image(marked_volume()[::-1].copy(), ras.affine @ flip)
    assert nib.aff2axcodes(las.affine) == ("L", "A", "S")
    nib.save(ras, tmp_path / "ras.nii")
    nib.save(las, tmp_path / "las.nii")
    outputs = {"ras": convert(tmp_path / "ras.nii", tmp_path / "ras" / "brain"),
               "las": convert(tmp_path / "las.nii", tmp_path / "las" / "brain")}
    # the LAS file in its own voxel order: placed by its transform.json alone
    streamconv.convert(tmp_path / "las.nii", tmp_path / "lasfile" / "brain", workers=0, chunk_size=16,
                       voxel_order="file")
    outputs["lasfile"] = tmp_path / "lasfile" / "brain"
    streamconv.convert(tmp_path / "las.nii", tmp_path / "bare" / "brain", workers=0, chunk_size=16,
                       voxel_order="file")
    for name in ("transform.json", "placement.json"):  # Neuroglancer's default placement
        (tmp_path / "bare" / "brain" / name).unlink()
    outputs["bare"] = tmp_path / "bare" / "brain"
    driver = browser()
    try:
        found = {name: marker(shown(driver, out, tmp_path / f"{name}.png", lambda p: marker(p) is not None))
                 for name, out in outputs.items()}
    finally:
        driver.quit()
    assert found["ras"] is not None and found["las"] is not None, found
    assert np.abs(found["ras"] - found["las"]).max() < 4, found
    assert found["lasfile"] is not None and np.abs(found["ras"] - found["lasfile"]).max() < 4, found
    # without its transform, the LAS output is the mirror image: the test can tell
    assert found["bare"] is None or np.abs(found["ras"] - found["bare"]).max() > 15, found


def mid_grey(panel: np.ndarray) -> float:
    """The share of grey pixels that are neither black nor white: visible contrast."""
    grey = np.ptp(panel, axis=2) < 12
    level = panel.mean(axis=2)
    return float((grey & (level > 40) & (level < 215)).mean())


def coloured(panel: np.ndarray, channel: int) -> float:
    """The share of pixels of a pure colour (channel 0 red, 2 blue)."""
    others = [c for c in range(3) if c != channel]
    return float(((panel[..., channel] > 150) & (panel[..., others].max(axis=2) < 90)).mean())


@needs_chromium
def test_a_float_volume_and_an_rgb_volume_render_with_contrast(tmp_path):
    x = np.linspace(-5, 3, 48, dtype=np.float32)
    floats = np.broadcast_to(x[:, None, None], (48, 48, 48)).copy()  # a ramp from -5 to 3 along x
    nib.save(nib.Nifti1Image(floats, np.eye(4)), tmp_path / "ramp.nii")
    rgb = np.zeros((48, 48, 48, 3), np.uint8)
    rgb[:24, ..., 0] = 255  # left half red
    rgb[24:, ..., 2] = 255  # right half blue
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), tmp_path / "rgb.nii")
    ramp, colours = convert(tmp_path / "ramp.nii", tmp_path / "ramp"), convert(tmp_path / "rgb.nii", tmp_path / "rgb")
    stats = json.loads((ramp / "stats.json").read_text())["scales"][0]["channels"][0]
    assert (stats["min"], stats["max"]) == (-5, 3)
    driver = browser()
    try:
        grey = shown(driver, ramp, tmp_path / "ramp.png", lambda p: mid_grey(p) > 0.3)
        colour = shown(driver, colours, tmp_path / "rgb.png", lambda p: min(coloured(p, 0), coloured(p, 2)) > 0.1)
    finally:
        driver.quit()
    # Neuroglancer's default range [0, 1] would show the ramp as 5/8 black and 2/8 white
    assert mid_grey(grey) > 0.3, f"{mid_grey(grey):.1%} mid-grey ({tmp_path / 'ramp.png'})"
    levels = np.unique(grey.mean(axis=2).astype(int) // 8)
    assert levels.size > 16  # a ramp of greys, not two levels
    assert coloured(colour, 0) > 0.1 and coloured(colour, 2) > 0.1, (coloured(colour, 0), coloured(colour, 2))


def test_a_printed_state_reads_the_outputs_under_the_base_url(tmp_path):
    """`view --base-url`: the JSON state and a link, sources under the base URL, each output placed
    by its transform, the image's range from its statistics; nothing served."""
    data = (np.random.default_rng(2).standard_normal((20, 22, 24)) * 2 - 1).astype(np.float32)
    affine = np.array([[0, -1.5, 0, 10], [2, 0, 0, -20], [0, 0, 1, 5], [0, 0, 0, 1]], float)
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "f.nii")
    out = tmp_path / "stat map"  # in the file's voxel order: the transform carries the permutation
    streamconv.convert(tmp_path / "f.nii", out, workers=0, chunk_size=16, voxel_order="file")
    labels = np.zeros((8, 8, 8), np.uint8)
    labels[2:5, 2:5, 2:5] = 3
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "l.nii")
    streamconv.convert(tmp_path / "l.nii", tmp_path / "seg", volume_type="segmentation", workers=0)
    result = subprocess.run([STREAMCONV, "view", "--print-state", "--base-url", "https://bucket.example/atlas/",
                             "--neuroglancer", "https://ng.example/", str(out), str(tmp_path / "seg")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    *document, link = result.stdout.strip().split("\n")
    state = json.loads("\n".join(document))
    assert link.startswith("https://ng.example/#!")
    assert json.loads(urllib.parse.unquote(link.split("#!", 1)[1])) == state
    image, seg = state["layers"]
    assert image["source"]["url"] == "precomputed://https://bucket.example/atlas/stat_map"
    assert seg["source"]["url"] == "precomputed://https://bucket.example/atlas/seg"
    # the layer's matrix maps a voxel's corner coordinates, in millimetres (Neuroglancer scales
    # them by the input dimensions first), to millimetres of the input's world
    transform = image["source"]["transform"]
    matrix = np.array(transform["matrix"])
    assert transform["outputDimensions"] == {a: [0.001, "m"] for a in "xyz"}
    res = np.array([transform["inputDimensions"][a][0] for a in "xyz"]) / 0.001
    assert np.allclose(res, [2, 1.5, 1])  # the input's voxel sizes, in mm
    centre = (np.array([3, 4, 5]) + 0.5) * res
    assert np.allclose(matrix[:, :3] @ centre + matrix[:, 3], (affine @ [3, 4, 5, 1])[:3])
    low, high = image["shaderControls"]["normalized"]["range"]
    finite = np.percentile(data, [0.5, 99.5])
    assert abs(low - finite[0]) < 0.05 * (high - low) and abs(high - finite[1]) < 0.05 * (high - low)
    assert state["dimensions"] == {a: [0.001, "m"] for a in "xyz"}

    refused = subprocess.run([STREAMCONV, "view", "--print-state", str(out)], capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode != 0 and "--base-url" in refused.stderr and "Traceback" not in refused.stderr
