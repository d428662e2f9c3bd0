"""The info model: what we write parses back to the same bytes, other writers' members are
kept, and an info that would make us misread data or write outside the dataset is refused with
the file and the problem named."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from streamconv.encodings import make_codec
from streamconv.errors import DataError
from streamconv.format.info import VolumeInfo
from streamconv.format.pyramid import plan_pyramid

STREAMCONV = str(Path(sys.executable).with_name("streamconv"))


def info_of(**scale: object) -> bytes:
    members = {"key": "s0", "size": [10, 10, 10], "resolution": [1, 1, 1], "chunk_sizes": [[8, 8, 8]],
               "encoding": "raw", **scale}
    return json.dumps({"type": "image", "data_type": "uint8", "num_channels": 1,
                       "scales": [members]}).encode()


@pytest.mark.parametrize("encoding, dtype, kind", [("raw", "uint8", "image"), ("jpeg", "uint8", "image"),
                                                   ("compressed_segmentation", "uint16", "segmentation")])
def test_what_we_write_parses_back_to_the_same_bytes(tmp_path, encoding, dtype, kind):
    codec = make_codec(encoding, cseg_block_size=(4, 8, 2))
    _, info = plan_pyramid((300, 200, 90), (400, 400, 1200), dtype, 1, kind, 32, None, codec)
    again = VolumeInfo.parse(info.to_json(), "info")
    assert again == info and again.to_json() == info.to_json()
    assert [s.factor for s in again.geometry][1:] == [s.factor for s in info.geometry][1:]


def test_members_of_other_writers_are_kept_in_order():
    sharding = {"@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": 1, "hash": "murmurhash3_x86_128",
                "minishard_bits": 2, "shard_bits": 3, "minishard_index_encoding": "gzip",
                "data_encoding": "raw"}
    raw = json.loads(info_of(sharding=sharding))
    raw["mesh"], raw["segment_properties"] = "mesh", "names"
    info = VolumeInfo.parse(json.dumps(raw).encode(), "info")
    assert info.get("mesh") == "mesh" and info.get("segment_properties") == "names"
    written = json.loads(info.with_member("mesh", "meshes").to_json())
    assert list(written)[-2:] == ["mesh", "segment_properties"] and written["mesh"] == "meshes"
    assert written["scales"][0]["sharding"] == sharding  # read as a ShardingSpec, written back
    assert info.scales[0].sharding is not None and info.scales[0].sharding.shard_bits == 3


@pytest.mark.parametrize("scale, problem", [
    ({"key": "../../escape"}, "key"), ({"key": "/tmp/x/deep"}, "key"), ({"key": "a/./b"}, "key"),
    ({"key": ".streamconv"}, "key"), ({"size": [2 ** 40, 0, 1]}, "size"), ({"size": [1, 2]}, "size"),
    ({"resolution": [1, -1, 1]}, "resolution"), ({"chunk_sizes": []}, "chunk_sizes"),
    ({"encoding": "webp"}, "webp"), ({"compressed_segmentation_block_size": [8, 0, 8],
                                      "encoding": "compressed_segmentation"}, "block_size"),
])
def test_an_info_that_misleads_is_refused(scale, problem):
    with pytest.raises(DataError, match=f"somewhere/info: not a valid precomputed info file.*{problem}"):
        VolumeInfo.parse(info_of(**scale), "somewhere/info")


@pytest.mark.parametrize("top", [{"data_type": "bool"}, {"data_type": "object"}, {"num_channels": 0},
                                 {"type": "mesh"}, {"scales": []}])
def test_top_level_members_are_checked(top):
    raw = {**json.loads(info_of()), **top}
    with pytest.raises(DataError, match="not a valid precomputed info file"):
        VolumeInfo.parse(json.dumps(raw).encode(), "info")
