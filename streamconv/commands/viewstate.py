"""Neuroglancer's viewer state for outputs: layers placed in world space, with their contrast.

Every output becomes a layer (one function per layer kind: `image_layer`, `segmentation_layer`;
a new kind adds its own). Each layer's source carries the output's placement when it has a
`transform.json` (neuroglancer-scripts' convention: a 4x4 matrix from voxel-corner coordinates
in nanometres to world coordinates in nanometres). Neuroglancer's precomputed source has voxel
coordinates (voxel `i` spans `[i, i + 1)`, `voxel_offset` included) in units of scale 0's
resolution; a source `transform` in the state is a matrix from those coordinates to its
`outputDimensions`, applied to the voxel coordinates expressed in the output's unit (scaled by
the resolution). So the layer's matrix is the transform's linear part as it is, and its
translation in the view's world unit (millimetres, as NIfTI's world): a RAS and a LAS
conversion of one brain overlay exactly, oblique affines included. An output without
`transform.json` (older outputs) keeps Neuroglancer's default placement.

Image layers get the shader's range from `stats.json` (the 0.5 and 99.5 percentiles of the
finest scale it holds); 3 or 4 channels of uint8 are shown as colour; 2 to 4 (`COLOURS`) other
channels as a colour composite with one `invlerp` per channel, each with its own range (the
default shader has one `invlerp`, so one range for all).

An output of meshes alone (`mesh-to-precomputed` into a dataset whose info has no scales,
`Surfaces`) is a segmentation layer whose source is its mesh directory (Neuroglancer reads a
scaleless info as a broken volume, but opens a `neuroglancer_legacy_mesh` or
`neuroglancer_multilod_draco` directory as a mesh source, in nm: legacy vertices are nm, and the
multi-resolution info's `transform` takes its stored positions to nm): `--onto` put the vertices
in nm of the image's grid and kept the image's `transform.json`, so the same placement puts the
surface on the image; a label volume's meshes (nm of its grid) published alone with its
`transform.json` lie where its voxels do.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..annotations.layer import collection_info
from ..errors import DataError
from ..format.info import VolumeInfo
from ..format.mesh_info import parse_mesh_info
from ..layout.statsfile import FILE as STATS_FILE
from ..layout.statsfile import PERCENTILES, read_stats_json

TRANSFORM_FILE = "transform.json"
WORLD_UNIT = 1e-3  # metres: the view's axes are in millimetres, as NIfTI's world
NM = 1e-9
PANEL = 300  # pixels of a slice panel in the default 4-panel layout, roughly


class Readable(Protocol):
    """What the state needs of an output: its name and its small files."""

    name: str

    def info(self) -> bytes | None: ...

    def read(self, key: str) -> bytes | None: ...


@dataclass(frozen=True)
class Shown:
    """An output as the state shows it."""

    name: str
    info: VolumeInfo
    transform: np.ndarray | None  # 4x4, voxel-corner nm -> world nm; None: no transform.json
    stats: dict | None  # stats.json, when present and of a version we read

    @property
    def resolution(self) -> np.ndarray:
        return np.asarray(self.info.geometry[0].resolution, float)

    @property
    def mesh(self) -> str | None:
        """The mesh directory of a segmentation that names one."""
        mesh = self.info.get("mesh")
        return mesh if self.info.type == "segmentation" and isinstance(mesh, str) else None

    @property
    def box(self) -> Box:
        geometry = self.info.geometry[0]
        lower = np.asarray(geometry.voxel_offset, float)
        return Box(lower, lower + geometry.size, self.resolution, self.transform)

    def layer(self, url: str) -> dict:
        return LAYERS.get(self.info.type, image_layer)(self, source(self, url))


@dataclass(frozen=True)
class Surfaces:
    """An output of meshes alone: its mesh directory and the transform.json it keeps."""

    name: str
    mesh: str
    transform: np.ndarray | None
    box = None  # the view is framed by a volume or a collection (reading every fragment: no)

    def layer(self, url: str) -> dict:
        src = f"{url}/{self.mesh}"
        if self.transform is None:
            return {"type": "segmentation", "source": src, "name": self.name}
        # a mesh source is in nm (legacy vertices; multilod through its info's transform): 1 nm "voxels"
        return {"type": "segmentation", "source": placed_source(src, self.transform, (1.0, 1.0, 1.0)),
                "name": self.name}


@dataclass(frozen=True)
class Box:
    """What frames the view: a box in a source's coordinates (`lower`, `upper`), their unit in
    nm per axis, and the source's transform.json."""

    lower: np.ndarray
    upper: np.ndarray
    resolution: np.ndarray
    transform: np.ndarray | None

    def world(self) -> np.ndarray:
        """The 8 corners in world coordinates (the view's unit)."""
        corners = np.array([np.where(c, self.upper, self.lower) for c in np.ndindex(2, 2, 2)]) * self.resolution
        if self.transform is not None:
            corners = corners @ self.transform[:3, :3].T + self.transform[:3, 3]
        return corners * NM / WORLD_UNIT


def load(dataset: Readable) -> Shown | Surfaces:
    """An output's info, transform and statistics; a bad info or transform is a one-line error."""
    data = dataset.info()
    if data is None:
        raise DataError(f"{dataset.name}: no info")
    info = parse_mesh_info(data, f"{dataset.name}/info")
    placed = parse_transform(dataset.read(TRANSFORM_FILE), dataset.name)
    if isinstance(info, VolumeInfo):
        return Shown(dataset.name, info, placed, read_stats_json(dataset.read(STATS_FILE)))
    mesh = info.get("mesh")
    if not isinstance(mesh, str):
        raise DataError(f"{dataset.name}/info describes no volume (no scales) and no mesh")
    return Surfaces(dataset.name, mesh, placed)


def collection_box(dataset: Readable) -> Box | None:
    """A collection's bounds in its own coordinates, with the transform.json it keeps
    (`annotations --image`: the image's); None for dimensions other than x, y, z in metres."""
    info = collection_info(dataset.info()) or {}
    dims = info.get("dimensions", {})
    try:
        if sorted(dims) != ["x", "y", "z"] or any(dims[a][1] != "m" for a in "xyz"):
            return None
        return Box(np.asarray(info["lower_bound"], float), np.asarray(info["upper_bound"], float),
                   np.array([float(dims[a][0]) / NM for a in "xyz"]),
                   parse_transform(dataset.read(TRANSFORM_FILE), dataset.name))
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def parse_transform(raw: bytes | None, where: str) -> np.ndarray | None:
    """neuroglancer-scripts' `transform.json`: 4 rows of 4 finite numbers, the last (0, 0, 0, 1)."""
    if raw is None:
        return None
    try:
        matrix = np.array(json.loads(raw), dtype=float)
    except (ValueError, TypeError):
        raise DataError(f"{where}/{TRANSFORM_FILE} is not a 4x4 matrix of numbers") from None
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all() or not np.allclose(matrix[3], (0, 0, 0, 1)) \
            or abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
        raise DataError(f"{where}/{TRANSFORM_FILE} is not an invertible 4x4 affine matrix")
    return matrix


def viewer_state(shown: Sequence[Shown | Surfaces], source_url: Callable[[str], str],
                 others: Sequence[Box] = ()) -> dict:
    """The state: one layer per output (`source_url(name)`: where its data is read), the view
    centred on the first volume and fitted to it, or on the first of `others` (what else the
    view shows: annotation collections) when no volume does."""
    boxes = [b for b in (s.box for s in shown) if b is not None] + list(others)
    placed = any(s.transform is not None for s in shown) or any(b.transform is not None for b in others)
    state: dict = {"dimensions": {axis: [WORLD_UNIT if placed else NM, "m"] for axis in "xyz"},
                   "layers": [s.layer(source_url(s.name)) for s in shown], "layout": "4panel"}
    if not boxes:  # meshes alone: the world's origin
        return state
    first = boxes[0]
    if placed:
        world = first.world()
        position = [float(v) for v in world.mean(axis=0)]
        extent = float(np.ptp(world, axis=0).max())  # in the view's unit
    else:  # as before: the first output's voxels
        state["dimensions"] = {axis: [r * NM, "m"] for axis, r in zip("xyz", first.resolution)}
        position = [float(v) for v in (first.lower + first.upper) / 2]
        extent = float(((first.upper - first.lower) * first.resolution).max() / first.resolution.min())
    return {**state, "position": position, "crossSectionScale": extent / PANEL, "projectionScale": extent * 1.5}


def source(shown: Shown, url: str) -> str | dict:
    """A layer's source: the URL, with the output's placement as a transform when it has one."""
    if shown.transform is None:
        return url
    return placed_source(url, shown.transform, shown.resolution, shown.info.num_channels)


def placed_source(url: str, transform: np.ndarray, res: Sequence[float] | np.ndarray, channels: int = 1) -> dict:
    """A source at `url` whose coordinates are voxels of `res` nm, placed by `transform`
    (`transform.json`: voxel-corner nm -> world nm): a volume, or an annotation collection
    written in a volume's voxels."""
    matrix = np.zeros((3, 4))
    # Neuroglancer first expresses a voxel coordinate in the output's unit (times the input
    # dimension's scale, the resolution), then applies the matrix: so its linear part is the
    # transform's own, and only the translation changes unit (checked in a real browser:
    # tests/test_view_world.py)
    matrix[:, :3] = transform[:3, :3]
    matrix[:, 3] = transform[:3, 3] * NM / WORLD_UNIT
    rows = [[_number(v) for v in row] for row in matrix]
    outputs: dict = {axis: [WORLD_UNIT, "m"] for axis in "xyz"}
    inputs: dict = {axis: [_number(r * NM), "m"] for axis, r in zip("xyz", res)}  # the source's own
    if channels > 1:  # the channel dimension stays as it is
        rows = [row[:3] + [0.0] + row[3:] for row in rows] + [[0.0, 0.0, 0.0, 1.0, 0.0]]
        outputs["c^"] = inputs["c^"] = [1, ""]
    return {"url": url, "transform": {"matrix": rows, "outputDimensions": outputs, "inputDimensions": inputs}}


def _number(value: float) -> float:
    """Rounded to 12 significant digits: 0.1 stays 0.1 in the URL, not 0.10000000000000002."""
    return float(f"{value:.12g}")


RGB_SHADER = ("void main() {\n  emitRGB(vec3(toNormalized(getDataValue(0)), toNormalized(getDataValue(1)), "
              "toNormalized(getDataValue(2))));\n}\n")
RGBA_SHADER = ("void main() {\n  emitRGBA(vec4(toNormalized(getDataValue(0)), toNormalized(getDataValue(1)), "
               "toNormalized(getDataValue(2)), toNormalized(getDataValue(3))));\n}\n")
GREY_SHADER = "#uicontrol invlerp normalized\nvoid main() {\n  emitGrayscale(normalized());\n}\n"


def image_layer(shown: Shown, src: str | dict) -> dict:
    """An image: colour for 3 or 4 channels of uint8, a composite of other channels (each with its
    own range), else grey with the range of its values."""
    layer: dict = {"type": "image", "source": src, "name": shown.name}
    channels = shown.info.num_channels
    if channels in (3, 4) and shown.info.data_type == "uint8":
        layer["shader"] = RGB_SHADER if channels == 3 else RGBA_SHADER
        return layer
    limits = [value_range(shown.stats, c) for c in range(channels)]
    if 1 < channels <= len(COLOURS):
        layer["shader"] = composite_shader(channels)
        layer["shaderControls"] = {f"ch{c}": {"range": list(r), "channel": [c]}
                                   for c, r in enumerate(limits) if r is not None}
    elif limits[0] is not None:  # many channels (a time series): one at a time, one range for all
        known = [r for r in limits if r is not None]
        layer["shader"] = GREY_SHADER
        layer["shaderControls"] = {"normalized": {"range": [min(r[0] for r in known), max(r[1] for r in known)]}}
    return layer


#: the colours of a composite's channels, in order (a channel's own `invlerp` sets its range)
COLOURS = ("1.0, 0.0, 1.0", "0.0, 1.0, 0.0", "0.0, 0.6, 1.0", "1.0, 0.6, 0.0")


def composite_shader(channels: int) -> str:
    """Channels added, each in its colour (magenta and green for two), each through its own
    `invlerp` control `ch<c>` bound to that channel."""
    controls = "".join(f"#uicontrol invlerp ch{c}(channel={c})\n" for c in range(channels))
    terms = " + ".join(f"ch{c}() * vec3({COLOURS[c]})" for c in range(channels))
    return f"{controls}void main() {{\n  emitRGB(min({terms}, vec3(1.0)));\n}}\n"


def segmentation_layer(shown: Shown, src: str | dict) -> dict:
    """A segmentation; its meshed segments are added by the caller, who can list the mesh directory."""
    return {"type": "segmentation", "source": src, "name": shown.name}


#: the layer of each volume type (`info["type"]`)
LAYERS: dict[str, Callable[[Shown, str | dict], dict]] = {"image": image_layer, "segmentation": segmentation_layer}


def value_range(stats: dict | None, channel: int = 0) -> tuple[float, float] | None:
    """The robust range of a channel on the finest scale `stats.json` holds: the 0.5 and 99.5
    percentiles, the minimum and maximum if those are equal, None if nothing is known."""
    if not stats or not stats["scales"]:
        return None
    try:
        values = stats["scales"][0]["channels"][channel]
        low, high = (values["percentiles"][f"{p:g}"] for p in PERCENTILES)
        if low is None or high is None:
            return None
        if low >= high:
            low, high = values["min"], values["max"]
        if low >= high:  # one value: around it
            low, high = low - 1, high + 1
        return float(low), float(high)
    except (KeyError, IndexError, TypeError):
        return None


def state_url(client: str, state: dict) -> str:
    """A Neuroglancer client's address with the state after `#!`; JSON punctuation stays readable,
    since a user may copy, read or edit the URL."""
    fragment = urllib.parse.quote(json.dumps(state, separators=(",", ":")), safe="{}[]:,\"/")
    return f"{client}#!{fragment}"
