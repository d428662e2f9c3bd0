"""The streaming pipeline: slabs flow from the source through every scale of the pyramid.

Each scale holds a few slab buffers. A full-resolution slab is filled by read tasks; once full
it is *sealed*: band tasks write its chunks and downsample it into the next scale's open slab,
which is sealed in turn when all its planes have arrived. A buffer is reused once its band tasks
are done. One loop in the main process reacts to finished tasks, so reading, encoding, writing
and downsampling of different slabs and scales overlap, and memory is bounded by the buffers.

Resuming, a slab recorded complete is skipped, unless the slab it feeds on the next scale is
not complete: then it is *replayed*, read back from its chunks on disk and only downsampled, so
a lost partial slab of a coarser scale is rebuilt from what the finer scale already holds.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Callable

from ..encodings import ChunkFormat
from ..errors import Interrupted, WorkerDied
from ..geometry import Box, ceil_div
from ..reader import Volume
from ..sources import Source
from ..sources.base import MemoryOrder
from .buffers import SlabBuffer
from .executor import InlineExecutor
from .plan import Plan, band_axis
from .tasks import Band, Downsample, fill, fill_from_store, process_band

#: progress(scale index, chunks done, bytes written)
ProgressFn = Callable[[int, int, int], None]


@dataclass(eq=False)
class _Slab:
    """Planes [p0, p1) along the stream axis of one scale, held in one buffer."""

    level: int
    index: int
    p0: int
    p1: int
    buffer: SlabBuffer
    scheduled: int = 0   # planes whose fill tasks have been submitted
    pending: int = 0     # fill tasks not finished
    users: int = 0       # band tasks not finished
    sealed: bool = False
    replay: bool = False  # complete already: read back and downsampled, not written
    target: "_Slab | None" = field(default=None, repr=False)


@dataclass
class Totals:
    chunks: int = 0
    written: int = 0
    nbytes: int = 0
    skipped_slabs: int = 0   # complete before this run, not touched
    replayed_slabs: int = 0  # complete before this run, read back to rebuild the next scale


class Pipeline:
    def __init__(self, source: Source, volume: Volume, fmt: ChunkFormat, method: str,
                 skip_empty: bool, plan: Plan, executor: Executor,
                 progress: ProgressFn | None = None, done: frozenset[tuple[int, int]] = frozenset(),
                 on_slab_done: Callable[[int, int], None] | None = None,
                 should_stop: Callable[[], bool] = lambda: False,
                 outside_value: float | None = None) -> None:
        """`volume`: the output's scales, where chunks are written and complete slabs read back."""
        self.source, self.volume, self.plan = source, volume, plan
        self.scales, self.store = volume.scales, volume.store
        self.fmt, self.method, self.skip_empty = fmt, method, skip_empty
        self.outside_value = outside_value
        self.executor = executor
        # A source that must read in order is read by one thread of this process.
        self.reader: Executor = executor if source.parallel_reads or isinstance(executor, InlineExecutor) \
            else ThreadPoolExecutor(1, thread_name_prefix="streamconv-read")
        self.progress = progress
        self.done, self.on_slab_done, self.should_stop = done, on_slab_done, should_stop
        self.axis = plan.stream_axis
        self.totals = Totals()
        self._buffers: list[list[SlabBuffer]] = [[] for _ in self.scales]
        self._free: list[list[SlabBuffer]] = [[] for _ in self.scales]
        self._open: list[dict[int, _Slab]] = [{} for _ in self.scales]
        self._futures: dict[Future, tuple[str, _Slab]] = {}
        self._seen: set[tuple[int, int]] = set()

    def run(self) -> Totals:
        try:
            s0 = self.plan.slab_planes[0]
            for index in range(ceil_div(self.scales[0].size[self.axis], s0)):
                # Open, on every scale, the slab this one feeds: waiting for a free buffer
                # here is the backpressure that bounds memory.
                factor = 1
                opened = []
                for level, scale in enumerate(self.scales):
                    factor *= scale.factor[self.axis]
                    slab = self._slab(level, (index * s0 // factor) // self.plan.slab_planes[level])
                    if slab is not None and not slab.scheduled:
                        opened.append(slab)
                # Filled only now that every slab they feed is open.
                for slab in opened:
                    if slab.replay:
                        self._refill(slab)
                    elif slab.level == 0:
                        self._fill(slab)
                self._check_stop()
            while self._futures:
                self._wait_one()
            return self.totals
        except BaseException:
            for future in self._futures:
                future.cancel()
            raise
        finally:
            if self.reader is not self.executor:
                self.reader.shutdown(wait=True, cancel_futures=True)
            for buffers in self._buffers:
                for buffer in buffers:
                    buffer.close()

    def _target_index(self, level: int, index: int) -> int:
        """Index of the slab of scale `level + 1` that slab `index` of `level` feeds."""
        f = self.scales[level + 1].factor[self.axis]
        return (index * self.plan.slab_planes[level] // f) // self.plan.slab_planes[level + 1]

    def _slab(self, level: int, index: int) -> _Slab | None:
        """The open slab `index` of a scale, opening it on a free buffer (waiting for one);
        None for a slab complete before this run whose next slab is complete too."""
        slab = self._open[level].get(index)
        if slab is not None or (level, index) in self._seen:
            return slab
        self._seen.add((level, index))
        replay = (level, index) in self.done
        if replay and (level + 1 == len(self.scales)
                       or (level + 1, self._target_index(level, index)) in self.done):
            self.totals.skipped_slabs += 1
            return None
        scale, planes = self.scales[level], self.plan.slab_planes[level]
        while not self._free[level] and len(self._buffers[level]) >= self.plan.buffers[level]:
            self._wait_one()
        if self._free[level]:
            buffer = self._free[level].pop()
        else:
            x, y, z = self.plan.slab_shape(scale, level)
            order = self.source.memory_order if level == 0 else MemoryOrder()
            buffer = SlabBuffer((self.source.num_channels, z, y, x), self.source.dtype, order)
            self._buffers[level].append(buffer)
        p0 = index * planes
        slab = _Slab(level, index, p0, min(p0 + planes, scale.size[self.axis]), buffer, replay=replay)
        self._open[level][index] = slab
        if replay:
            self.totals.replayed_slabs += 1
        return slab

    def _refill(self, slab: _Slab) -> None:
        """Read a slab complete before this run back from its chunks."""
        for region in self._bands(slab):
            slab.pending += 1
            self._submit(self.executor, "fill", slab, fill_from_store, self.volume, slab.level,
                         region, slab.buffer.ref, self._origin(slab))
        slab.scheduled = slab.p1 - slab.p0

    def _origin(self, slab: _Slab) -> tuple[int, int, int]:
        origin = [0, 0, 0]
        origin[self.axis] = slab.p0
        return tuple(origin)  # type: ignore[return-value]

    def _submit(self, executor: Executor, kind: str, slab: _Slab, fn: Callable, *args: object) -> None:
        self._futures[executor.submit(fn, *args)] = (kind, slab)

    def _fill(self, slab: _Slab) -> None:
        step = self.plan.fill_planes if self.source.parallel_reads else slab.p1 - slab.p0
        for p in range(slab.p0, slab.p1, step):
            slab.pending += 1
            self._submit(self.reader, "fill", slab, fill, self.source, p, min(p + step, slab.p1),
                         slab.buffer.ref, slab.p0)
        slab.scheduled = slab.p1 - slab.p0

    def _wait_one(self) -> None:
        if not self._futures:
            raise RuntimeError("pipeline stalled: waiting with no task in flight")
        done: set[Future] = set()
        while not done:
            self._check_stop()
            done, _ = wait(self._futures, timeout=0.25, return_when=FIRST_COMPLETED)
        # In submission order, and every success before the first failure is raised, so that
        # each slab that did complete is recorded.
        failure: BaseException | None = None
        for future in [f for f in self._futures if f in done]:
            kind, slab = self._futures.pop(future)
            error = future.exception()
            if error is not None:
                failure = failure or error
                continue
            result = future.result()
            if kind == "fill":
                slab.pending -= 1
                self._maybe_seal(slab)
            else:
                visited, written, nbytes = result
                self.totals.chunks += visited
                self.totals.written += written
                self.totals.nbytes += nbytes
                if self.progress:
                    self.progress(slab.level, visited, nbytes)
                slab.users -= 1
                if slab.target is not None:
                    slab.target.pending -= 1
                    self._maybe_seal(slab.target)
                if slab.users == 0:
                    del self._open[slab.level][slab.index]
                    self._free[slab.level].append(slab.buffer)
                    if self.on_slab_done and not slab.replay:
                        self.on_slab_done(slab.level, slab.index)
        if failure is not None:
            self._check_stop()  # workers killed by the same signal that stops us
        if isinstance(failure, BrokenProcessPool):
            raise WorkerDied("a worker process died (killed, or out of memory?); "
                             "lower --memory or --workers if it happens again") from None
        if failure is not None:
            raise failure

    def _check_stop(self) -> None:
        if self.should_stop():
            raise Interrupted(f"{self.store.url}: interrupted")

    def _maybe_seal(self, slab: _Slab) -> None:
        if slab.sealed or slab.pending or slab.scheduled < slab.p1 - slab.p0:
            return
        slab.sealed = True
        level, scale, axis = slab.level, self.scales[slab.level], self.axis
        down = None
        if level + 1 < len(self.scales):
            nxt = self.scales[level + 1]
            f = nxt.factor[axis]
            target = self._open[level + 1][self._target_index(level, slab.index)]
            target.scheduled += ceil_div(slab.p1, f) - slab.p0 // f
            slab.target = target
            down = Downsample(target.buffer.ref, self._origin(target), nxt.factor, self.method,
                              self.outside_value)
        for region in self._bands(slab):
            band = Band(slab.buffer.ref, self._origin(slab), scale, region, self.store,
                        self.fmt, self.skip_empty, down, write=not slab.replay)
            slab.users += 1
            if slab.target is not None:
                slab.target.pending += 1
            self._submit(self.executor, "band", slab, process_band, band)

    def _bands(self, slab: _Slab) -> list[Box]:
        """The slab cut along the band axis into regions of whole chunks."""
        scale = self.scales[slab.level]
        b_ax, rows = band_axis(self.axis), self.plan.band_rows[slab.level]
        regions = []
        for r0 in range(0, scale.size[b_ax], rows):
            start, stop = [0, 0, 0], list(scale.size)
            start[self.axis], stop[self.axis] = slab.p0, slab.p1
            start[b_ax], stop[b_ax] = r0, min(r0 + rows, scale.size[b_ax])
            regions.append(Box(tuple(start), tuple(stop)))  # type: ignore[arg-type]
        return regions
