"""The streaming pipeline: slabs flow from the source through every scale of the pyramid.

Each scale holds a few slab buffers. A full-resolution slab is filled by read tasks; once full it is
*sealed*: band tasks write its chunks and downsample it into the next scale's open slab, which is
sealed in turn when all its planes have arrived. A buffer is reused once its band tasks are done.
One loop in the main process reacts to finished tasks, so reading, encoding, writing and
downsampling of different slabs and scales overlap, and memory is bounded by the buffers.

Resuming, a slab recorded complete is skipped, unless the slab it feeds on the next scale is not
complete: then it is *replayed*, read back from its chunks on disk and only downsampled, so a lost
partial slab of a coarser scale is rebuilt from what the finer scale already holds.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable, Collection
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError, Interrupted, WorkerDied
from ..format.geometry import Box
from ..kernels.stats import ChannelStats, merge, sampling
from ..layout.dataset import Dataset
from ..layout.sink import Finish, run_finish
from ..layout.statsfile import VolumeStats
from ..sources import Source
from ..sources.base import MappedSlab, MemoryOrder
from ..stores.base import Store
from .buffers import SlabBuffer, SlabRef
from .executor import TaskExecutor
from .job import Job
from .journal import state_key
from .output import output_sink
from .scratch import Scratch, fill_from_scratch
from .slabgrid import SlabGrid, along
from .tasks import Band, BandDone, Downsample, fill, fill_from_store, process_band
from .worklog import replay

#: progress(scale index, chunks done, bytes written)
ProgressFn = Callable[[int, int, int], None]


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Hooks:
    """How the pipeline talks to whoever runs it; each hook is optional."""

    #: after each band task: (scale, chunks visited, bytes written), for progress bars
    progress: ProgressFn | None = None
    #: (scale, slab) once its chunks are written and its planes handed on: a journal line (not for replays)
    slab_done: Callable[[int, int], None] | None = None
    #: polled between waits; True stops the run with `Interrupted` at that safe point
    should_stop: Callable[[], bool] = _never


class TaskKind(enum.Enum):
    """What a finished task means to the slab it was submitted for."""

    FILL = "fill"  # wrote planes into the slab: read from the source, or back from the chunks
    BAND = "band"  # read a band of the slab: wrote its chunks, downsampled it into slab.target
    FINISH = "finish"  # completed output made of several slabs (a shard file); no slab waits
    DECODE = "decode"  # decoded a section into a slab's scratch file (`scratch.py`)


@dataclass(eq=False)
class _Slab:
    """Planes [p0, p1) along the stream axis of one scale, or a tile of them (a block of a
    tiled plan: `SlabGrid`), held in one buffer.

    Its life: opened on a buffer; writer tasks are submitted for its planes (its own fill
    tasks, or the band tasks of the finer scale's slabs that downsample into it); sealed once
    every plane has a writer and no writer is running; then its band tasks (readers) write its
    chunks and downsample it into `target`; its buffer is free again when no reader runs."""

    level: int
    index: int
    box: Box  # its voxels: planes [p0, p1) along the stream axis, whole or a tile of them
    buffer: SlabBuffer
    #: what its tasks map: the buffer, or the input file itself (a source's `mapped` planes)
    ref: SlabRef | MappedSlab
    #: voxels (per channel) some submitted writer task fills (whether it has finished or not)
    voxels_incoming: int = 0
    #: writer tasks not finished: fill tasks, and finer band tasks downsampling into this slab
    writers: int = 0
    #: band tasks of this slab not finished; they read the buffer, so it is reused at zero
    readers: int = 0
    sealed: bool = False
    replay: bool = False  # complete already: read back and downsampled, not written
    #: the next scale's slab this one downsamples into; set when sealed
    target: _Slab | None = field(default=None, repr=False)
    #: the value statistics its band tasks returned so far (not for replays: their runs kept them)
    stats: list[list[ChannelStats]] = field(default_factory=list, repr=False)

    @property
    def voxels(self) -> int:
        return math.prod(self.box.shape)

    @property
    def in_file(self) -> bool:
        """Its tasks map the input file: there is nothing to read into the buffer."""
        return self.ref is not self.buffer.ref

    @property
    def ready_to_seal(self) -> bool:
        """Every plane has arrived: each has a writer, and none is still running."""
        return not self.sealed and self.voxels_incoming == self.voxels and self.writers == 0


@dataclass
class Totals:
    """What a run did, for its report."""

    chunks: int = 0          # chunks of the slabs written by this run (some may be skipped as empty)
    written: int = 0         # chunk files written
    nbytes: int = 0          # bytes of those files
    skipped_blocks: int = 0   # blocks (slabs, or slab tiles) complete before this run, not touched
    replayed_blocks: int = 0  # complete before this run, read back to rebuild the next scale
    #: the distinct values of the scale-0 slabs this run wrote, when the job asks for them
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64), compare=False)
    #: the value statistics band tasks returned, when the job asks for them
    stats: VolumeStats | None = field(default=None, compare=False)


class Pipeline:
    """The coordinator that moves every slab of a job through its scales."""

    def __init__(self, job: Job, source: Source, store: Store, executor: TaskExecutor,
                 hooks: Hooks = Hooks(), done: Collection[tuple[int, int]] = frozenset()) -> None:
        """`store`: the output, where chunks are written and complete slabs read back; `done`:
        the (scale, slab) pairs complete before this run (the journal's). The scales below
        `job.first` are on disk already: complete too, read back only to be downsampled."""
        self.job, self.source, self.store, self.executor, self.hooks = job, source, store, executor, hooks
        self.scales, self.plan, self.axis = job.scales, job.plan, job.plan.stream_axis
        self.grid = SlabGrid(job.scales, job.plan)
        self.done = frozenset(done) | {(level, i) for level in range(job.first)
                                       for i in range(self.grid.count(level))}
        self.sink, self.completion, spool = output_sink(job, store)
        self.volume = Dataset(store, job.info, job.scales, spool=spool)
        # A source that must read in order is read by one thread of this process.
        self._read_executor: Executor | TaskExecutor = (
            executor if source.parallel_reads or executor.in_process
            else ThreadPoolExecutor(1, thread_name_prefix="streamconv-read"))
        self.totals = Totals(stats=VolumeStats(job.scales, source.dtype) if job.collect_stats else None)
        if self.totals.stats is not None:
            self.totals.stats.resume(store, state_key(job.step), self.done)
        self._buffers: list[list[SlabBuffer]] = [[] for _ in self.scales]
        self._free: list[list[SlabBuffer]] = [[] for _ in self.scales]
        self._open: list[dict[int, _Slab]] = [{} for _ in self.scales]
        self._visited: set[tuple[int, int]] = set()  # opened or skipped: never opened twice
        self._in_flight: dict[Future[Any], tuple[TaskKind, _Slab | None]] = {}
        #: sections decoded once per slab for the tiles of a source that decodes whole sections
        self.scratch = (None if job.plan.nest is None else
                        Scratch.open(self.grid, source, store.url, state_key(job.step), self.done))

    def run(self) -> Totals:
        """Every slab of every scale, in order along the stream axis; what this run did."""
        try:
            self._finish(self.completion.start(self.done))
            for index in self.grid.order:
                self._start(index)
                self._check_stop()
            while self._in_flight:
                self._wait_one()
            self.completion.end()
            return self.totals
        except BaseException:
            self.executor.shutdown(wait=False, cancel_futures=True)  # a stopped run queues no more
            raise
        finally:
            if self._read_executor is not self.executor:
                self._read_executor.shutdown(wait=True, cancel_futures=True)
            if self.scratch is not None:  # after the reading thread's last decode
                self.scratch.close()
            for buffers in self._buffers:
                for buffer in buffers:
                    buffer.close()

    # Opening and filling

    def _start(self, index: int) -> None:
        """Open, on every scale, the slab that full-resolution slab `index` feeds, then fill the
        new ones that have a source: the full-resolution slab, and replayed slabs. Filling waits
        until every slab they feed is open, so a sealed slab always finds its target."""
        opened = []
        for level, i in enumerate(self.grid.chain(index)):
            if (level, i) not in self._visited:
                slab = self._open_slab(level, i)
                if slab is not None:
                    opened.append(slab)
        for slab in opened:
            if slab.replay:
                self._refill(slab)
            elif slab.in_file:
                slab.voxels_incoming = slab.voxels
                self._seal_if_ready(slab)
            elif slab.level == 0:
                self._fill(slab)

    def _open_slab(self, level: int, index: int) -> _Slab | None:
        """Open slab `index` of a scale on a buffer; None for a slab complete before this run
        whose target is complete too (or that has none): nothing to do."""
        self._visited.add((level, index))
        replay = (level, index) in self.done
        if replay and (level + 1 == len(self.scales)
                       or (level + 1, self.grid.target(level, index)) in self.done):
            self.totals.skipped_blocks += 1
            return None
        box = self.grid.box(level, index)
        buffer = self._buffer(level)  # taken even for mapped planes: the same backpressure
        mapped = (self.source.mapped(box.start[self.axis], box.stop[self.axis])
                  if level == 0 and not replay and not self.plan.tiled else None)
        slab = _Slab(level, index, box, buffer, mapped or buffer.ref, replay=replay)
        self._open[level][index] = slab
        if replay:
            self.totals.replayed_blocks += 1
        return slab

    def _buffer(self, level: int) -> SlabBuffer:
        """A free buffer of a scale, a new one while the plan allows more, or else the next one
        freed: waiting for tasks here is the backpressure that bounds memory."""
        while not self._free[level] and len(self._buffers[level]) >= self.plan.buffers[level]:
            self._wait_one()
        if self._free[level]:
            return self._free[level].pop()
        x, y, z = self.plan.slab_shape(self.scales[level], level)
        order = self.source.memory_order if level == 0 else MemoryOrder()
        buffer = SlabBuffer((self.source.num_channels, z, y, x), self.source.dtype, order)
        self._buffers[level].append(buffer)
        return buffer

    def _fill(self, slab: _Slab) -> None:
        """Read a full-resolution slab (or a tile of one) from the source, a few planes per task;
        or from its slab's sections decoded once (`scratch.py`), once they are."""
        if self.scratch is not None:
            slab.voxels_incoming = slab.voxels
            if self.scratch.ready(slab.index):
                self._fill_from_scratch(slab)
                return
            slab.writers += 1  # until its sections are decoded
            for fn, *args in self.scratch.want(slab, slab.index):
                self._in_flight[self._read_executor.submit(fn, *args)] = (TaskKind.DECODE, slab)
            return
        p0, p1 = slab.box.start[self.axis], slab.box.stop[self.axis]
        step = self.plan.fill_planes if self.source.parallel_reads else p1 - p0
        for p in range(p0, p1, step):
            end = min(p + step, p1)
            region = Box(along(self.axis, p, slab.box.start), along(self.axis, end, slab.box.stop))
            self._submit_writer(self._read_executor, slab, fill, self.source.window(p, end), region,
                                slab.ref, slab.box.start)
        slab.voxels_incoming = slab.voxels

    def _fill_from_scratch(self, slab: _Slab) -> None:
        assert self.scratch is not None
        for args in self.scratch.fills(slab.index, self.plan.fill_planes):
            self._submit_writer(self.executor, slab, fill_from_scratch, *args, slab.ref, slab.box.start)

    def _refill(self, slab: _Slab) -> None:
        """Read a slab complete before this run back from its chunks, a band per task."""
        for region in self.grid.bands_of(slab.level, slab.box):
            self._submit_writer(self.executor, slab, fill_from_store, self.volume, slab.level,
                                region, slab.ref, slab.box.start)
        slab.voxels_incoming = slab.voxels

    def _submit_writer(self, executor: Executor | TaskExecutor, slab: _Slab, fn: Callable[..., object],
                       *args: object) -> None:
        slab.writers += 1
        self._in_flight[executor.submit(fn, *args)] = (TaskKind.FILL, slab)

    # Sealing

    def _seal_if_ready(self, slab: _Slab) -> None:
        if slab.ready_to_seal:
            self._seal(slab)

    def _seal(self, slab: _Slab) -> None:
        """All planes are in: band tasks write the slab's chunks (unless replayed) and
        downsample it into its target, whose planes they are the writers of."""
        slab.sealed = True
        down = None
        if slab.level + 1 < len(self.scales):
            target = self._open[slab.level + 1][self.grid.target(slab.level, slab.index)]
            target.voxels_incoming += self.grid.downsampled_voxels(slab.level, slab.box)
            slab.target = target
            down = Downsample(target.ref, target.box.start,
                              self.scales[target.level].factor, self.job.method, self.job.outside_value)
        for region in self.grid.bands_of(slab.level, slab.box):
            band = Band(slab.ref, slab.box.start, slab.level, self.scales[slab.level],
                        region, self.job.fmt.codec, self.sink, self.job.skip_empty, down,
                        write=not slab.replay,
                        labels=self.job.collect_labels and slab.level == 0 and not slab.replay,
                        stats=sampling(self.scales[slab.level])
                        if self.job.collect_stats and not slab.replay else None)
            slab.readers += 1
            if slab.target is not None:
                slab.target.writers += 1
            self._in_flight[self.executor.submit(process_band, band)] = (TaskKind.BAND, slab)

    # Reacting to finished tasks

    def _wait_one(self) -> None:
        """Wait until at least one task has finished, and act on every finished one: in
        submission order, and every success before the first failure is raised, so that each
        slab that did complete is reported."""
        failure: BaseException | None = None
        for future in self._finished():
            kind, slab = self._in_flight.pop(future)
            error = future.exception()
            if error is not None:
                failure = failure or error
            elif slab is None:  # TaskKind.FINISH
                continue
            elif kind is TaskKind.FILL:
                self._fill_done(slab, future.result())
            elif kind is TaskKind.DECODE:
                replay(future.result())
                for block in self.scratch.decoded(slab.index) if self.scratch else ():
                    self._fill_from_scratch(block)
                    block.writers -= 1
            else:
                self._band_done(slab, future.result())
        if failure is not None:
            self._raise(failure)

    def _finished(self) -> list[Future[Any]]:
        """The tasks finished now, in submission order, once there is one; checks for a stop
        request every quarter second meanwhile."""
        if not self._in_flight:
            raise RuntimeError("pipeline stalled: waiting with no task in flight")
        done: set[Future[Any]] = set()
        while not done:
            self._check_stop()
            done, _ = wait(self._in_flight, timeout=0.25, return_when=FIRST_COMPLETED)
        return [f for f in self._in_flight if f in done]

    def _fill_done(self, slab: _Slab, logged: list[logging.LogRecord] | None) -> None:
        replay(logged)  # what a worker logged while reading (`worklog`): shown and counted here
        slab.writers -= 1
        if self.scratch is not None and slab.level == 0 and slab.writers == 0 and not slab.replay:
            self.scratch.filled(slab.index)
        self._seal_if_ready(slab)

    def _band_done(self, slab: _Slab, result: BandDone) -> None:
        self.totals.chunks += result.visited
        self.totals.written += result.written
        self.totals.nbytes += result.nbytes
        if self.hooks.progress:
            self.hooks.progress(slab.level, result.visited, result.nbytes)
        if result.labels is not None:
            self.totals.labels = np.union1d(self.totals.labels, result.labels.astype(np.uint64))
        if result.stats is not None:
            slab.stats.append(result.stats)
        slab.readers -= 1
        if slab.target is not None:
            slab.target.writers -= 1
            self._seal_if_ready(slab.target)
        if slab.readers == 0:
            self._release(slab)

    def _release(self, slab: _Slab) -> None:
        """Every band of the slab is done: its chunks are written and its planes are in its
        target, so its buffer is reused and it is reported complete."""
        del self._open[slab.level][slab.index]
        self._free[slab.level].append(slab.buffer)
        if not slab.replay:
            if self.totals.stats is not None and slab.stats:  # kept before the journal says done
                self.totals.stats.slab_done(self.store, state_key(self.job.step), slab.level, slab.index,
                                            merge(slab.stats, self.source.dtype))
            if self.hooks.slab_done:
                self.hooks.slab_done(slab.level, slab.index)
            self._finish(self.completion.slab_done(slab.level, slab.index))

    def _finish(self, tasks: list[Finish]) -> None:
        """Run what completed slabs made possible (assembling shards) on the workers."""
        for task in tasks:
            self._in_flight[self.executor.submit(run_finish, task)] = (TaskKind.FINISH, None)

    def _raise(self, failure: BaseException) -> None:
        """A task's error as the user should see it."""
        self._check_stop()  # workers killed by the same signal that stops us
        if isinstance(failure, BrokenProcessPool):
            for slab in self._open[0].values():  # an input file cut short under its mapping
                if why := slab.ref.missing():
                    raise DataError(why) from None
            raise WorkerDied("a worker process died (killed, or out of memory?); "
                             "lower --memory or --workers if it happens again") from None
        raise failure

    def _check_stop(self) -> None:
        if self.hooks.should_stop():
            raise Interrupted(f"{self.store.url}: interrupted")
