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
finest scale it holds); 3 or 4 channels of uint8 are shown as colour.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import DataError
from ..format.info import VolumeInfo
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

    def to_world(self, voxel: Sequence[float]) -> np.ndarray:
        """World coordinates (in the view's unit) of a point in voxel coordinates of scale 0."""
        nm = np.asarray(voxel, float) * self.resolution
        if self.transform is not None:
            nm = self.transform[:3, :3] @ nm + self.transform[:3, 3]
        return nm * NM / WORLD_UNIT


def load(dataset: Readable) -> Shown:
    """An output's info, transform and statistics; a bad info or transform is a one-line error."""
    data = dataset.info()
    if data is None:
        raise DataError(f"{dataset.name}: no info")
    info = VolumeInfo.parse(data, f"{dataset.name}/info")
    return Shown(dataset.name, info, parse_transform(dataset.read(TRANSFORM_FILE), dataset.name),
                 read_stats_json(dataset.read(STATS_FILE)))


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


def viewer_state(shown: Sequence[Shown], source_url: Callable[[str], str]) -> dict:
    """The state: one layer per output (`source_url(name)`: where its data is read), the view
    centred on the first and fitted to it."""
    first = shown[0]
    placed = any(s.transform is not None for s in shown)
    layers = [LAYERS.get(s.info.type, image_layer)(s, source(s, source_url(s.name), placed)) for s in shown]
    geometry = first.info.geometry[0]
    if placed:
        dimensions = {axis: [WORLD_UNIT, "m"] for axis in "xyz"}
        corners = np.array([[(o + s * c) for o, s, c in zip(geometry.voxel_offset, geometry.size, corner)]
                            for corner in np.ndindex(2, 2, 2)])
        world = np.array([first.to_world(c) for c in corners])
        position = [float(v) for v in world.mean(axis=0)]
        extent = float(np.ptp(world, axis=0).max())  # in the view's unit
    else:  # as before: the first output's voxels
        dimensions = {axis: [r * NM, "m"] for axis, r in zip("xyz", geometry.resolution)}
        position = [o + s / 2 for o, s in zip(geometry.voxel_offset, geometry.size)]
        extent = max(s * r for s, r in zip(geometry.size, geometry.resolution)) / min(geometry.resolution)
    return {"dimensions": dimensions, "position": position, "crossSectionScale": extent / PANEL,
            "projectionScale": extent * 1.5, "layers": layers, "layout": "4panel"}


def source(shown: Shown, url: str, placed: bool) -> str | dict:
    """A layer's source: the URL, with the output's placement as a transform when it has one.
    `placed`: the view is in world space (some output has a transform)."""
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
    """An image: colour for 3 or 4 channels of uint8, else grey with the range of its values."""
    layer: dict = {"type": "image", "source": src, "name": shown.name}
    if shown.info.num_channels in (3, 4) and shown.info.data_type == "uint8":
        layer["shader"] = RGB_SHADER if shown.info.num_channels == 3 else RGBA_SHADER
        return layer
    limits = value_range(shown.stats)
    if limits is not None:
        layer["shader"] = GREY_SHADER
        layer["shaderControls"] = {"normalized": {"range": list(limits)}}
    return layer


def segmentation_layer(shown: Shown, src: str | dict) -> dict:
    """A segmentation; its meshed segments are added by the caller, who can list the mesh directory."""
    return {"type": "segmentation", "source": src, "name": shown.name}


#: the layer of each volume type (`info["type"]`)
LAYERS: dict[str, Callable[[Shown, str | dict], dict]] = {"image": image_layer, "segmentation": segmentation_layer}


def value_range(stats: dict | None) -> tuple[float, float] | None:
    """The robust range of channel 0 on the finest scale `stats.json` holds: the 0.5 and 99.5
    percentiles, the minimum and maximum if those are equal, None if nothing is known."""
    if not stats or not stats["scales"]:
        return None
    try:
        channel = stats["scales"][0]["channels"][0]
        low, high = (channel["percentiles"][f"{p:g}"] for p in PERCENTILES)
        if low is None or high is None:
            return None
        if low >= high:
            low, high = channel["min"], channel["max"]
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
