"""The `info` file as one frozen, validated value: parsed once, written once.

Every reader and writer of an `info` goes through `VolumeInfo`: `VolumeInfo.parse` checks a
file someone else may have written (types, sizes, encodings, keys that stay inside the
dataset) and builds each scale's geometry and codec once; `to_json` writes the bytes. Members
we do not interpret (`mesh`, `segment_properties`, ...) are kept, in their order, after the
ones we do. A scale's `sharding` is a checked `ShardingSpec`.

`FullresInfo` is neuroglancer-scripts' `info_fullres.json`: the full-resolution part only,
written for the user to check or edit before `generate-scales-info` plans the scales.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..encodings import Codec, codec_for_scale
from ..errors import DataError, UsageError
from .dtypes import SUPPORTED
from .geometry import Scale, Vec3
from .sharding import ShardingSpec

VOLUME_TYPES = ("image", "segmentation")
MULTISCALE = "neuroglancer_multiscale_volume"
_TOP = ("@type", "type", "data_type", "num_channels", "scales")
_SCALE = ("key", "size", "voxel_offset", "resolution", "chunk_sizes", "encoding",
          "compressed_segmentation_block_size", "sharding")
_CODEC_OPTIONS = ("jpeg_quality", "png_level")  # other writers' encoder settings: dropped on re-encoding
_PATH_MEMBERS = ("mesh", "segment_properties")  # directories other writers name: kept, but checked

# Bounds on what an info (someone else's, perhaps hostile) may ask for: every product the
# engine forms from them stays an exact integer far below 2**63, and one chunk fits in memory.
MAX_EXTENT = 2 ** 32          # voxels along one axis (BigBrain: ~2**13)
MAX_VOXELS = 2 ** 50          # voxels in one scale
MAX_OFFSET = 2 ** 40          # |voxel_offset|
MAX_CHANNELS = 2 ** 12
MAX_CHUNK_BYTES = 2 ** 30     # one decoded chunk, all channels
MAX_RESOLUTION = 1e15         # nm per voxel
Members = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class ScaleInfo:
    """One scale of an info: its geometry, the codec of its chunks, members kept as they are."""

    scale: Scale
    codec: Codec
    more_chunk_sizes: tuple[Vec3, ...] = ()  # chunk_sizes after the first (readers may choose)
    extra: Members = ()
    sharding: ShardingSpec | None = None

    def to_dict(self) -> dict:
        members = self.scale.info()
        members["chunk_sizes"] += [list(c) for c in self.more_chunk_sizes]
        sharding = {} if self.sharding is None else {"sharding": self.sharding.to_dict()}
        return {**members, **self.codec.info(), **sharding, **dict(self.extra)}


@dataclass(frozen=True)
class VolumeInfo:
    type: str
    data_type: str
    num_channels: int
    scales: tuple[ScaleInfo, ...]
    extra: Members = ()

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data_type)

    @property
    def geometry(self) -> list[Scale]:
        """The scales' geometry, finest first."""
        return [s.scale for s in self.scales]

    def get(self, member: str, default: Any = None) -> Any:
        """A member we keep but do not interpret (`mesh`, `segment_properties`, ...)."""
        return dict(self.extra).get(member, default)

    def with_member(self, member: str, value: Any) -> VolumeInfo:
        extra = dict(self.extra)
        extra[member] = value
        return replace(self, extra=tuple(extra.items()))

    def with_codec(self, codec: Codec) -> VolumeInfo:
        """Every scale in another encoding, the data type as that encoding stores it."""
        dtype = type(codec).stored_dtype(self.dtype, self.type)
        return replace(self, data_type=dtype.name, scales=tuple(
            replace(s, codec=codec, extra=tuple((k, v) for k, v in s.extra if k not in _CODEC_OPTIONS))
            for s in self.scales))

    def with_sharding(self, specs: Sequence[ShardingSpec | None]) -> VolumeInfo:
        """Every scale with its sharding (None: plain chunk files)."""
        return replace(self, scales=tuple(replace(s, sharding=spec) for s, spec in zip(self.scales, specs)))

    def volume_part(self) -> dict:
        """What changes the chunks (not, say, the `mesh` that mesh-to-precomputed adds)."""
        return {k: v for k, v in self.to_dict().items() if k in _TOP[1:]}

    def to_dict(self) -> dict:
        return {"@type": MULTISCALE, "type": self.type, "data_type": self.data_type,
                "num_channels": self.num_channels, "scales": [s.to_dict() for s in self.scales],
                **dict(self.extra)}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict()).encode()

    @classmethod
    def build(cls, scales: Sequence[Scale], data_type: str, num_channels: int, volume_type: str,
              codec: Codec) -> VolumeInfo:
        """The info of a pyramid we plan, every scale in one encoding."""
        if volume_type not in VOLUME_TYPES:
            raise UsageError(f"--type must be one of {', '.join(VOLUME_TYPES)}, got {volume_type!r}")
        if volume_type == "segmentation" and num_channels != 1:
            raise UsageError(f"a segmentation must have one channel, the input has {num_channels}")
        return cls(volume_type, data_type, num_channels, tuple(ScaleInfo(s, codec) for s in scales))

    @classmethod
    def parse(cls, data: bytes, where: str) -> VolumeInfo:
        """Parse and check an info file; DataError names `where` and the first problem."""
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            return cls._from_dict(raw)
        except DataError as exc:
            raise DataError(f"{where}: not a valid precomputed info file ({exc})") from None
        except (ValueError, KeyError, TypeError, IndexError, OverflowError, RecursionError) as exc:
            raise DataError(f"{where}: not a valid precomputed info file ({_reason(exc)})") from None

    @classmethod
    def _from_dict(cls, raw: dict) -> VolumeInfo:
        if raw.get("@type", MULTISCALE) != MULTISCALE:
            raise ValueError(f"@type is {raw['@type']!r}, not {MULTISCALE}")
        volume_type = raw.get("type", "image")
        if volume_type not in VOLUME_TYPES:
            raise ValueError(f"type {volume_type!r} is not one of {', '.join(VOLUME_TYPES)}")
        data_type = raw["data_type"]
        if data_type not in SUPPORTED:
            raise ValueError(f"data_type {data_type!r} is not one of {', '.join(SUPPORTED)}")
        channels = raw["num_channels"]
        if not isinstance(channels, int) or isinstance(channels, bool) \
                or not 1 <= channels <= MAX_CHANNELS:
            raise ValueError(f"num_channels {channels!r} is not an integer from 1 to {MAX_CHANNELS}")
        item = channels * np.dtype(data_type).itemsize
        members = raw["scales"]
        if not isinstance(members, list) or not members:
            raise ValueError("no scales")
        if len(members) > 64:
            raise ValueError(f"{len(members)} scales (at most 64)")
        scales: list[ScaleInfo] = []
        for members_of in members:
            previous = scales[-1].scale.resolution if scales else None
            if not isinstance(members_of, dict):
                raise ValueError(f"scale {members_of!r} is not a JSON object")
            scales.append(_scale_from_dict(members_of, previous, item))
        keys = [s.scale.key for s in scales]
        if len(set(keys)) != len(keys):
            raise ValueError(f"two scales share a key ({', '.join(keys)})")
        extra = tuple((k, v) for k, v in raw.items() if k not in _TOP)
        for member in _PATH_MEMBERS:
            if isinstance(raw.get(member), str):
                check_key(raw[member], member)
        return cls(volume_type, data_type, channels, tuple(scales), extra)


def _scale_from_dict(raw: dict, previous: tuple[float, float, float] | None,
                     item: int) -> ScaleInfo:
    """One scale, every number bounded before anything is computed from it (`item`: bytes of
    one voxel, all channels)."""
    key = raw["key"]
    check_key(key)
    size = _triple(raw["size"], f"scale {key}: size", 1, MAX_EXTENT)
    if math.prod(size) > MAX_VOXELS:
        raise ValueError(f"scale {key}: size {list(size)} has more than 2**50 voxels")
    offset = _triple(raw.get("voxel_offset", [0, 0, 0]), f"scale {key}: voxel_offset",
                     -MAX_OFFSET, MAX_OFFSET)
    resolution = raw["resolution"]
    if not isinstance(resolution, list) or len(resolution) != 3 or not all(
            isinstance(r, (int, float)) and not isinstance(r, bool)
            and math.isfinite(r) and 0 < r <= MAX_RESOLUTION for r in resolution):
        raise ValueError(f"scale {key}: resolution {_short(resolution)} is not three positive "
                         "numbers (nm)")
    listed = raw["chunk_sizes"]
    if not isinstance(listed, list) or not listed or len(listed) > 64:
        raise ValueError(f"scale {key}: chunk_sizes is not a list of one to 64 chunk sizes")
    chunk_sizes = [_triple(c, f"scale {key}: chunk_sizes", 1, MAX_EXTENT) for c in listed]
    for chunk in chunk_sizes:
        if math.prod(chunk) * item > MAX_CHUNK_BYTES:
            raise ValueError(f"scale {key}: chunk size {list(chunk)} makes chunks of more than "
                             "1 GiB")
    factor = (1, 1, 1) if previous is None else tuple(
        max(1, round(r / p)) for r, p in zip(resolution, previous))
    scale = Scale(key, size, (float(resolution[0]), float(resolution[1]), float(resolution[2])),
                  chunk_sizes[0],
                  (factor[0], factor[1], factor[2]), offset)
    extra = tuple((k, v) for k, v in raw.items() if k not in _SCALE)
    sharding = None
    if "sharding" in raw:
        sharding = ShardingSpec.parse(raw["sharding"])
        if len(chunk_sizes) != 1:
            raise ValueError(f"scale {key}: a sharded scale has exactly one chunk size")
    return ScaleInfo(scale, codec_for_scale(raw), tuple(chunk_sizes[1:]), extra, sharding)


def _triple(value: Any, what: str, low: int, high: int) -> Vec3:
    if not isinstance(value, list) or len(value) != 3 or not all(
            isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in value):
        raise ValueError(f"{what} {_short(value)} is not three integers from {low} to {high}")
    return (value[0], value[1], value[2])


def _reason(exc: Exception) -> str:
    """What was wrong, in one line: a missing member is named as such."""
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]!r} member"
    return " ".join(str(exc).split())[:200]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_key(key: Any, what: str = "key") -> None:
    """The one check of every path taken from data (scale keys, mesh and segment-properties
    directories, fragment and manifest names): a relative path that stays inside its store, so
    that a hostile info cannot make us write or delete anywhere else. Refuses an absolute path,
    a `..`, `.` or empty segment, a backslash, a NUL, and our own state directory."""
    if not isinstance(key, str) or not key or len(key) > 1024 or key.startswith("/") \
            or "\\" in key or "\0" in key \
            or any(part in ("..", ".", "") for part in key.split("/")) \
            or key.split("/")[0] in (".streamconv", "info"):
        raise ValueError(f"{what} {_short(key)} is not a relative path inside the dataset")


@dataclass(frozen=True)
class FullresInfo:
    """`info_fullres.json`: what the input is at full resolution, for the user to edit."""

    type: str
    data_type: str
    num_channels: int
    size: Vec3
    resolution: tuple[float, float, float]
    encoding: dict  # the scale's encoding members, as written

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data_type)

    def to_json(self) -> bytes:
        info = {"type": self.type, "data_type": self.data_type, "num_channels": self.num_channels,
                "scales": [{**self.encoding, "size": list(self.size),
                            "resolution": list(self.resolution), "voxel_offset": [0, 0, 0]}]}
        return (json.dumps(info, indent=4) + "\n").encode()

    @classmethod
    def parse(cls, data: bytes, where: str) -> FullresInfo:
        try:
            full = json.loads(data)
            scale = full["scales"][0]
            size = [int(v) for v in scale["size"]]
            res = [float(v) for v in scale["resolution"]]
            dtype, channels = np.dtype(full["data_type"]), int(full.get("num_channels", 1))
            if len(size) != 3 or len(res) != 3 or not 1 <= min(size) <= max(size) <= MAX_EXTENT \
                    or math.prod(size) > MAX_VOXELS or not 1 <= channels <= MAX_CHANNELS \
                    or not all(math.isfinite(r) and 0 < r <= MAX_RESOLUTION for r in res):
                raise ValueError("size and resolution need three positive numbers in range, "
                                 f"num_channels one from 1 to {MAX_CHANNELS}")
        except (ValueError, KeyError, TypeError, IndexError, OverflowError, RecursionError) as exc:
            raise DataError(f"{where}: not a full-resolution info file ({_reason(exc)})") from None
        if dtype.name not in SUPPORTED:
            raise UsageError(f"{where}: data_type {dtype.name} is not one the format stores "
                             f"({', '.join(SUPPORTED)})")
        if any(scale.get("voxel_offset", [0, 0, 0])):
            raise UsageError(f"{where}: a non-zero voxel_offset is not supported")
        encoding = {k: v for k, v in scale.items() if k in _SCALE[5:]}
        return cls(full.get("type", "image"), dtype.name, channels, (size[0], size[1], size[2]),
                   (res[0], res[1], res[2]), encoding)
