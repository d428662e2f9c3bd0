"""`streamconv view`: the server a user's browser talks to. Started as a user starts it
(`--no-browser`), read with a plain HTTP client: headers Neuroglancer needs (CORS, Range, gzip),
the client page, and nothing outside the served outputs; then a real headless Chromium."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nilearn.datasets import MNI152_FILE_PATH

import streamconv
from streamconv.commands.view import LocalDataset, RangeNotSatisfiable, byte_range, viewer_state

STREAMCONV = str(Path(sys.executable).with_name("streamconv"))
CHUNK = "0-16_0-16_0-16"


def start(*outputs: Path) -> Iterator[str]:
    """`streamconv view --no-browser OUTPUTS`: yields the URL it prints, stops it with Ctrl-C."""
    process = subprocess.Popen([STREAMCONV, "view", "--no-browser", *map(str, outputs)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), process.stderr.read() if process.stderr else url
        yield url
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


class Got:
    """A response read whole."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()


def get(url: str, path: str, headers: dict | None = None) -> Got:
    """A GET of `path` exactly as written (no normalising of `..` by the client)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        return Got(conn.getresponse())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A raw output, a gzip one, and a secret file beside them."""
    root = tmp_path_factory.mktemp("view")
    data = np.arange(40 * 30 * 20, dtype=np.uint16).reshape(20, 30, 40)
    nib.save(nib.Nifti1Image(data.T, np.eye(4)), root / "v.nii")
    streamconv.convert(root / "v.nii", root / "raw", chunk_size=16, workers=0)
    streamconv.convert(root / "v.nii", root / "gz", chunk_size=16, workers=0, gzip=True)
    (root / "secret.txt").write_text("secret")
    (root / "raw-secret").mkdir()
    (root / "raw-secret" / "info").write_text("secret")
    os.symlink(root / "secret.txt", root / "raw" / "link")
    os.symlink(root, root / "raw" / "up")
    return root / "raw", root / "gz", root


def test_view_serves_info_chunks_ranges_gzip_and_the_client(outputs):
    raw, gz, _ = outputs
    key = json.loads((raw / "info").read_text())["scales"][0]["key"]
    chunk = (raw / key / CHUNK).read_bytes()
    for url in start(raw, gz):
        info = get(url, "/data/raw/info")
        assert info.status == 200 and info.headers.get("Access-Control-Allow-Origin") == "*"
        assert info.headers.get("Content-Type") == "application/json"
        assert info.body == (raw / "info").read_bytes()

        whole = get(url, f"/data/raw/{key}/{CHUNK}")
        assert whole.status == 200 and whole.body == chunk
        part = get(url, f"/data/raw/{key}/{CHUNK}", {"Range": "bytes=100-199"})
        assert part.status == 206 and part.body == chunk[100:200]
        assert part.headers.get("Content-Range") == f"bytes 100-199/{len(chunk)}"
        assert part.headers.get("Access-Control-Allow-Origin") == "*"
        tail = get(url, f"/data/raw/{key}/{CHUNK}", {"Range": "bytes=-10"})
        assert tail.status == 206 and tail.body == chunk[-10:]
        assert get(url, f"/data/raw/{key}/{CHUNK}", {"Range": f"bytes={len(chunk)}-"}).status == 416

        plain = get(url, f"/data/gz/{key}/{CHUNK}")  # asked for by its plain name
        assert plain.status == 200 and plain.headers.get("Content-Encoding") == "gzip"
        assert gzip.decompress(plain.body) == chunk

        page = get(url, "/v/streamconv/")
        assert page.status == 200 and page.headers.get("Content-Type").startswith("text/html")
        assert b"<script" in page.body
        script = page.body.decode().split('src="')[1].split('"')[0]
        assert get(url, f"/v/streamconv/{script}").status == 200
        state = json.loads(urllib.parse.unquote(url.split("#!", 1)[1]))
        assert [layer["name"] for layer in state["layers"]] == ["raw", "gz"]
        assert state["layers"][0]["source"]["url"] == f"precomputed://{url.split('/v/')[0]}/data/raw"


ESCAPES = [
    "/data/raw/../raw-secret/info", "/data/raw/../../secret.txt", "/data/raw/%2e%2e/secret.txt",
    "/data/raw/%2E%2E%2Fsecret.txt", "/data/raw/..%2fsecret.txt", "/data/raw/..%5csecret.txt",
    "/data/raw/%252e%252e/secret.txt", "/data/raw/.streamconv/job.json", "/data/raw/link",
    "/data/raw/up/secret.txt", "/data/raw//etc/passwd", "/data/raw/%2fetc/passwd",
    "/data/raw/info%00", "/data/..%2fsecret.txt", "/data/raw-secret/info", "/v/streamconv/../../secret.txt",
    "/v/streamconv/%2e%2e%2f__init__.py", "/v/streamconv/../__init__.py",
]


def test_nothing_outside_the_served_outputs_can_be_fetched(outputs):
    """`../` and its encodings, hidden state, symlinks out (to a file, to a directory above), a
    sibling whose name starts like an output's, and the client's package around its files."""
    raw, _, _ = outputs
    for url in start(raw):
        for path in ESCAPES:
            response = get(url, path)
            assert response.status == 404, path
            assert b"secret" not in response.body, path


def test_byte_ranges():
    assert byte_range(None, 10) is None
    assert byte_range("bytes=2-4", 10) == (2, 5)
    assert byte_range("bytes=8-", 10) == (8, 10)
    assert byte_range("bytes=-3", 10) == (7, 10)
    assert byte_range("bytes=5-100", 10) == (5, 10)
    with pytest.raises(RangeNotSatisfiable):
        byte_range("bytes=10-", 10)
    assert byte_range("bytes=0-1,4-5", 10) is None  # several ranges: the whole file


def test_a_segmentation_with_meshes_shows_its_meshed_segments(tmp_path):
    labels = np.zeros((8, 8, 8), np.uint8)
    labels[2:6, 2:6, 2:6] = 3
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "l.nii")
    streamconv.convert(tmp_path / "l.nii", tmp_path / "seg", volume_type="segmentation", workers=0)
    info = json.loads((tmp_path / "seg" / "info").read_text())
    info["mesh"] = "mesh"
    (tmp_path / "seg" / "info").write_text(json.dumps(info))
    (tmp_path / "seg" / "mesh").mkdir()
    for name in ("3:0", "12:0", "12"):
        (tmp_path / "seg" / "mesh" / name).write_text("{}")
    state = viewer_state([LocalDataset("seg", tmp_path / "seg")], "http://127.0.0.1:1")
    [layer] = state["layers"]
    assert layer["source"]["url"] == "precomputed://http://127.0.0.1:1/data/seg"  # placed by its transform.json
    assert {key: layer[key] for key in ("type", "name", "segments")} == {
        "type": "segmentation", "name": "seg", "segments": ["3", "12"]}
    assert state["position"] == [3.5, 3.5, 3.5]  # mm: the centre of voxels 0..7 under an identity affine


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")
def test_a_real_browser_shows_the_mni_template(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the test extra)")
    from selenium.webdriver.chrome.service import Service

    streamconv.convert(MNI152_FILE_PATH, tmp_path / "mni", workers=0)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,800",
                     "--use-angle=swiftshader", "--enable-unsafe-swiftshader"):
        options.add_argument(argument)
    for url in start(tmp_path / "mni"):
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            driver.set_page_load_timeout(60)
            driver.get(url)
            deadline = time.monotonic() + 60
            while True:  # the data arrives chunk by chunk: wait until a panel shows the brain
                time.sleep(2)
                driver.save_screenshot(str(tmp_path / "view.png"))
                shown = brain_fraction(tmp_path / "view.png")
                if shown > 0.3 or time.monotonic() > deadline:
                    break
        finally:
            driver.quit()
        assert shown > 0.3, f"only {shown:.1%} of the top-left panel shows tissue ({tmp_path / 'view.png'})"


def brain_fraction(png: Path) -> float:
    """The share of the top-left (xy) slice panel that shows tissue: grey to white pixels, which
    neither a blank page, the black background nor an error message has."""
    from PIL import Image

    image = np.asarray(Image.open(png).convert("RGB")).astype(int)
    height, width = image.shape[:2]
    # Inside the volume's outline in that panel: outside it Neuroglancer paints a uniform grey.
    panel = image[height // 5: height * 9 // 20, width * 9 // 50: width * 7 // 20]
    grey = (np.ptp(panel, axis=2) < 12) & (panel.mean(axis=2) > 60)
    return float(grey.mean())
