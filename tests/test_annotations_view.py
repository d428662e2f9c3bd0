"""`streamconv view` of a segmentation and a points collection over it, in a real headless
Chromium: the points are drawn (screenshot statistics: pixels of their colour), and with a
segment selected and the layer filtering by it, Neuroglancer draws only that segment's points,
which it reads from the segment's relationship entry. (The data requests are made by the
client's worker, which Chrome's performance log does not show: the screenshot says it.)"""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from test_view import start

import streamconv
from streamconv.annotations import AnnotationOptions, write_annotations
from streamconv.commands.view import LocalDataset, viewer_state

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def make_outputs(tmp_path: Path) -> tuple[Path, Path]:
    """A 64^3 segmentation (segment 3 on the left half, 5 on the right) and 2000 green points,
    each related to the segment it lies in."""
    labels = np.full((64, 64, 64), 5, np.uint8)
    labels[:32] = 3
    nib.save(nib.Nifti1Image(labels, np.diag([1, 1, 1, 1])), tmp_path / "seg.nii")
    streamconv.convert(tmp_path / "seg.nii", tmp_path / "seg", volume_type="segmentation", workers=0)
    rng = np.random.default_rng(1)
    points = rng.uniform(2, 61, (2000, 3))
    with open(tmp_path / "cells.csv", "w") as out:
        out.write("x,y,z,color,segment\n")
        for x, y, z in points:
            out.write(f"{x:.2f},{y:.2f},{z:.2f},#00ff00,{3 if x < 32 else 5}\n")
    write_annotations(tmp_path / "cells.csv", tmp_path / "cells",
                      AnnotationOptions(image=str(tmp_path / "seg"), limit=200), workers=0)
    return tmp_path / "seg", tmp_path / "cells"


def test_viewer_state_has_an_annotation_layer_linked_to_the_segmentation(tmp_path: Path) -> None:
    seg, cells = make_outputs(tmp_path)
    state = viewer_state([LocalDataset("seg", seg), LocalDataset("cells", cells)], "http://127.0.0.1:1")
    volume, layer = state["layers"]
    assert layer["type"] == "annotation" and layer["source"]["url"] == "precomputed://http://127.0.0.1:1/data/cells"
    assert layer["source"]["transform"] == volume["source"]["transform"]  # in the image's voxels, placed alike
    assert "prop_color()" in layer["shader"] and layer["linkedSegmentationLayer"] == {"segment": "seg"}


def green(png: Path) -> np.ndarray:
    from PIL import Image

    image = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return (image[..., 1] > 150) & (image[..., 0] < 90) & (image[..., 2] < 90)


def shown(driver: Any, base: str, state: dict, png: Path, enough: int) -> np.ndarray:
    """Open the viewer on `state`; screenshots until `enough` green pixels (or a minute)."""
    driver.get(base + "#!" + urllib.parse.quote(json.dumps(state)))
    deadline = time.monotonic() + 60
    while True:
        time.sleep(2)
        driver.save_screenshot(str(png))
        mask = green(png)
        if mask.sum() >= enough or time.monotonic() > deadline:
            return mask


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason="needs chromium and chromedriver")
def test_a_real_browser_shows_the_points_and_a_segments_annotations(tmp_path: Path) -> None:
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the test extra)")
    from selenium.webdriver.chrome.service import Service

    seg, cells = make_outputs(tmp_path)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=800,800",
                     "--use-angle=swiftshader", "--enable-unsafe-swiftshader"):
        options.add_argument(argument)
    for url in start(seg, cells):
        base, fragment = url.split("#!", 1)
        state = json.loads(urllib.parse.unquote(fragment))
        state["layout"] = "3d"  # every point drawn, whatever the slice
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            driver.set_page_load_timeout(60)
            everything = shown(driver, base, state, tmp_path / "all.png", 2000)
            assert everything.sum() >= 2000, f"{everything.sum()} green pixels ({tmp_path / 'all.png'})"
            state["layers"][0]["segments"] = ["3"]
            state["layers"][1]["filterBySegmentation"] = ["segment"]
            only = shown(driver, base, state, tmp_path / "segment3.png", 500)
        finally:
            driver.quit()
        # Filtering by segment 3 (the left half), Neuroglancer draws the annotations its
        # relationship entry lists (it reads no other index then): the points of the left half.
        middle = np.median(np.nonzero(everything)[1])
        right = np.nonzero(only)[1] > middle
        assert 500 <= only.sum() < 0.8 * everything.sum(), (only.sum(), everything.sum())
        assert right.mean() < 0.2, f"{right.mean():.0%} of segment 3's points right of the middle"
