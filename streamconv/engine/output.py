"""The output side of a job: plain chunk files, or shards assembled from a spool, chosen from
the info (a scale with a `sharding` spec is sharded)."""

from __future__ import annotations

from ..layout.inplace import placed_voxel_bytes
from ..layout.sink import ChunkSink, Completion, FileSink, NoCompletion
from ..layout.spool import ShardCompletion, ShardedLevel, ShardSpool
from ..stores.base import Store
from .budget import in_plane
from .job import Job
from .journal import state_key


def output_sink(job: Job, store: Store) -> tuple[ChunkSink, Completion, str | None]:
    """Where the band tasks put chunks, what completes them, and the spool to read back from
    (None: plain files). A scale whose info has a `sharding` spec is written in place when its
    chunks' sizes are known ahead (`sharding/inplace.py`), else spooled and assembled."""
    files = FileSink(store, job.fmt.compression)
    specs = tuple(s.sharding for s in job.info.scales)
    written = [level for level in range(job.first, len(job.scales)) if specs[level] is not None]
    if not written:
        return files, NoCompletion(), None
    root = f"{state_key(job.step)}/spool"
    item = job.info.num_channels * job.info.dtype.itemsize
    placed: list[int | None] = [None] * len(specs)
    levels = []
    for level in written:
        spec = specs[level]
        assert spec is not None
        placed[level] = placed_voxel_bytes(store, job.scales[level], spec, job.info.scales[level].codec,
                                           job.info.dtype, job.info.num_channels, job.skip_empty)
        shape = job.plan.slab_shape(job.scales[level], level)
        b_ax, r_ax = in_plane(job.plan.stream_axis)
        levels.append(ShardedLevel(level, job.scales[level], spec, job.plan.slab_planes[level], item,
                                   placed[level], (shape[b_ax], shape[r_ax]) if job.plan.tiled else None))
    spool = ShardSpool(store, root, specs, files, job.fmt.compression, tuple(placed))
    return spool, ShardCompletion(store, root, levels, job.plan.stream_axis), root
