"""Untrusted inputs stay in their box: infos someone else wrote (from a directory or from an
HTTP server on loopback), links planted in a shared directory, a second writer. Each case ends
with one line and exit code 1 or 2, nothing outside OUTPUT changed (a snapshot of the tree
around it), and memory bounded by a resource limit on the subprocess."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import imagecodecs
import nibabel as nib
import numpy as np
import pytest

import streamconv

STREAMCONV = str(Path(sys.executable).with_name("streamconv"))
MEMORY_LIMIT = 2 << 30  # address space of a command: far below what a hostile info asks for


def limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([STREAMCONV, *map(str, args)], capture_output=True, text=True,
                          preexec_fn=limited, timeout=120, cwd=cwd)


def one_line(result: subprocess.CompletedProcess, code: int, *words: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("streamconv: error:"), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def snapshot(root: Path, skip: Path | None = None) -> dict[str, tuple]:
    """Every path below `root` (links not followed) with its type, and a file's size and mtime
    (a directory's mtime changes with the lock taken and released inside OUTPUT)."""
    found = {}
    for directory, dirs, names in os.walk(root):
        for name in dirs + names:
            path = Path(directory, name)
            if skip is not None and (path == skip or skip in path.parents):
                continue
            st = path.lstat()
            found[str(path)] = (st.st_mode,) if path.is_dir() and not path.is_symlink() \
                else (st.st_mode, st.st_size, st.st_mtime_ns)
    return found


@contextlib.contextmanager
def served(directory: Path) -> Iterator[str]:
    """An HTTP server on loopback for `directory`, stopped on exit."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def hostile(pyramid: Path, tmp_path: Path, change) -> Path:
    """A copy of the pyramid whose info `change` edited."""
    src = tmp_path / "box" / "src"
    shutil.copytree(pyramid / "src", src)
    info = json.loads((src / "info").read_text())
    change(info)
    (src / "info").write_text(json.dumps(info))
    return src


def set_scale(member, value, scale=0):
    def change(info):
        info["scales"][scale][member] = value
    return change


def set_top(member, value):
    def change(info):
        info[member] = value
    return change


HOSTILE_INFOS = {
    "key-parent": (set_scale("key", "../../escape"), "not a relative path"),
    "key-absolute": (set_scale("key", "/tmp/streamconv-test-escape/deep"), "not a relative path"),
    "key-inner-parent": (set_scale("key", "a/../../b"), "not a relative path"),
    "key-nul": (set_scale("key", "a\0b"), "not a relative path"),
    "key-empty-segment": (set_scale("key", "a//b"), "not a relative path"),
    "key-state": (set_scale("key", ".streamconv/x"), "not a relative path"),
    "key-info": (set_scale("key", "info"), "not a relative path"),
    "mesh-absolute": (set_top("mesh", "/abs/path"), "mesh"),
    "size-huge": (set_scale("size", [2 ** 40, 2 ** 40, 2 ** 40]), "size"),
    "size-product": (set_scale("size", [2 ** 31, 2 ** 31, 2 ** 31]), "size"),
    "chunk-huge": (set_scale("chunk_sizes", [[2 ** 20, 2 ** 20, 2 ** 20]]), "chunk"),
    "channels-huge": (set_top("num_channels", 2 ** 40), "num_channels"),
    "resolution-nan": (set_scale("resolution", [float("nan"), 1, 1]), "resolution"),
    "resolution-text": (set_scale("resolution", ["a", 1, 1]), "resolution"),
    "offset-huge": (set_scale("voxel_offset", [2 ** 62, 0, 0]), "voxel_offset"),
    "dtype-bool": (set_top("data_type", "bool"), "data_type"),
    "dtype-object": (set_top("data_type", "object"), "data_type"),
    "cseg-block": (lambda info: info["scales"][0].update(
        encoding="compressed_segmentation", compressed_segmentation_block_size=[2 ** 30, 1, 1]),
        "block_size"),
    "no-scales": (set_top("scales", []), "no scales"),
}


@pytest.mark.parametrize("origin", ["directory", "http"])
@pytest.mark.parametrize("case", sorted(HOSTILE_INFOS))
def test_hostile_info_is_refused_before_anything_is_written(pyramid, tmp_path, case, origin):
    change, word = HOSTILE_INFOS[case]
    src = hostile(pyramid, tmp_path, change)
    before = snapshot(tmp_path)
    with served(src) if origin == "http" else contextlib.nullcontext(str(src)) as url:
        result = run("convert-chunks", "--encoding", "raw", "--workers", "0", url,
                     tmp_path / "box" / "out")
    one_line(result, 1, word)
    assert "Traceback" not in result.stderr and "np.float" not in result.stderr
    assert snapshot(tmp_path) == before


def test_hostile_info_is_refused_by_verify_and_compute_scales(pyramid, tmp_path):
    src = hostile(pyramid, tmp_path, set_scale("key", "../../escape", scale=1))
    before = snapshot(tmp_path)
    one_line(run("verify", pyramid / "vol.nii", src), 1, "not a relative path")
    one_line(run("compute-scales", src), 1, "not a relative path")
    assert snapshot(tmp_path) == before


def test_overwrite_does_not_follow_links_out_of_the_output(pyramid, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    (victim / "job.json").write_text("keep me too")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".streamconv").symlink_to(victim)  # the state directory is a link elsewhere
    before = snapshot(tmp_path, skip=out)
    one_line(run("convert", "--overwrite", pyramid / "vol.nii", out), 1, "symbolic link")
    assert snapshot(tmp_path, skip=out) == before

    # an info of ours whose scale key goes through a link: --overwrite removes only the link's
    # own name, never the directory it points to
    out2 = tmp_path / "out2"
    assert run("convert", pyramid / "vol.nii", out2).returncode == 0
    info = json.loads((out2 / "info").read_text())
    info["scales"][0]["key"] = "link/victim"
    (out2 / "info").write_text(json.dumps(info))
    (out2 / "link").symlink_to(victim)
    before = snapshot(tmp_path, skip=out2)
    result = run("convert", "--overwrite", pyramid / "vol.nii", out2)
    assert result.returncode in (0, 1), result.stderr
    assert snapshot(tmp_path, skip=out2) == before


def test_overwrite_leaves_what_streamconv_did_not_write(pyramid, tmp_path):
    """Another tool's dataset: its scales are not ours to delete; ours are replaced."""
    out = tmp_path / "out"
    shutil.copytree(pyramid / "src", out)
    info = json.loads((out / "info").read_text())
    (out / "theirs").mkdir()
    (out / "theirs" / "chunk").write_text("another tool's")
    info["scales"][0]["key"] = "theirs"
    (out / "info").write_text(json.dumps(info))
    assert run("convert", "--overwrite", pyramid / "vol.nii", out).returncode == 0
    assert (out / "theirs" / "chunk").read_text() == "another tool's"


@pytest.mark.parametrize("mesh_dir, info_mesh", [("../../elsewhere", None), (".", None),
                                                  (None, "/abs/path"), (None, "../up")])
def test_meshes_stay_inside_the_dataset(pyramid, tmp_path, mesh_dir, info_mesh):
    out = tmp_path / "box" / "out"
    shutil.copytree(pyramid / "src", out)
    if info_mesh is not None:
        info = json.loads((out / "info").read_text())
        info["mesh"] = info_mesh
        (out / "info").write_text(json.dumps(info))
    mesh = tmp_path / "box" / "cube.obj"
    mesh.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n")
    (tmp_path / "box" / "links.csv").write_text("1,cube\n")
    before = snapshot(tmp_path)
    args = ["--mesh-dir", mesh_dir] if mesh_dir else []
    for _ in range(2):  # run twice: the second must not replace the dataset's info either
        result = run("mesh-to-precomputed", *args, mesh, out)
        assert result.returncode in (1, 2), result.stderr
        one_line(result, result.returncode, "mesh")
    assert snapshot(tmp_path) == before
    if info_mesh is not None:
        one_line(run("link-mesh-fragments", tmp_path / "box" / "links.csv", out), 1, "mesh")
        assert snapshot(tmp_path) == before


def test_fragment_names_stay_inside_the_mesh_directory(pyramid, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(pyramid / "src", out)
    mesh = tmp_path / "cube.obj"
    mesh.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    assert run("mesh-to-precomputed", mesh, out).returncode == 0
    (tmp_path / "links.csv").write_text("1,../../../etc/passwd\n")
    one_line(run("link-mesh-fragments", tmp_path / "links.csv", out), 1, "fragment")


def test_convert_chunks_respects_the_lock_and_the_job_record(pyramid, tmp_path):
    src = pyramid / "src"
    out = tmp_path / "out"
    holder = subprocess.Popen(["sleep", "60"])  # a live process that holds the output
    try:
        (out / ".streamconv").mkdir(parents=True)
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        (out / ".streamconv" / "lock").write_text(f"{holder.pid} {boot}")
        one_line(run("convert-chunks", "--encoding", "png", src, out), 1, "another run")
    finally:
        holder.kill()
        holder.wait()
    assert not [p for p in out.rglob("*") if p.name != "lock" and p.is_file()]

    done = tmp_path / "done"
    assert run("convert", pyramid / "vol.nii", done).returncode == 0
    before = snapshot(done)
    one_line(run("convert-chunks", "--encoding", "png", src, done), 1, "--overwrite")
    assert snapshot(done) == before
    assert run("convert-chunks", "--overwrite", "--encoding", "png", src, done).returncode == 0
    assert not (done / ".streamconv" / "job.json").exists()  # convert's record described old data
    assert json.loads((done / ".streamconv" / "chunks" / "job.json").read_text())["complete"]
    assert run("verify", pyramid / "vol.nii", done).returncode == 0
    finished = snapshot(done)  # the same re-encoding again: a no-op (issue 16), another is refused
    assert run("convert-chunks", "--encoding", "png", src, done).returncode == 0
    assert snapshot(done) == finished
    one_line(run("convert-chunks", "--encoding", "jpeg", src, done), 1, "finished")


def test_convert_chunks_refuses_to_reencode_in_place(pyramid, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(pyramid / "src", src)
    before = snapshot(src)
    one_line(run("convert-chunks", "--encoding", "jpeg", src, src), 2, "in place")
    one_line(run("convert-chunks", "--encoding", "jpeg", src, tmp_path / "." / "src"), 2, "in place")
    assert snapshot(src) == before


@pytest.mark.parametrize("encoding", ["raw", "png"])
def test_verify_finds_one_flipped_byte_in_any_scale(pyramid, tmp_path, encoding):
    out = tmp_path / "out"
    streamconv.convert(pyramid / "vol.nii", out, chunk_size=16, encoding=encoding, workers=0)
    assert run("verify", pyramid / "vol.nii", out).returncode == 0
    scales = [out / s["key"] for s in json.loads((out / "info").read_text())["scales"]]
    assert len(scales) >= 3
    for directory in scales:
        chunk = sorted(directory.iterdir())[-1]
        data = chunk.read_bytes()
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x01 if encoding == "raw" else 0x40
        chunk.write_bytes(bytes(flipped))
        result = run("verify", pyramid / "vol.nii", out)
        line = one_line(result, 1, directory.name)
        assert "Traceback" not in result.stderr, line
        chunk.write_bytes(data)
    assert run("verify", "--full", pyramid / "vol.nii", out).returncode == 0


def test_messages_are_one_line_naming_what_to_do(pyramid, tmp_path):
    one_line(run("convert", "--chunk-size"), 2, "--chunk-size")
    one_line(run("convert", pyramid / "vol.nii", tmp_path / "o", "--bogus"), 2, "--bogus")
    one_line(run("convert-chunks", pyramid / "src", tmp_path / "o", "--encoding", "xx"), 2, "xx")
    image = nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4))
    image.header["pixdim"][1] = np.nan
    nib.save(image, tmp_path / "nan.nii")
    line = one_line(run("convert", tmp_path / "nan.nii", tmp_path / "o"), 1, "nan.nii", "--resolution")
    assert "np.float" not in line
    assert run("convert", "--resolution", "1mm", tmp_path / "nan.nii", tmp_path / "o").returncode == 0
    (tmp_path / "..obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    line = one_line(run("mesh-to-precomputed", tmp_path / "..obj", pyramid / "src"), 2, "..obj",
                    "give --mesh-name")
    assert "not a valid file name" not in line


@pytest.fixture(scope="module")
def unprivileged(tmp_path_factory) -> list[str]:
    """A command prefix under which file permissions hold. Tests often run as root, whom mode
    bits do not stop; root without capabilities (setpriv) gets only what a file's owner bits
    give, like any user. (Another uid would not do here: the interpreter may live in root's
    home, which it cannot enter.)"""
    probe = tmp_path_factory.mktemp("perm") / "locked"
    probe.write_text("secret")
    probe.chmod(0)
    prefix = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if os.geteuid() == 0 else []
    if prefix and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux): cannot drop privileges")
    check = subprocess.run([*prefix, sys.executable, "-c", f"open({str(probe)!r}).read()"],
                           capture_output=True, text=True)
    if check.returncode == 0 or "PermissionError" not in check.stderr:
        pytest.skip(f"cannot drop privileges here: a mode 000 file stays readable ({check.stderr[-200:]})")
    return prefix


def run_as(prefix: list[str], *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, STREAMCONV, *map(str, args)], capture_output=True, text=True,
                          preexec_fn=limited, timeout=120)


def test_an_unreadable_input_says_so(pyramid, tmp_path, unprivileged):
    """Mode 000 on a volume, a section, a stack's directory or its list: 'permission denied'
    naming the file, not 'not a volume nibabel can read' nor an internal error."""
    volume = tmp_path / "locked.nii"
    shutil.copy(pyramid / "vol.nii", volume)
    stack = tmp_path / "stack"
    stack.mkdir()
    for k in range(3):
        (stack / f"s{k}.png").write_bytes(imagecodecs.png_encode(np.full((5, 6), k, np.uint8)))
    (tmp_path / "list.txt").write_text("stack/s0.png\nstack/s1.png\n")
    cases = [(volume, volume, ()), (stack / "s1.png", stack, ("--resolution", "1um")),
             (tmp_path / "list.txt", tmp_path / "list.txt", ("--resolution", "1um")),
             (stack, stack, ("--resolution", "1um"))]
    for locked, given, flags in cases:
        locked.chmod(0)
        around = snapshot(tmp_path)
        try:
            for command in (["convert"], ["convert", "--dry-run"]):
                result = run_as(unprivileged, *command, given, tmp_path / "out", *flags)
                line = one_line(result, 1, str(locked), "permission denied", "readable")
                assert "Traceback" not in result.stderr and "internal error" not in line
                assert snapshot(tmp_path) == around
        finally:
            locked.chmod(0o755 if locked.is_dir() else 0o644)


def test_overwrite_onto_an_output_it_may_not_change_leaves_it_whole(pyramid, tmp_path, unprivileged):
    """An output this user may not write (someone else's, or read-only): --overwrite stops with
    one line saying so, not an internal error, and not one file of the output changes."""
    out = tmp_path / "out"
    streamconv.convert(pyramid / "vol.nii", out, chunk_size=16, workers=0)
    tree = [out, *out.rglob("*")]
    # All of it read-only (refused at the lock), then all but the lock's directory (refused at
    # the first file --overwrite deletes).
    for writable in ([], [out / ".streamconv", *(out / ".streamconv").rglob("*")]):
        for path in tree:
            path.chmod(path.stat().st_mode & ~0o222 | (0o200 if path in writable else 0))
        around = snapshot(tmp_path)
        for workers in ("0", "2"):
            result = run_as(unprivileged, "convert", pyramid / "vol.nii", out, "--overwrite",
                            "--chunk-size", "8", "--workers", workers)
            line = one_line(result, 1, str(out), "not writable", "Permission denied")
            assert "internal error" not in line and "Traceback" not in result.stderr
            assert snapshot(tmp_path) == around
    for path in tree:
        path.chmod(path.stat().st_mode | 0o200)
