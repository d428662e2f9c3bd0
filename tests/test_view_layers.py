"""`streamconv view` of more than volumes: an image, a label volume and a GIfTI surface
(`mesh-to-precomputed --onto` into a dataset of meshes alone) line up in world space; each
channel of a multichannel volume gets its own range; annotation collections open alone. The
states are checked by mapping points through the layers' transforms as Neuroglancer does
(a source coordinate times its input dimension's scale, in the output unit, then the matrix);
one real browser check that the surface renders where the view is."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from make_surface import surface_of_mask, write_gifti
from test_view import STREAMCONV
from test_view_world import browser, needs_chromium

import streamconv
from streamconv.annotations import AnnotationOptions, write_annotations
from streamconv.commands.meshes import link_mesh_fragments, mesh_to_precomputed
from streamconv.commands.view import hosted_state, serve, served_datasets, viewer_state
from streamconv.meshing.legacy import decode_legacy

BASE = "http://127.0.0.1:1"


def to_world(layer: dict, points: np.ndarray) -> np.ndarray:
    """Source coordinates -> the view's world (mm), as Neuroglancer applies a source transform."""
    transform = layer["source"]["transform"]
    assert transform["outputDimensions"] == {a: [0.001, "m"] for a in "xyz"}
    scale = np.array([transform["inputDimensions"][a][0] for a in "xyz"]) / 0.001
    matrix = np.array(transform["matrix"])[:3]
    matrix = np.delete(matrix, 3, axis=1) if matrix.shape[1] == 5 else matrix  # a channel column
    return (np.asarray(points, float) * scale) @ matrix[:, :3].T + matrix[:, 3]


def brain(shape: tuple[int, int, int] = (30, 28, 26)) -> np.ndarray:
    """An ellipsoid off centre along x and y: a mirrored placement would not overlap it."""
    x, y, z = np.indices(shape)
    return (((x - 11) / 8) ** 2 + ((y - 16) / 9) ** 2 + ((z - 13) / 10) ** 2 < 1).astype(np.uint8)


@pytest.fixture()
def trio(tmp_path: Path) -> tuple[Path, Path, Path, np.ndarray]:
    """An image stored in its file's LAS order, its labels converted to RAS, and the surface of
    the labels' mask put onto the image (a dataset of meshes alone); the surface's vertices (mm)."""
    mask = brain()
    affine = np.array([[2.0, 0, 0, -30], [0, 2, 0, -28], [0, 0, 2, -20], [0, 0, 0, 1]])
    flip = np.array([[-1, 0, 0, mask.shape[0] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    image = (mask * 150 + 40).astype(np.uint8)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(image[::-1]), affine @ flip), tmp_path / "t1.nii")
    nib.save(nib.Nifti1Image(mask, affine), tmp_path / "labels.nii")
    streamconv.convert(tmp_path / "t1.nii", tmp_path / "t1", workers=0, chunk_size=16, voxel_order="file")
    streamconv.convert(tmp_path / "labels.nii", tmp_path / "labels", volume_type="segmentation", workers=0,
                       chunk_size=16)
    vertices, triangles = surface_of_mask(mask, affine)
    write_gifti(tmp_path / "brain.gii", vertices, triangles)
    surface = tmp_path / "surface"
    surface.mkdir()
    (surface / "info").write_text(json.dumps({"type": "segmentation", "scales": []}))
    mesh_to_precomputed(tmp_path / "brain.gii", surface, onto=str(tmp_path / "t1"))
    (tmp_path / "fragments.csv").write_text("1,brain\n")
    link_mesh_fragments(tmp_path / "fragments.csv", surface)
    return tmp_path / "t1", tmp_path / "labels", surface, vertices


def box_world(layer: dict, output: Path) -> np.ndarray:
    """The world corners (mm) of a volume layer's grid, lowest and highest."""
    size = json.loads((output / "info").read_text())["scales"][0]["size"]
    world = to_world(layer, np.array([np.where(c, size, 0) for c in np.ndindex(2, 2, 2)]))
    return np.array([world.min(axis=0), world.max(axis=0)])


def test_an_image_its_labels_and_a_surface_line_up(trio):
    t1, labels, surface, vertices = trio
    assert json.loads((surface / "transform.json").read_text()) == json.loads((t1 / "transform.json").read_text())
    state = viewer_state(served_datasets([t1, labels, surface]), BASE)
    image, seg, surf = state["layers"]
    assert (image["type"], seg["type"], surf["type"]) == ("image", "segmentation", "segmentation")
    # Neuroglancer opens a mesh directory (neuroglancer_legacy_mesh), not a scaleless info
    assert surf["source"]["url"] == f"precomputed://{BASE}/data/surface/mesh" and surf["segments"] == ["1"]
    # the image in its file's LAS order and the labels in RAS cover the same box of the world
    assert not np.allclose(image["source"]["transform"]["matrix"], seg["source"]["transform"]["matrix"])
    assert np.allclose(box_world(image, t1), box_world(seg, labels))
    # the surface's fragment vertices (nm of the image's grid), placed by the layer: the GIfTI's mm
    stored, _ = decode_legacy(gzip.decompress((surface / "mesh" / "brain.gz").read_bytes()))  # gzip: as ngs
    assert np.allclose(to_world(surf, stored), vertices, atol=1e-3)
    low, high = box_world(seg, labels)
    assert (vertices >= low - 1e-3).all() and (vertices <= high + 1e-3).all()
    assert state["dimensions"] == {a: [0.001, "m"] for a in "xyz"}
    assert np.allclose(state["position"], (low + high) / 2)

    alone = viewer_state(served_datasets([surface]), BASE)  # no volume: the world's origin, in mm
    assert alone["layers"] == [surf] and alone["dimensions"] == state["dimensions"] and "position" not in alone

    hosted = hosted_state([t1, labels, surface], "https://data.example/brains/")
    shared = hosted["layers"][2]
    assert shared["source"]["url"] == "precomputed://https://data.example/brains/surface/mesh"
    assert shared["source"]["transform"] == surf["source"]["transform"] and shared["segments"] == ["1"]

    viewer = serve([surface], client=False)
    try:
        def get(key: str) -> bytes:
            with urllib.request.urlopen(f"{viewer.base_url}/data/surface/{key}", timeout=10) as response:
                return response.read()
        assert json.loads(get("mesh/info")) == {"@type": "neuroglancer_legacy_mesh"}
        assert json.loads(get("mesh/1:0")) == {"fragments": ["brain"]}
    finally:
        viewer.stop()


def test_onto_another_image_than_the_datasets_own_placement_is_refused(trio, tmp_path):
    t1, labels, _, _ = trio
    result = subprocess.run([STREAMCONV, "mesh-to-precomputed", "--onto", str(t1), str(tmp_path / "brain.gii"),
                             str(labels)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "differs from the --onto image's" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (labels / "mesh").exists()


def multilod_surface(tmp_path: Path, affine: np.ndarray, sharding: str = "off") -> tuple[Path, Path]:
    """`brain()` as labels at `affine`, converted with multi-resolution meshes, and a dataset of
    those meshes alone (the mesh directory, the volume's transform.json, a scaleless info)."""
    nib.save(nib.Nifti1Image(brain(), affine), tmp_path / "labels.nii")
    streamconv.convert(tmp_path / "labels.nii", tmp_path / "labels", volume_type="segmentation", workers=0,
                       chunk_size=16, meshes=True, sharding=sharding)
    labels, surface = tmp_path / "labels", tmp_path / "surface"
    surface.mkdir()
    shutil.copytree(labels / "mesh", surface / "mesh")
    shutil.copy(labels / "transform.json", surface / "transform.json")
    (surface / "info").write_text(json.dumps({"type": "segmentation", "scales": [], "mesh": "mesh"}))
    assert json.loads((surface / "mesh" / "info").read_text())["@type"] == "neuroglancer_multilod_draco"
    return labels, surface


@pytest.mark.parametrize("sharding", ["off", "auto"])
def test_multiresolution_meshes_alone_open_placed_on_their_image(tmp_path, sharding):
    """A dataset of meshes alone in the multi-resolution format (a label volume's `mesh/`, Draco,
    published without its voxels, with the volume's transform.json): `view` opens its mesh
    directory as a segmentation layer (Neuroglancer's precomputed source reads a
    `neuroglancer_multilod_draco` directory as a mesh source, in nm), placed by the transform,
    its meshed segments shown (sharded: the ids its minishard indexes hold); the vertices land
    on the mask's boundary in the world."""
    from mesh_reader import read_multilod

    mask = brain()
    affine = np.array([[-2.0, 0, 0, 30], [0, 2, 0, -28], [0, 0, 2, -20], [0, 0, 0, 1]])  # LAS
    labels, surface = multilod_surface(tmp_path, affine, sharding)
    assert ("sharding" in json.loads((surface / "mesh" / "info").read_text())) == (sharding == "auto")

    result = subprocess.run([STREAMCONV, "view", "--base-url", "https://data.example/", str(labels), str(surface)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    seg, surf = json.loads(result.stdout.rsplit("\n", 2)[0])["layers"]
    assert surf["type"] == "segmentation" and surf["segments"] == ["1"] and seg["segments"] == ["1"]
    assert surf["source"]["url"] == "precomputed://https://data.example/surface/mesh"
    assert surf["source"]["transform"]["inputDimensions"] == {a: [1e-9, "m"] for a in "xyz"}
    vertices, _ = read_multilod(surface / "mesh", 1)[0]  # nm of the grid, as Neuroglancer reads them
    world = to_world(surf, vertices)
    inside = np.argwhere(mask)  # the mask's voxels: its surface runs along their outer faces
    corners = np.array([inside.min(axis=0) - 0.5, inside.max(axis=0) + 0.5])
    expected = corners @ affine[:3, :3].T + affine[:3, 3]
    assert np.allclose(world.min(axis=0), expected.min(axis=0), atol=0.5), (world.min(axis=0), expected)
    assert np.allclose(world.max(axis=0), expected.max(axis=0), atol=0.5), (world.max(axis=0), expected)


def test_verify_checks_the_transform_a_surface_keeps(trio, tmp_path):
    """`verify` of a dataset of meshes alone: its copy of the image's transform.json must be an
    invertible affine and still equal the image's (recorded by --onto); a bad one is one line, exit 1."""
    t1, _, surface, _ = trio

    def verify() -> subprocess.CompletedProcess:
        return subprocess.run([STREAMCONV, "verify", str(tmp_path / "brain.gii"), str(surface)],
                              capture_output=True, text=True, timeout=60)

    result = verify()
    assert result.returncode == 0 and "meshes alone" in result.stderr and str(t1) in result.stderr, result.stderr
    good = (surface / "transform.json").read_text()
    moved = json.loads(good)
    moved[0][3] += 5e6  # 5 mm along x: the surface would no longer lie on the image
    (surface / "transform.json").write_text(json.dumps(moved))
    result = verify()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and f"differs from that of {t1}" in result.stderr, result.stderr
    for bad, says in (("[[1, 0, 0], [0, 1, 0]]", "not an invertible 4x4"), ("not json", "not a 4x4 matrix"),
                      (json.dumps([[0] * 4] * 3 + [[0, 0, 0, 1]]), "not an invertible 4x4")):
        (surface / "transform.json").write_text(bad)
        result = verify()
        assert result.returncode == 1 and says in result.stderr and "Traceback" not in result.stderr, result.stderr
    # the image gone (the surface copied elsewhere): only well-formedness can be checked
    (surface / "transform.json").write_text(good)
    (t1 / "transform.json").rename(t1 / "moved.json")
    result = verify()
    assert result.returncode == 0 and "transform.json well-formed" in result.stderr, result.stderr


@needs_chromium
def test_the_surface_renders_on_the_image(trio, tmp_path):
    """In the 3-D panel of the view framed by the image, the surface fills a good part of it, near
    the middle (a surface placed in nm as if mm would be a dot or fill the panel; one without its
    translation would lie ~40 mm, some 240 pixels, away from the image's centre)."""
    t1, _, surface, _ = trio
    renders_in_the_middle(t1, surface, tmp_path)


@needs_chromium
def test_multiresolution_meshes_alone_render_on_their_volume(tmp_path):
    """The same for a label volume's Draco meshes published alone: Neuroglancer reads the mesh
    directory, draws the meshed segment, and it lies where the volume frames the view."""
    affine = np.array([[2.0, 0, 0, -30], [0, 2, 0, -28], [0, 0, 2, -20], [0, 0, 0, 1]])
    labels, surface = multilod_surface(tmp_path, affine)
    renders_in_the_middle(labels, surface, tmp_path)


def renders_in_the_middle(volume: Path, surface: Path, tmp_path: Path) -> None:
    """The view framed by `volume` (hidden), in 3-D: `surface` drawn over 5 to 90 % of the panel,
    centred within 120 pixels of its middle."""
    from PIL import Image

    viewer = serve([volume, surface])
    try:
        state = viewer_state(served_datasets([volume, surface]), viewer.base_url)
        state["layers"][0]["visible"] = False
        state.update(layout="3d", showAxisLines=False, showScaleBar=False, showDefaultAnnotations=False)
        driver = browser()
        try:
            driver.get(viewer.url.split("#!", 1)[0] + "#!" + urllib.parse.quote(json.dumps(state)))
            deadline, share = time.monotonic() + 40, 0.0
            while share < 0.05 and time.monotonic() < deadline:
                time.sleep(2)
                driver.save_screenshot(str(tmp_path / "surface.png"))
                pixels = np.asarray(Image.open(tmp_path / "surface.png").convert("RGB")).astype(int)
                top = pixels.shape[0] // 10  # below the top bar and the layer names
                drawn = pixels[top:].max(axis=2) > 60
                share = float(drawn.mean())
        finally:
            driver.quit()
    finally:
        viewer.stop()
    assert 0.05 < share < 0.9, f"{share:.1%} of the 3-D panel is surface ({tmp_path / 'surface.png'})"
    ys, xs = np.nonzero(drawn)
    middle = np.array([drawn.shape[1], pixels.shape[0] + top]) / 2 - [0, top]
    assert np.hypot(*(np.array([xs.mean(), ys.mean()]) - middle)) < 120, (xs.mean(), ys.mean(), middle)


def test_each_channel_gets_its_own_range(tmp_path):
    rng = np.random.default_rng(3)
    two = np.stack([rng.uniform(0, 1, (12, 12, 12)), rng.uniform(100, 500, (12, 12, 12))], axis=-1)
    nib.save(nib.Nifti1Image(two.astype(np.float32), np.eye(4)), tmp_path / "two.nii")
    many = rng.uniform(0, 1, (12, 12, 12, 6)) * np.arange(1, 7)
    nib.save(nib.Nifti1Image(many.astype(np.float32), np.eye(4)), tmp_path / "many.nii")
    for name in ("two", "many"):
        streamconv.convert(tmp_path / f"{name}.nii", tmp_path / name, workers=0)
    composite, series = viewer_state(served_datasets([tmp_path / "two", tmp_path / "many"]), BASE)["layers"]
    controls = composite["shaderControls"]
    assert set(controls) == {"ch0", "ch1"} and [controls[c]["channel"] for c in ("ch0", "ch1")] == [[0], [1]]
    for c, (low, high) in enumerate([(0, 1), (100, 500)]):
        expected = np.percentile(two[..., c], [0.5, 99.5])
        assert np.allclose(controls[f"ch{c}"]["range"], expected, atol=0.02 * (high - low)), controls
    assert "#uicontrol invlerp ch0(channel=0)" in composite["shader"] and "ch1()" in composite["shader"]
    # six channels (a series): one at a time in grey, the range covering every channel's
    low, high = series["shaderControls"]["normalized"]["range"]
    assert "emitGrayscale" in series["shader"] and low < 0.05 and 5.8 < high <= 6


def annotations(tmp_path: Path, name: str, **options: str) -> Path:
    with open(tmp_path / f"{name}.csv", "w") as out:
        out.write("x,y,z\n")
        for x, y, z in np.random.default_rng(4).uniform(10, 30, (50, 3)):
            out.write(f"{x:.2f},{y:.2f},{z:.2f}\n")
    write_annotations(tmp_path / f"{name}.csv", tmp_path / name, AnnotationOptions(**options), workers=0)
    return tmp_path / name


def test_annotation_collections_open_without_a_volume(tmp_path):
    """A collection alone frames the view by its own dimensions and bounds; one written in an
    image's voxels (its transform.json copy) opens in that image's world."""
    plain = annotations(tmp_path, "plain", resolution="2000,2000,4000")
    info = json.loads((plain / "info").read_text())
    state = viewer_state(served_datasets([plain]), BASE)
    (layer,) = state["layers"]
    assert layer["type"] == "annotation" and layer["source"] == f"precomputed://{BASE}/data/plain"
    assert state["dimensions"] == info["dimensions"]
    assert np.allclose(state["position"], (np.array(info["lower_bound"]) + np.array(info["upper_bound"])) / 2)

    nib.save(nib.Nifti1Image(brain(), np.diag([-2.0, 2, 2, 1])), tmp_path / "las.nii")
    streamconv.convert(tmp_path / "las.nii", tmp_path / "las", workers=0, voxel_order="file")
    placed = annotations(tmp_path, "placed", image=str(tmp_path / "las"))
    state = viewer_state(served_datasets([placed]), BASE)
    (layer,) = state["layers"]
    bounds = json.loads((placed / "info").read_text())
    corners = np.array([bounds["lower_bound"], bounds["upper_bound"]], float)
    assert state["dimensions"] == {a: [0.001, "m"] for a in "xyz"}
    assert np.allclose(state["position"], to_world(layer, corners).mean(axis=0))
    assert to_world(layer, corners)[:, 0].max() <= 0  # x flipped: the voxels lie at negative world x

    result = subprocess.run([STREAMCONV, "view", "--base-url", "https://data.example/", str(plain), str(placed)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout.rsplit("\n", 2)[0])
    assert [layer["type"] for layer in printed["layers"]] == ["annotation", "annotation"]


@needs_chromium
def test_two_channels_render_as_a_composite_each_with_its_range(tmp_path):
    """Channel 0 in [0, 1] on the left half, channel 1 in [100, 500] on the right: with one range
    for both, one half would stay black; with its own, each shows in its colour (magenta, green)."""
    from test_view_world import shown

    data = np.zeros((40, 40, 40, 2), np.float32)
    data[:20, ..., 0] = np.random.default_rng(5).uniform(0.5, 1, (20, 40, 40))
    data[20:, ..., 1] = np.random.default_rng(6).uniform(300, 500, (20, 40, 40))
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "two.nii")
    streamconv.convert(tmp_path / "two.nii", tmp_path / "two", workers=0)

    def colours(panel: np.ndarray) -> tuple[float, float]:
        r, g, b = (panel[..., c] for c in range(3))
        return float(((r > 90) & (b > 90) & (g < 60)).mean()), float(((g > 90) & (r < 60) & (b < 60)).mean())

    driver = browser()
    try:
        panel = shown(driver, tmp_path / "two", tmp_path / "two.png", lambda p: min(colours(p)) > 0.1)
    finally:
        driver.quit()
    assert min(colours(panel)) > 0.1, (colours(panel), tmp_path / "two.png")
