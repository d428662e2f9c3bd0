"""Object stores: conversions into a real S3 server (moto, on loopback, started here) read back
by tensorstore equal to a local conversion, killed and resumed, refused while locked, and
completed through a proxy that answers some requests 503 or drops the connection."""

from __future__ import annotations

import functools
import http.client
import http.server
import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from loopback_s3 import S3, Proxy
from nilearn.datasets import MNI152_FILE_PATH
from test_resume import files, kill_and_resume

import streamconv
from streamconv.engine.journal import Lock
from streamconv.errors import StoreUnavailable, UsageError
from streamconv.stores import Location, StorageOptions, open_output, open_store
from streamconv.stores.retry import Retry

ts = pytest.importorskip("tensorstore")
STREAMCONV = str(Path(sys.executable).with_name("streamconv"))



@pytest.fixture
def s3_env(s3: S3, monkeypatch: pytest.MonkeyPatch) -> S3:
    """The server's environment in this process too (for stores opened by the test itself)."""
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    return s3


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("stack")
    rng = np.random.default_rng(3)
    for k in range(40):
        imagecodecs.imwrite(directory / f"s{k:02d}.png", rng.integers(0, 255, (70, 90), dtype=np.uint8))
    return directory


def local(tmp_path: Path, name: str, source: str | Path, *args: str) -> Path:
    out = tmp_path / name
    result = subprocess.run([STREAMCONV, "convert", str(source), str(out), "-q", *args], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return out


def read_scales(kvstore: dict) -> list[np.ndarray]:
    """Every scale as tensorstore reads it."""
    spec = {"driver": "neuroglancer_precomputed", "kvstore": kvstore}
    count = len(json.loads(ts.KvStore.open(kvstore).result().read("info").result().value)["scales"])
    return [ts.open({**spec, "scale_index": k}).result().read().result() for k in range(count)]


@pytest.mark.parametrize("kind", ["volume", "stack"])
def test_conversion_to_s3_reads_like_a_local_one(s3_env, tmp_path, stack, kind):
    s3 = s3_env  # tensorstore takes its credentials from the environment
    source, args = (MNI152_FILE_PATH, []) if kind == "volume" else (stack, ["--resolution", "20um",
                                                                            "--chunk-size", "16"])
    bucket = s3.bucket()
    result = s3.run("convert", str(source), f"s3://{bucket}/out", "-q", "--workers", "2", *args)
    assert result.returncode == 0, result.stderr
    reference = local(tmp_path, "ref", source, "--workers", "2", *args)
    assert s3.objects(bucket, "out") == files(reference)
    remote = read_scales({"driver": "s3", "bucket": bucket, "path": "out/", "endpoint": s3.endpoint,
                          "aws_region": "us-east-1"})
    mine = read_scales({"driver": "file", "path": f"{reference}/"})
    assert len(remote) == len(mine) > 1
    for a, b in zip(remote, mine):
        np.testing.assert_array_equal(a, b)


def test_gzip_chunks_carry_content_encoding_and_verify_reads_them(s3, tmp_path):
    bucket = s3.bucket()
    url = f"precomputed://s3://{bucket}/gz"
    assert s3.run("convert", MNI152_FILE_PATH, url, "-q", "--gzip", "--workers", "2").returncode == 0
    reference = local(tmp_path, "ref", MNI152_FILE_PATH, "--gzip", "--workers", "2")
    objects = s3.objects(bucket, "gz")
    assert objects == files(reference)
    chunks = [k for k in objects if k.endswith(".gz")]
    assert chunks and all(k.endswith(".gz") for k in objects
                          if k not in ("info", "transform.json", "placement.json", "stats.json"))
    for key in chunks[:5]:
        head = s3.client.head_object(Bucket=bucket, Key=f"gz/{key}")
        assert head["ContentEncoding"] == "gzip"
    assert "ContentEncoding" not in s3.client.head_object(Bucket=bucket, Key="gz/info")
    checked = s3.run("verify", MNI152_FILE_PATH, url)
    assert checked.returncode == 0 and checked.stderr.strip().endswith(": ok"), checked.stderr


def test_a_second_run_is_refused_while_the_first_holds_the_lock(s3_env, tmp_path):
    bucket = s3_env.bucket()
    store = open_output(f"s3://{bucket}/out")
    assert store.can.lock and store.create("probe", b"1") and not store.create("probe", b"2")
    lock = Lock(store)
    lock.acquire()  # this process is alive: the lock holds
    try:
        result = s3_env.run("convert", MNI152_FILE_PATH, f"s3://{bucket}/out", "-q", "--workers", "0")
        assert result.returncode == 1
        assert "is being written by another run" in result.stderr
    finally:
        lock.release()
    result = s3_env.run("convert", MNI152_FILE_PATH, f"s3://{bucket}/out", "-q", "--workers", "0")
    assert result.returncode == 0, result.stderr
    assert store.read(".streamconv/lock") is None


class Bucket:
    """An output in a bucket, as the kill-and-resume test looks at it (test_resume.LocalOutput)."""

    def __init__(self, s3: S3, bucket: str, prefix: str) -> None:
        self.s3, self.bucket, self.prefix = s3, bucket, prefix
        self.url = f"s3://{bucket}/{prefix}"

    def files(self) -> dict[str, bytes]:
        return self.s3.objects(self.bucket, self.prefix)

    def versions(self) -> dict[str, object]:
        out = {}
        for page in self.s3.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                             Prefix=self.prefix + "/"):
            out.update({item["Key"]: item["LastModified"] for item in page.get("Contents", [])})
        return out

    def finished(self) -> bool:
        try:
            body = self.s3.client.get_object(Bucket=self.bucket, Key=f"{self.prefix}/.streamconv/job.json")
        except self.s3.client.exceptions.NoSuchKey:
            return False
        return b'"complete": true' in body["Body"].read()

    def leftovers(self) -> list[str]:
        versions = self.versions()
        return [k for k in versions if k.endswith("/.streamconv/lock") or k.endswith(".tmp")]


def test_a_conversion_into_s3_killed_at_random_moments_ends_byte_identical(s3, tmp_path):
    bucket = s3.bucket()
    volume = tmp_path / "vol.nii"
    x, y, z = np.meshgrid(np.arange(128), np.arange(160), np.arange(192), indexing="ij", sparse=True)
    import nibabel as nib

    nib.save(nib.Nifti1Image(((x * 3 + y * 5 + z * 7) % 251).astype(np.uint8), np.eye(4)), volume)
    report = kill_and_resume(volume, Bucket(s3, bucket, "out"), ["--chunk-size", "16", "--workers", "2"],
                             seed=7, kills=3, reference=tmp_path / "ref", env={**os.environ, **s3.env},
                             pace=4.0)  # moto answers a few hundred requests a second
    assert report["killed"] >= 1


def test_a_conversion_through_failing_requests_completes_identically(s3, tmp_path):
    bucket = s3.bucket()
    with Proxy(s3.endpoint, rate=0.15, seed=4) as proxy:
        result = s3.run("convert", MNI152_FILE_PATH, f"s3://{bucket}/out", "-q", "--gzip", "--chunk-size", "32",
                        "--workers", "2", endpoint=proxy.url)
    assert result.returncode == 0, result.stderr
    assert proxy.faults["503"] > 0 and proxy.faults["dropped"] > 0
    assert s3.objects(bucket, "out") == files(local(tmp_path, "ref", MNI152_FILE_PATH, "--gzip",
                                                    "--chunk-size", "32", "--workers", "2"))


def test_a_failure_that_outlives_the_retries_names_the_key():
    calls = []

    def flaky() -> None:
        calls.append(1)
        raise ConnectionResetError("connection reset by peer")

    with pytest.raises(StoreUnavailable, match=r"s3://b/k/1_1_1/0-64_0-64_0-64: cannot write: failed 3 times"):
        Retry(attempts=3, first=0.001).call(flaky, "s3://b/k/1_1_1/0-64_0-64_0-64: cannot write")
    assert len(calls) == 3
    with pytest.raises(FileNotFoundError):  # not transient: not retried
        Retry(attempts=3, first=0.001).call(lambda: open("/nonexistent/x"), "x")


def test_memory_store_keeps_a_resumable_journal_as_numbered_objects():
    url = f"memory://{uuid.uuid4().hex}/out"
    report = streamconv.convert(MNI152_FILE_PATH, url, workers=0, chunk_size=32)
    store = open_store(url)
    assert not store.can.append and store.can.durable
    names = [k.rsplit("/", 1)[-1] for k in store.list(".streamconv/journal")]
    assert names[0].startswith("00000000_boot_") and "00000001_slab_0_0" in names
    job = store.read(".streamconv/job.json") or b""
    store.write(".streamconv/job.json", job.replace(b'"complete": true', b'"complete": false'))
    again = streamconv.convert(MNI152_FILE_PATH, url, workers=0, chunk_size=32)
    assert again.resumed and again.chunks_written == 0 and report.chunks_written > 0


def test_storage_options_and_locations():
    options = StorageOptions.parse(["endpoint_url=http://127.0.0.1:9000", "client_kwargs.region_name=eu",
                                    "anon=true", "secret=s3cr3t"])
    assert options.kwargs() == {"endpoint_url": "http://127.0.0.1:9000", "client_kwargs": {"region_name": "eu"},
                                "anon": True, "secret": "s3cr3t"}
    assert "s3cr3t" not in repr(Location.of("s3://b/p", options)) and str(Location.of("s3://b/p", options)) == "s3://b/p"
    assert Location.of("precomputed://gs://b/p").url == "gs://b/p"
    assert Location.of("file:///tmp/x").path == "/tmp/x"
    with pytest.raises(UsageError, match="KEY=VALUE"):
        StorageOptions.parse(["novalue"])


def test_verify_and_convert_chunks_read_a_pyramid_over_http(s3, tmp_path):
    """A static server on loopback: `verify` and `convert-chunks` read from it (gzip chunks
    included); convert-chunks writes the copy into a bucket."""
    served = local(tmp_path, "served", MNI152_FILE_PATH, "--gzip", "--workers", "0")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    bucket = s3.bucket()
    try:
        checked = s3.run("verify", MNI152_FILE_PATH, f"precomputed://{url}")
        copied = s3.run("convert-chunks", url, f"s3://{bucket}/copy", "--copy-info", "--workers", "2")
    finally:
        server.shutdown()
        server.server_close()
    assert checked.returncode == 0 and "57 chunks checked, 0 absent" in checked.stderr, checked.stderr
    assert copied.returncode == 0 and "57 chunks re-encoded (0 absent)" in copied.stderr, copied.stderr
    plain = local(tmp_path, "plain", MNI152_FILE_PATH, "--workers", "0")
    assert s3.objects(bucket, "copy") == files(plain)


@pytest.mark.parametrize("name", ["mni.nii.gz", "mni.nii"])
def test_a_volume_is_read_from_s3_as_from_disk(s3, tmp_path, name):
    """The gzip template read as one stream of ranged requests; the uncompressed one read by
    both workers at computed offsets."""
    import nibabel as nib

    path = tmp_path / name
    nib.save(nib.load(MNI152_FILE_PATH), path)
    bucket = s3.bucket()
    s3.client.upload_file(str(path), bucket, f"in/{name}")
    result = s3.run("convert", f"s3://{bucket}/in/{name}", f"s3://{bucket}/out", "-q", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert s3.objects(bucket, "out") == files(local(tmp_path, "ref", path, "--workers", "2"))
    job = json.loads(s3.client.get_object(Bucket=bucket, Key="out/.streamconv/job.json")["Body"].read())
    assert job["job"]["input"]["url"] == f"s3://{bucket}/in/{name}" and job["job"]["input"]["version"]


def test_a_slice_stack_is_read_from_s3_as_from_disk(s3, tmp_path, stack):
    """A directory of sections in a bucket: listed once, each section probed with ranged reads
    (header and tail) and decoded by a worker when its slab is read."""
    bucket = s3.bucket()
    for section in sorted(stack.iterdir()):
        s3.client.upload_file(str(section), bucket, f"sections/{section.name}")
    args = ["--resolution", "20um", "--chunk-size", "16", "--workers", "2"]
    result = s3.run("convert", f"s3://{bucket}/sections/", f"s3://{bucket}/out", "-q", *args)
    assert result.returncode == 0, result.stderr
    assert s3.objects(bucket, "out") == files(local(tmp_path, "ref", stack, *args))
    job = json.loads(s3.client.get_object(Bucket=bucket, Key="out/.streamconv/job.json")["Body"].read())
    assert job["job"]["input"]["slices"][0][0] == f"s3://{bucket}/sections/s00.png"


def test_a_hyperstack_in_a_bucket_is_read_as_from_disk(s3, tmp_path):
    """A multi-page TIFF behind a URL is its planes too (its pages found with ranged reads)."""
    import tifffile

    rng = np.random.default_rng(8)
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(path, rng.integers(0, 255, (6, 2, 30, 40), dtype=np.uint8), imagej=True,
                     metadata={"axes": "ZCYX"})
    bucket = s3.bucket()
    s3.client.upload_file(str(path), bucket, "in/hyper.tif")
    args = ["--resolution", "20um", "--chunk-size", "16", "--workers", "2"]
    result = s3.run("convert", f"s3://{bucket}/in/hyper.tif", f"s3://{bucket}/out", "-q", *args)
    assert result.returncode == 0, result.stderr
    assert s3.objects(bucket, "out") == files(local(tmp_path, "ref", path, *args))


def test_a_store_of_one_process_is_refused_with_workers():
    with pytest.raises(UsageError, match="--workers 0"):
        streamconv.convert(MNI152_FILE_PATH, f"memory://{uuid.uuid4().hex}/out", workers=1)


def test_http_reads_are_retried_on_server_errors():
    """Two 503s, then the bytes; a 404 is an absent chunk, at once."""
    answers = [503, 503, 200]

    class Flaky(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            code = answers.pop(0) if self.path == "/p/info" and answers else 404
            body = b"{}" if code == 200 else b""
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        store = open_store(f"http://127.0.0.1:{server.server_address[1]}/p")
        assert store.read("info") == b"{}" and not answers
        assert store.read("missing") is None
    finally:
        server.shutdown()
        server.server_close()


def test_a_store_that_keeps_failing_stops_the_run_resumable(s3, tmp_path):
    """Every PUT after the first 30 answered 503: the run stops with one line naming a key, and
    the same command, once the store answers, resumes and ends with the same objects."""
    import nibabel as nib

    volume = tmp_path / "small.nii"
    nib.save(nib.Nifti1Image(np.arange(64 * 64 * 64, dtype=np.uint16).reshape(64, 64, 64), np.eye(4)), volume)
    bucket = s3.bucket()
    args = ["convert", str(volume), f"s3://{bucket}/out", "-q", "--chunk-size", "16", "--workers", "1",
            "--storage-option", "config_kwargs.retries.max_attempts=1"]  # botocore's own retries: none
    with Proxy(s3.endpoint, rate=1.0, after=30, kinds=("503",)) as proxy:
        failed = s3.run(*args, endpoint=proxy.url, retries=2)
    assert failed.returncode == 1, failed.stderr
    line = failed.stderr.strip()
    assert "\n" not in line and line.startswith(f"streamconv: error: s3://{bucket}/out/"), line
    assert "cannot write: failed 2 times" in line and line.endswith("run the same command again to resume")
    resumed = s3.run(*[a for a in args[:-2] if a != "-q"])
    assert resumed.returncode == 0 and "resumed" in resumed.stderr, resumed.stderr
    assert s3.objects(bucket, "out") == files(local(tmp_path, "ref", volume, "--chunk-size", "16"))
