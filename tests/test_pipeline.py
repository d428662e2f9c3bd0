"""The pipeline driven directly: a fake in-memory source, small odd volumes, several scales,
one and two buffers per scale, failures, stops and resumes. Every output is read back from its
chunk files and held against the input and the reference downsampler (tests/reference.py)."""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from streamconv.encodings import ChunkFormat, make_codec
from streamconv.engine.budget import SlabPlan, plan_slabs
from streamconv.engine.executor import InlineExecutor, executor
from streamconv.engine.job import Job
from streamconv.engine.pipeline import Hooks, Pipeline, Totals
from streamconv.errors import DataError, Interrupted, NoSpaceError
from streamconv.format.geometry import Box, Scale, ceil_div
from streamconv.format.pyramid import plan_pyramid
from streamconv.sources.base import MemoryOrder
from streamconv.stores.local import LocalStore

SHAPE = (37, 23, 19)  # x, y, z: odd everywhere, so every scale has clipped edge chunks
LONG = (13, 11, 37)   # with 4-voxel chunks: 10 slabs along z, few chunks per slab

Slab = tuple[int, int]  # (scale, index)


class ArraySource:
    """A `Source` over a (c, z, y, x) array; reading a plane listed in `corrupt` raises a
    DataError, as a damaged section would."""

    def __init__(self, data: np.ndarray, stream_axis: int = 2, parallel_reads: bool = True,
                 memory_order: MemoryOrder = MemoryOrder(), corrupt: frozenset[int] = frozenset()):
        self.data = data
        c, z, y, x = data.shape
        self.shape, self.num_channels, self.dtype = (x, y, z), c, data.dtype
        self.resolution = (1000.0, 1000.0, 1000.0)
        self.stream_axis, self.parallel_reads, self.memory_order = stream_axis, parallel_reads, memory_order
        self.corrupt = corrupt
        self.reads_regions = True

    def read(self, p0: int, p1: int, out: np.ndarray) -> None:
        bad = sorted(self.corrupt & set(range(p0, p1)))
        if bad:
            raise DataError(f"plane {bad[0]} is corrupt")
        index: list[slice] = [slice(None)] * 4
        index[3 - self.stream_axis] = slice(p0, p1)
        out[...] = self.data[tuple(index)]

    def read_region(self, region: Box, out: np.ndarray) -> None:
        bad = sorted(self.corrupt & set(range(region.start[self.stream_axis], region.stop[self.stream_axis])))
        if bad:
            raise DataError(f"plane {bad[0]} is corrupt")
        out[...] = self.data[region.index()]

    def mapped(self, p0: int, p1: int) -> None:
        return None  # in memory: read into the slabs

    def window(self, p0: int, p1: int) -> ArraySource:
        return self

    def fingerprint(self) -> dict:
        return {}

    def close(self) -> None:
        pass


class UnreadableSource(ArraySource):
    """For runs that must take everything from chunks already on disk."""

    def read(self, p0: int, p1: int, out: np.ndarray) -> None:
        raise AssertionError(f"the source was read (planes {p0}-{p1})")


class FullDisk(LocalStore):
    """A store whose disk is full when one chunk is written."""

    def __init__(self, root: Path, full_at: str) -> None:
        super().__init__(root)
        self.full_at = full_at

    def write(self, key: str, data: bytes | memoryview, durable: bool = False) -> None:
        if key == self.full_at:
            raise NoSpaceError(f"{self.root}/{key}: no space left on the device")
        super().write(key, data, durable)

    def write_all(self, items) -> None:  # each through `write`, where the disk fills
        for key, data in items:
            self.write(key, data)


def volume(dtype: str = "uint8", channels: int = 1, labels: int = 0, seed: int = 0,
           shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """(c, z, y, x) test data: random values, or a few labels, with an empty corner."""
    rng = np.random.default_rng(seed)
    x, y, z = shape
    if labels:
        data = rng.integers(0, labels, (channels, z, y, x)).astype(dtype)
    elif np.dtype(dtype).kind == "f":
        data = rng.normal(0, 100, (channels, z, y, x)).astype(dtype)
    else:
        data = rng.integers(0, np.iinfo(dtype).max, (channels, z, y, x), dtype=dtype, endpoint=True)
    data[:, :9, :9, :9] = 0  # whole empty chunks at small chunk sizes
    return data


def make_job(source: ArraySource, *, chunk: int = 4, resolution=(1.0, 1.0, 1.0),
             method: str = "average", volume_type: str = "image", plan: SlabPlan | None = None,
             budget: int = 1 << 40, skip_empty: bool = False, max_scales: int | None = None,
             first: int = 0) -> Job:
    """A job in raw encoding; its plan from `budget` (the default: two buffers everywhere)."""
    scales, info = plan_pyramid(source.shape, resolution, source.dtype, source.num_channels,
                                volume_type, chunk, max_scales, make_codec("raw"))
    if plan is None:
        plan = plan_slabs(scales, source.num_channels, source.dtype, 0, budget, source.parallel_reads,
                         source.stream_axis, main_base=0)
    return Job(scales, info, plan, ChunkFormat(make_codec("raw")), method, skip_empty, {}, first=first)


def minimum_budget(source: ArraySource, **options) -> int:
    """The smallest budget the planner accepts: one buffer per scale, thinnest slabs and bands."""
    return make_job(source, **options).plan.minimum


def run(job: Job, source: ArraySource, out: Path, pool=None, done: frozenset[Slab] = frozenset(),
        **hooks) -> Totals:
    return Pipeline(job, source, LocalStore(out), pool or InlineExecutor(), Hooks(**hooks), done).run()


def read_scale(out: Path, scale: Scale, channels: int, dtype: np.dtype) -> np.ndarray:
    """A scale as a (c, z, y, x) array assembled from its raw chunk files (Fortran-order
    [x, y, z, c] bytes are C-order [c, z, y, x]); an absent chunk reads as zeros."""
    x, y, z = scale.size
    full = np.zeros((channels, z, y, x), dtype)
    for box in scale.chunks_in((0, 0, 0), scale.size):
        path = out / scale.key / box.name
        if path.exists():
            bx, by, bz = box.shape
            full[box.index()] = np.frombuffer(path.read_bytes(), dtype).reshape(channels, bz, by, bx)
    return full


def expected_pyramid(data: np.ndarray, scales: list[Scale], method: str) -> list[np.ndarray]:
    """Every scale as (c, z, y, x), from the input through the reference downsampler."""
    import reference  # here: it loads tensorstore, and pool workers import this module too

    levels = [data.transpose(3, 2, 1, 0)]  # (x, y, z, c), as the reference takes it
    for scale in scales[1:]:
        levels.append(reference.downsample(levels[-1], scale.factor, method))
    return [a.transpose(3, 2, 1, 0) for a in levels]


def assert_scale(got: np.ndarray, want: np.ndarray) -> None:
    if got.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-6)
    else:
        np.testing.assert_array_equal(got, want)


def assert_pyramid(out: Path, job: Job, data: np.ndarray) -> None:
    for scale, want in zip(job.scales, expected_pyramid(data, job.scales, job.method)):
        assert_scale(read_scale(out, scale, data.shape[0], data.dtype), want)


def slab_chunks(job: Job, level: int, index: int) -> list[str]:
    """The chunk files of a slab, relative to the output."""
    scale, axis, planes = job.scales[level], job.plan.stream_axis, job.plan.slab_planes[level]
    x, y, z = scale.size
    p0, p1 = index * planes, min((index + 1) * planes, scale.size[axis])
    start, stop = [(p0, 0, 0), (0, p0, 0), (0, 0, p0)][axis], [(p1, y, z), (x, p1, z), (x, y, p1)][axis]
    return [f"{scale.key}/{box.name}" for box in scale.chunks_in(start, stop)]


def all_slabs(job: Job) -> list[Slab]:
    return [(k, i) for k, s in enumerate(job.scales)
            for i in range(ceil_div(s.size[job.plan.stream_axis], job.plan.slab_planes[k]))]


def written_files(out: Path) -> list[Path]:
    """The chunk files a pipeline wrote (not `.streamconv/`: each complete slab's value statistics
    are kept there, cut as the budget cuts the slabs)."""
    return [p for p in sorted(out.rglob("*")) if p.is_file() and ".streamconv" not in p.relative_to(out).parts]


def files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in written_files(out)}


def shared_buffers() -> int:
    """Slab buffers of this process now in shared memory (docs/design.md: files named
    streamconv-<pid>-… in /dev/shm, or the temporary directory without one)."""
    return sum(len(list(Path(d).glob(f"streamconv-{os.getpid()}-*")))
               for d in {"/dev/shm", tempfile.gettempdir()} if Path(d).is_dir())


def assert_slabs_on_disk(out: Path, job: Job, data: np.ndarray, slabs: list[Slab]) -> None:
    """Every chunk of each slab is on disk with its final voxels."""
    want = expected_pyramid(data, job.scales, job.method)
    got = [read_scale(out, s, data.shape[0], data.dtype) for s in job.scales]
    for level, index in slabs:
        assert all((out / name).exists() for name in slab_chunks(job, level, index))
        planes = job.plan.slab_planes[level]
        cut: list[slice] = [slice(None)] * 4
        cut[3 - job.plan.stream_axis] = slice(index * planes, (index + 1) * planes)
        assert_scale(got[level][tuple(cut)], want[level][tuple(cut)])


def assert_resume_finishes(job: Job, source: ArraySource, out: Path, reported: list[Slab],
                           fresh: Path) -> None:
    """A run from the slabs reported complete ends with the bytes of a run from scratch, and
    writes again only the chunks of the slabs that were not reported."""
    totals = run(job, source, out, done=frozenset(reported))
    run(job, source, fresh)
    assert files(out) == files(fresh)
    assert totals.chunks == sum(s.num_chunks for s in job.scales) - sum(
        len(slab_chunks(job, *slab)) for slab in reported)
    assert totals.skipped_blocks + totals.replayed_blocks == len(reported)


# Whole pyramids

CASES = {
    # name: (dtype, channels, labels, method, stream axis, resolution, chunk, memory order)
    "uint8-average-z": ("uint8", 1, 0, "average", 2, (1.0, 1.0, 1.0), 4, MemoryOrder()),
    "uint16-2ch-average-aniso": ("uint16", 2, 0, "average", 2, (1.0, 1.0, 2.5), 8, MemoryOrder()),
    "float32-average-y": ("float32", 1, 0, "average", 1, (1.0, 1.0, 1.0), 8, MemoryOrder()),
    "labels-majority-z": ("uint32", 1, 4, "majority", 2, (2.0, 1.0, 1.0), 8, MemoryOrder()),
    # a full-resolution slab in a slice stack's order: y sections, z stored back to front
    "uint8-stride-y-stack-order": ("uint8", 1, 0, "stride", 1, (1.0, 1.0, 1.0), 4,
                                   MemoryOrder((2, 1, 3, 0), (1,))),
}


@pytest.mark.parametrize("buffers", ["one", "two"])
@pytest.mark.parametrize("case", CASES)
def test_pyramid_equals_the_reference(case, buffers, tmp_path):
    dtype, channels, labels, method, axis, resolution, chunk, order = CASES[case]
    data = volume(dtype, channels, labels)
    source = ArraySource(data, axis, memory_order=order)
    options = dict(chunk=chunk, resolution=resolution, method=method,
                   volume_type="segmentation" if labels else "image")
    budget = minimum_budget(source, **options) if buffers == "one" else 1 << 40
    job = make_job(source, budget=budget, **options)
    assert len(job.scales) >= 3 and set(job.plan.buffers) == ({1} if buffers == "one" else {2})
    reported: list[Slab] = []
    chunks = {level: 0 for level in range(len(job.scales))}
    most_buffers = 0

    def progress(level: int, visited: int, nbytes: int) -> None:
        nonlocal most_buffers
        chunks[level] += visited
        most_buffers = max(most_buffers, shared_buffers())

    totals = run(job, source, tmp_path, progress=progress, slab_done=lambda *slab: reported.append(slab))
    assert_pyramid(tmp_path, job, data)
    # every chunk written and counted once, every slab reported once
    assert chunks == {level: s.num_chunks for level, s in enumerate(job.scales)}
    assert totals.chunks == totals.written == sum(s.num_chunks for s in job.scales)
    assert totals.nbytes == sum(p.stat().st_size for p in written_files(tmp_path))
    assert sorted(reported) == all_slabs(job)
    # memory stays within the plan's buffers, and none is left behind
    assert 0 < most_buffers <= sum(job.plan.buffers) and shared_buffers() == 0


def test_hand_made_plans_one_plane_reads_one_chunk_bands_many_slabs_feed_one(tmp_path):
    """Plans the planner would not pick: one-plane read tasks, one-chunk bands, and coarser
    slabs fed by two and by four finer ones."""
    data = volume("uint16", shape=LONG)
    source = ArraySource(data)
    n = len(make_job(source).scales)
    for k, (slabs, buffers) in enumerate([((4,) * n, (1,) * n),
                                         ((4,) + (8,) * (n - 1), (2, 1) + (2,) * (n - 2)),
                                         ((4, 8, 16) + (8,) * (n - 3), (2,) * n)]):
        job = make_job(source, plan=SlabPlan(2, slabs, buffers, (4,) * n, 1, 0, 0, 0, 0))
        totals = run(job, source, tmp_path / str(k))
        assert_pyramid(tmp_path / str(k), job, data)
        assert totals.written == sum(s.num_chunks for s in job.scales)


def test_skip_empty_leaves_out_empty_chunks(tmp_path):
    data = volume("uint8")
    source = ArraySource(data)
    job = make_job(source, skip_empty=True)
    totals = run(job, source, tmp_path)
    assert_pyramid(tmp_path, job, data)  # absent chunks read as zeros
    written = len(written_files(tmp_path))
    assert totals.written == written < totals.chunks == sum(s.num_chunks for s in job.scales)


def test_a_process_pool_writes_the_same_bytes(tmp_path):
    data = volume("uint16", 2, shape=LONG)
    inline = tmp_path / "inline"
    run(make_job(ArraySource(data)), ArraySource(data), inline)
    with executor(2) as pool:
        for parallel_reads in (True, False):  # False: one reading thread in this process
            source = ArraySource(data, parallel_reads=parallel_reads)
            job = make_job(source, budget=minimum_budget(source) if parallel_reads else 1 << 40)
            run(job, source, tmp_path / f"pool-{parallel_reads}", pool)
            assert files(tmp_path / f"pool-{parallel_reads}") == files(inline)


# Failures and stops: what was reported complete is on disk, and a resume finishes the job

@pytest.mark.parametrize("buffers", ["one", "two"])
def test_a_failing_read_raises_and_completed_slabs_are_reported(buffers, tmp_path):
    data = volume("uint8", shape=LONG)
    source = ArraySource(data, corrupt=frozenset({29}))
    job = make_job(source, budget=minimum_budget(source) if buffers == "one" else 1 << 40)
    failing = 29 // job.plan.slab_planes[0]
    reported: list[Slab] = []
    with pytest.raises(DataError, match="plane 29 is corrupt"):
        run(job, source, tmp_path / "out", slab_done=lambda *slab: reported.append(slab))
    assert_slabs_on_disk(tmp_path / "out", job, data, reported)
    level0 = {i for level, i in reported if level == 0}
    # the slabs before the failing one were reported, but those still in their buffers
    assert set(range(failing - job.plan.buffers[0] + 1)) <= level0 and max(level0) < failing
    assert_resume_finishes(job, ArraySource(data), tmp_path / "out", reported, tmp_path / "fresh")


def test_a_failing_write_raises_and_completed_slabs_are_reported(tmp_path):
    data = volume("uint16", 2, shape=LONG)
    source = ArraySource(data)
    job = make_job(source, budget=minimum_budget(source))
    lost = slab_chunks(job, 1, 1)[-1]  # a band task of scale 1 fails
    reported: list[Slab] = []
    with pytest.raises(NoSpaceError):
        Pipeline(job, source, FullDisk(tmp_path / "out", lost), InlineExecutor(),
                 Hooks(slab_done=lambda *slab: reported.append(slab))).run()
    assert not (tmp_path / "out" / lost).exists() and (1, 1) not in reported
    assert {(0, 0), (0, 1), (1, 0)} <= set(reported)
    assert_slabs_on_disk(tmp_path / "out", job, data, reported)
    assert_resume_finishes(job, source, tmp_path / "out", reported, tmp_path / "fresh")


@pytest.mark.parametrize("calls", [1, 6, 15, 30])
def test_a_stop_request_interrupts_and_a_resume_finishes(calls, tmp_path):
    data = volume("uint16", 2, seed=calls, shape=LONG)
    source = ArraySource(data)
    job = make_job(source, budget=minimum_budget(source))
    asked = itertools.count(1)
    reported: list[Slab] = []
    with pytest.raises(Interrupted):
        run(job, source, tmp_path / "out", should_stop=lambda: next(asked) > calls,
            slab_done=lambda *slab: reported.append(slab))
    assert_slabs_on_disk(tmp_path / "out", job, data, reported)
    assert_resume_finishes(job, source, tmp_path / "out", reported, tmp_path / "fresh")


# Resuming from a journal: skipped and replayed slabs

def test_lost_coarser_scales_are_rebuilt_from_the_finer_chunks(tmp_path):
    data = volume("uint8", seed=3, shape=LONG)
    source = ArraySource(data)
    job = make_job(source)
    run(job, source, tmp_path / "fresh")
    out = tmp_path / "out"
    run(job, source, out)
    for scale in job.scales[1:]:  # as if the run died before any coarser slab was complete
        for p in (out / scale.key).iterdir():
            p.unlink()
    full_resolution = frozenset(slab for slab in all_slabs(job) if slab[0] == 0)
    totals = run(job, UnreadableSource(data), out, done=full_resolution)
    assert files(out) == files(tmp_path / "fresh")
    assert totals.replayed_blocks == len(full_resolution) and totals.skipped_blocks == 0
    assert totals.written == sum(s.num_chunks for s in job.scales[1:])


def test_complete_slabs_whose_targets_are_complete_are_skipped(tmp_path):
    data = volume("uint8", seed=4, shape=LONG)
    source = ArraySource(data)
    job = make_job(source, budget=minimum_budget(source))
    run(job, source, tmp_path)
    before = files(tmp_path)
    every = all_slabs(job)
    assert run(job, UnreadableSource(data), tmp_path, done=frozenset(every)) == \
        Totals(skipped_blocks=len(every))
    # all but the last slab of the coarsest scale: only the slabs feeding it are replayed
    last = every[-1]
    reported: list[Slab] = []
    totals = run(job, UnreadableSource(data), tmp_path, done=frozenset(every[:-1]),
                 slab_done=lambda *slab: reported.append(slab))
    assert reported == [last] and totals.replayed_blocks >= 1
    assert totals.skipped_blocks + totals.replayed_blocks == len(every) - 1
    assert files(tmp_path) == before


def test_scales_above_first_are_computed_from_the_chunks_on_disk(tmp_path):
    """compute-scales: scale 0 is on disk already (written by a one-scale job); the source is
    never read and scale 0 is not written again."""
    data = volume("uint16", 2, seed=5, shape=LONG)
    source = ArraySource(data)
    run(make_job(source, max_scales=1), source, tmp_path)
    scale0 = files(tmp_path)
    job = make_job(source, first=1)
    totals = run(job, UnreadableSource(data), tmp_path)
    assert_pyramid(tmp_path, job, data)
    assert totals.replayed_blocks == len([slab for slab in all_slabs(job) if slab[0] == 0])
    assert totals.written == sum(s.num_chunks for s in job.scales[1:])
    assert {k: v for k, v in files(tmp_path).items() if k in scale0} == scale0
