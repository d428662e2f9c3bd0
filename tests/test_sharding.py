"""Sharded output: the hashing and Morton codes of the format notes, shard files that
tensorstore reads equal to the unsharded conversion for every scale, encoding and kind of input,
shard files decoded by a reader written here from the spec alone, and volumes tensorstore
sharded read by our reader."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import dipy.data
import numpy as np
import pytest
import tensorstore as ts
from nilearn.datasets import MNI152_FILE_PATH

import streamconv
from streamconv.commands.convert_chunks import convert_chunks
from streamconv.commands.verify import verify
from streamconv.errors import DataError, UsageError
from streamconv.format.geometry import Box, Scale
from streamconv.format.info import VolumeInfo
from streamconv.format.murmur import murmurhash3_x86_128_low64
from streamconv.format.sharding import ShardingSpec, chunk_id
from streamconv.format.sharding_choice import parse_sharding
from streamconv.layout.dataset import open_dataset
from streamconv.layout.shardfile import Entry, write_shard
from streamconv.stores.local import LocalStore

sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
from make_sections import make_sections
from make_volume import make_volume

STREAMCONV = str(Path(sys.executable).with_name("streamconv"))


def tensorstore_scales(out: Path) -> list[np.ndarray]:
    info = json.loads((out / "info").read_text())
    return [ts.open({"driver": "neuroglancer_precomputed", "scale_index": k,
                     "kvstore": {"driver": "file", "path": f"{out}/"}}).result().read().result()
            for k in range(len(info["scales"]))]


def output_files(out: Path) -> list[Path]:
    """The pyramid's files (not our journal, nor the files beside it: transform.json,
    placement.json, stats.json)."""
    return [p for p in out.rglob("*") if p.is_file() and ".streamconv" not in p.parts
            and p.name not in ("transform.json", "placement.json", "stats.json")]


# The format notes' examples (section 5).

def test_murmurhash_matches_the_test_vectors():
    assert [murmurhash3_x86_128_low64(v) for v in (0, 1, 42)] == [
        0x4772b084e028ae41, 0xe8bd67d616d4ce9a, 0xc20b94f95119f47a]


@pytest.mark.parametrize("grid, cell, code", [((2, 2, 2), (1, 0, 0), 1), ((2, 2, 2), (0, 1, 0), 2),
                                              ((2, 2, 2), (0, 0, 1), 4), ((4, 2, 1), (3, 1, 0), 7),
                                              ((1, 3, 5), (0, 1, 1), 3), ((1, 3, 5), (0, 2, 4), 20),
                                              ((538, 618, 805), (537, 617, 804), 1007359747)])
def test_compressed_morton_codes(grid, cell, code):
    scale = Scale("s", grid, (1.0, 1.0, 1.0), (1, 1, 1), (1, 1, 1))
    assert chunk_id(scale, Box(cell, (cell[0] + 1, cell[1] + 1, cell[2] + 1))) == code


def test_the_worked_example_shard_byte_for_byte(tmp_path):
    store = LocalStore(tmp_path)
    chunks = {2: b"AB", 4: b"CDE", 3: b"Z"}
    store.write("src", b"ABCDEZ")
    offsets = {2: 0, 4: 2, 3: 5}
    spec = ShardingSpec(0, 1, 0, minishard_index_encoding="raw", data_encoding="raw")
    entries = [Entry(i, len(chunks[i]), "src", offsets[i]) for i in sorted(chunks)]
    write_shard(store, "0.shard", spec, entries)
    expected = bytes.fromhex(
        "0500000000000000 3500000000000000 3600000000000000 4e00000000000000 4142434445"
        "0200000000000000 0200000000000000 0000000000000000 0000000000000000"
        "0200000000000000 0300000000000000 5a 0300000000000000 3500000000000000 0100000000000000"
        .replace(" ", ""))
    assert (tmp_path / "0.shard").read_bytes() == expected


def test_sharding_options_are_checked():
    assert parse_sharding("off").spec(Scale("s", (9, 9, 9), (1, 1, 1), (4, 4, 4), (1, 1, 1)), 64, True) is None
    for bad in ("on", "1,2", "1,40,40", "a,b,c"):
        with pytest.raises(UsageError):
            parse_sharding(bad)
    with pytest.raises(DataError, match="sharding"):
        VolumeInfo.parse(json.dumps({"data_type": "uint8", "num_channels": 1, "scales": [
            {"key": "s", "size": [4, 4, 4], "resolution": [1, 1, 1], "chunk_sizes": [[4, 4, 4]],
             "sharding": {"@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": 0,
                          "minishard_bits": 0, "shard_bits": 0, "hash": "md5"}}]}).encode(), "info")


def test_auto_gives_compact_shards_and_one_file_to_small_scales():
    from streamconv.format.sharding_choice import AutoSharding

    big = Scale("s", (6572, 5711, 7404), (1.0, 1.0, 1.0), (64, 64, 64), (1, 1, 1))
    spec = AutoSharding(2 << 30).spec(big, 64 ** 3, True)
    assert spec.preshift_bits + spec.minishard_bits == 13  # 8192 chunks of 256 KiB: 2 GiB
    assert spec.preshift_bits == 9 and spec.data_encoding == "gzip"  # --gzip
    small = Scale("s", (100, 80, 90), (1.0, 1.0, 1.0), (64, 64, 64), (1, 1, 1))
    assert AutoSharding(2 << 30).spec(small, 64 ** 3, False).shard_bits == 0
    assert AutoSharding(2 << 30).spec(small, 64 ** 3, False).data_encoding == "raw"


# Our output read by tensorstore, equal to the unsharded conversion.

def convert_both(src: Path | str, tmp_path: Path, **options) -> tuple[Path, Path]:
    plain, sharded = tmp_path / "plain", tmp_path / "sharded"
    streamconv.convert(src, plain, workers=2, **options)
    streamconv.convert(src, sharded, workers=2, sharding="auto", shard_size="1MiB", **options)
    return plain, sharded


def assert_same_through_tensorstore(plain: Path, sharded: Path, shards_at_least: int = 2) -> None:
    info = json.loads((sharded / "info").read_text())
    assert all("sharding" in s for s in info["scales"])
    for k, (a, b) in enumerate(zip(tensorstore_scales(plain), tensorstore_scales(sharded))):
        assert a.shape == b.shape and np.array_equal(a, b), f"scale {k}"
    files = output_files(sharded)
    assert all(f.suffix == ".shard" or f.name == "info" for f in files)
    assert len(files) - 1 >= shards_at_least
    assert not (sharded / ".streamconv" / "spool").exists()


def test_mni_template(tmp_path):
    plain, sharded = convert_both(MNI152_FILE_PATH, tmp_path)
    assert_same_through_tensorstore(plain, sharded)
    assert verify(MNI152_FILE_PATH, sharded).ok


def test_anisotropic_int16_volume(tmp_path):
    src = dipy.data.get_fnames(name="aniso_vox")
    plain, sharded = convert_both(src, tmp_path, chunk_size=32)
    assert_same_through_tensorstore(plain, sharded)


@pytest.mark.parametrize("dtype", ["uint32", "uint64"])
def test_label_volume_in_compressed_segmentation(tmp_path, dtype):
    src = make_volume(tmp_path / "labels.nii", (160, 130, 100), "uint32", labels=40)
    if dtype == "uint64":  # make_volume draws ids below 2^63 only for 32 bits: ids past 2^32 here
        import nibabel as nib
        image = nib.load(src)
        wide = np.asarray(image.dataobj).astype(np.uint64) * np.uint64(3 << 32) + np.uint64(5)
        src = tmp_path / "labels64.nii"
        nib.save(nib.Nifti1Image(wide, image.affine, dtype=np.uint64), src)
    plain, sharded = convert_both(src, tmp_path, volume_type="segmentation",
                                  encoding="compressed_segmentation", chunk_size=32)
    assert_same_through_tensorstore(plain, sharded)
    spec = json.loads((sharded / "info").read_text())["scales"][0]["sharding"]
    assert spec["data_encoding"] == "raw" and spec["minishard_index_encoding"] == "gzip"  # no --gzip


def test_jpeg_slice_stack_in_ria_orientation(tmp_path):
    make_sections(tmp_path / "sections", 40, width=300, height=260, workers=2)
    plain, sharded = convert_both(tmp_path / "sections", tmp_path, encoding="jpeg",
                                  input_orientation="RIA", resolution="20um", chunk_size=32)
    assert_same_through_tensorstore(plain, sharded)
    spec = json.loads((sharded / "info").read_text())["scales"][0]["sharding"]
    assert spec["data_encoding"] == "raw"


def test_skip_empty_leaves_empty_chunks_out_of_the_shards(tmp_path):
    data = np.zeros((96, 96, 96), np.uint8)
    data[:30, :30, :30] = 7
    import nibabel as nib
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii")
    out = tmp_path / "out"
    streamconv.convert(tmp_path / "v.nii", out, workers=0, chunk_size=32, sharding="0,0,0",
                       skip_empty=True, max_scales=1)
    chunks = spec_reader(out, 0)
    assert list(chunks) == [0]  # one chunk of 27 holds data
    assert np.array_equal(tensorstore_scales(out)[0][..., 0].transpose(2, 1, 0), data.transpose(2, 1, 0))


# A reader written from the spec alone (format notes 5.4): shard index, delta-coded minishard
# indexes, gzip members.

def spec_reader(out: Path, level: int, decode: bool = True) -> dict[int, bytes]:
    """Every chunk of a scale: id -> stored chunk bytes (data encoding undone if `decode`)."""
    scale = json.loads((out / "info").read_text())["scales"][level]
    sharding = scale["sharding"]
    minishards = 2 ** sharding["minishard_bits"]
    chunks: dict[int, bytes] = {}
    for path in sorted((out / scale["key"]).glob("*.shard")):
        data = path.read_bytes()
        table = np.frombuffer(data[:16 * minishards], "<u8").reshape(-1, 2)
        end = 16 * minishards
        for start, stop in table.tolist():
            if start == stop:
                continue
            index = data[end + start:end + stop]
            if sharding["minishard_index_encoding"] == "gzip":
                assert index[:2] == b"\x1f\x8b"  # RFC 1952, not a zlib stream
                index = gzip.decompress(index)
            rows = np.frombuffer(index, "<u8").reshape(3, -1)
            ids, position = np.cumsum(rows[0]), end
            for cid, delta, size in zip(ids.tolist(), rows[1].tolist(), rows[2].tolist()):
                position += delta
                chunk = data[position:position + size]
                position += size
                if sharding["data_encoding"] == "gzip":
                    assert chunk[:2] == b"\x1f\x8b"
                    chunk = gzip.decompress(chunk) if decode else chunk
                assert cid not in chunks
                chunks[cid] = chunk
    return chunks


def test_a_reader_from_the_spec_finds_every_chunk_of_the_unsharded_files(tmp_path):
    plain, sharded = convert_both(MNI152_FILE_PATH, tmp_path)
    info = open_dataset(plain)
    for level, scale in enumerate(info.scales):
        chunks = spec_reader(sharded, level)
        assert len(chunks) == scale.num_chunks
        for box in scale.chunks_in((0, 0, 0), scale.size):
            assert chunks[chunk_id(scale, box)] == (plain / scale.key / box.name).read_bytes()


@pytest.mark.parametrize("bits", ["1,2,3", "0,2,1"])
def test_shards_with_several_minishards_in_place_or_spooled(tmp_path, bits):
    """MNI's grid (4, 4, 3) has 6 Morton bits: 1,2,3 covers them (raw chunks written in place,
    4 minishards per shard, clipped edge chunks), 0,2,1 leaves 3 high bits to be ignored by
    the hash (spooled); the spec's reader finds every chunk file's bytes, tensorstore agrees."""
    plain, sharded = tmp_path / "plain", tmp_path / "sharded"
    streamconv.convert(MNI152_FILE_PATH, plain, workers=2)
    streamconv.convert(MNI152_FILE_PATH, sharded, workers=2, sharding=bits)
    scale = open_dataset(plain).scales[0]
    chunks = spec_reader(sharded, 0)
    assert len(chunks) == scale.num_chunks
    for box in scale.chunks_in((0, 0, 0), scale.size):
        assert chunks[chunk_id(scale, box)] == (plain / scale.key / box.name).read_bytes()
    assert_same_through_tensorstore(plain, sharded, shards_at_least=2)


def test_with_gzip_a_chunk_in_a_shard_is_the_gz_file_it_replaces(tmp_path):
    """--gzip gzips shard data as it gzips chunk files (same level, same bytes); without it
    the data is raw, as the chunk files would be."""
    plain, sharded = tmp_path / "plain", tmp_path / "sharded"
    streamconv.convert(MNI152_FILE_PATH, plain, workers=2, gzip=True, compresslevel=3)
    streamconv.convert(MNI152_FILE_PATH, sharded, workers=2, gzip=True, compresslevel=3, sharding="auto",
                       shard_size="1MiB")
    info = open_dataset(plain)
    for level, scale in enumerate(info.scales):
        assert json.loads((sharded / "info").read_text())["scales"][level]["sharding"]["data_encoding"] == "gzip"
        chunks = spec_reader(sharded, level, decode=False)
        for box in scale.chunks_in((0, 0, 0), scale.size):
            assert chunks[chunk_id(scale, box)] == (plain / scale.key / f"{box.name}.gz").read_bytes()
    whole = info.read(0, Box((0, 0, 0), info.scales[0].size))  # (c, z, y, x)
    assert np.array_equal(tensorstore_scales(sharded)[0], whole.transpose(3, 2, 1, 0))


# Volumes tensorstore sharded, read by us.

def test_a_volume_that_tensorstore_sharded_reads_back(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.integers(0, 60000, (70, 50, 40, 1), dtype=np.uint16)  # x, y, z, c
    out = tmp_path / "ts"
    store = ts.open({"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": f"{out}/"},
                     "create": True, "multiscale_metadata": {"data_type": "uint16", "num_channels": 1,
                                                             "type": "image"},
                     "scale_metadata": {"size": [70, 50, 40], "resolution": [1, 1, 1], "encoding": "raw",
                                        "chunk_size": [16, 16, 8],
                                        "sharding": {"@type": "neuroglancer_uint64_sharded_v1",
                                                     "preshift_bits": 1, "hash": "murmurhash3_x86_128",
                                                     "minishard_bits": 2, "shard_bits": 2,
                                                     "minishard_index_encoding": "gzip",
                                                     "data_encoding": "gzip"}}}).result()
    store.write(data).result()
    dataset = open_dataset(out)
    scale = dataset.scales[0]
    whole = dataset.read(0, Box((0, 0, 0), scale.size))
    assert np.array_equal(whole[0].transpose(2, 1, 0), data[..., 0])
    # convert-chunks unshards it, and shards it again our way
    convert_chunks(out, tmp_path / "plain", copy_info=True, sharding="off", workers=0)
    assert not list((tmp_path / "plain").rglob("*.shard"))
    convert_chunks(tmp_path / "plain", tmp_path / "again", copy_info=True, sharding="auto",
                   shard_size="64KiB", workers=2)
    assert np.array_equal(tensorstore_scales(tmp_path / "again")[0], data)


def test_cli_warns_about_many_files_and_takes_sharding(tmp_path):
    src = make_volume(tmp_path / "v.nii", (240, 240, 224), "uint8")
    many = subprocess.Popen([STREAMCONV, "convert", str(src), str(tmp_path / "many"), "--chunk-size", "4",
                             "--max-scales", "1", "--workers", "0", "--memory", "1GiB", "-q"],
                            stderr=subprocess.PIPE, text=True)
    assert many.stderr is not None
    first = many.stderr.readline()  # said at the start, before the long run
    many.kill()
    many.communicate()
    assert "201600 chunk files" in first and "--sharding auto" in first
    run = subprocess.run([STREAMCONV, "convert", str(src), str(tmp_path / "few"), "--sharding", "auto",
                          "--shard-size", "4MiB", "--memory", "1GiB", "-v"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "shard files written in place" in run.stderr  # raw: no spool
    assert f"chunks in {len(output_files(tmp_path / 'few')) - 1} shard files" in run.stderr.splitlines()[-1]
    assert "spool: up to" not in run.stderr
    assert len(output_files(tmp_path / "few")) < 10
    bad = subprocess.run([STREAMCONV, "convert", str(src), str(tmp_path / "bad"), "--sharding", "on"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--sharding" in bad.stderr


def test_the_steps_write_the_scales_an_edited_info_shards_and_read_them_back(tmp_path):
    """generate-scales-info, then an info edited to shard every scale: volume-to-precomputed
    writes sharded scale 0, compute-scales reads it back (the replay) and writes sharded scales."""
    out = tmp_path / "steps"
    for args in (["volume-to-precomputed", "--generate-info", MNI152_FILE_PATH, out],
                 ["generate-scales-info", out / "info_fullres.json", out]):
        subprocess.run([STREAMCONV, *map(str, args)], check=True, capture_output=True)
    info = json.loads((out / "info").read_text())
    for s in info["scales"]:
        s["sharding"] = {"@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": 0, "hash": "identity",
                         "minishard_bits": 1, "shard_bits": 1, "minishard_index_encoding": "gzip",
                         "data_encoding": "gzip"}
    (out / "info").write_text(json.dumps(info))
    for args in (["volume-to-precomputed", MNI152_FILE_PATH, out], ["compute-scales", out]):
        run = subprocess.run([STREAMCONV, *map(str, args)], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
    streamconv.convert(MNI152_FILE_PATH, tmp_path / "plain", workers=2)
    for k, (a, b) in enumerate(zip(tensorstore_scales(tmp_path / "plain"), tensorstore_scales(out))):
        assert np.array_equal(a, b), f"scale {k}"
    assert all(f.suffix in (".shard", ".json") or f.name == "info" for f in output_files(out))


def test_a_store_that_cannot_write_in_place_gets_the_same_volume_through_the_spool(tmp_path):
    """An object store writes no ranges: its raw shards are spooled, copied into place at
    assembly (`StreamWriter.copy`) and read back equal to the shards written in place."""
    import uuid

    from streamconv.stores import open_store

    url = f"memory://{uuid.uuid4().hex}/out"
    streamconv.convert(MNI152_FILE_PATH, url, workers=0, sharding="auto", shard_size="1MiB")
    streamconv.convert(MNI152_FILE_PATH, tmp_path / "local", workers=0, sharding="auto", shard_size="1MiB")
    remote, local = open_dataset(url), open_dataset(tmp_path / "local")
    assert not open_store(url).can.write_at and open_store(tmp_path / "local").can.write_at
    assert not list(open_store(url).list(".streamconv/spool"))
    for level, scale in enumerate(local.scales):
        whole = Box((0, 0, 0), scale.size)
        assert np.array_equal(remote.read(level, whole), local.read(level, whole)), f"scale {level}"
