"""The memory planner and the pyramid plan."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from streamconv.engine.budget import plan_slabs, plan_worker_slabs, task_memory
from streamconv.errors import UsageError
from streamconv.format.pyramid import plan_scales
from streamconv.units import format_size, parse_size

MiB = 1 << 20


def test_sizes_read_as_people_write_them():
    assert parse_size("512MiB") == 512 * MiB
    assert parse_size("2G") == 2 << 30
    assert parse_size("1.5GiB") == 3 << 29
    assert parse_size("4GB") == 4 * 10 ** 9
    assert parse_size(1000) == 1000
    with pytest.raises(UsageError):
        parse_size("plenty")


@pytest.mark.parametrize("budget", ["300MiB", "512MiB", "2GiB", "16GiB"])
def test_plans_fit_their_budget_or_name_the_minimum(budget):
    scales = plan_scales((1024, 1024, 1024), (1e6, 1e6, 1e6))
    try:
        plan = plan_slabs(scales, 1, np.dtype("uint8"), 2, parse_size(budget), True, main_base=60 * MiB)
    except UsageError as exc:
        assert "below" in str(exc) and "MiB" in str(exc)
        return
    assert plan.minimum <= plan.estimate <= plan.budget
    assert all(p % 64 == 0 for p in plan.slab_planes)  # whole chunk rows and downsampling pairs
    for k in range(1, len(scales)):  # a slab's output always lands in one slab of the next scale
        assert plan.slab_planes[k] >= plan.slab_planes[k - 1] // 2


def test_more_memory_buys_overlap_not_less():
    scales = plan_scales((6572, 256, 5711), (21166.67, 20000, 21166.67))
    tight = plan_slabs(scales, 1, np.dtype("uint8"), 2, 4 << 30, True, stream_axis=1, main_base=60 * MiB)
    roomy = plan_slabs(scales, 1, np.dtype("uint8"), 2, 16 << 30, True, stream_axis=1, main_base=60 * MiB)
    assert tight.estimate <= 4 << 30 and tight.buffers[0] == 1
    assert roomy.buffers[0] == 2 and roomy.estimate > tight.estimate


def test_isotropic_pyramid_halves_everything_until_one_chunk():
    scales = plan_scales((197, 233, 189), (1e6, 1e6, 1e6))
    assert [s.factor for s in scales] == [(1, 1, 1), (2, 2, 2), (2, 2, 2)]
    assert scales[-1].size == (50, 59, 48) and scales[-1].num_chunks == 1


def test_anisotropic_pyramid_halves_the_fine_axes_first():
    scales = plan_scales((1000, 1000, 100), (4, 4, 40))
    assert [s.factor for s in scales[1:4]] == [(2, 2, 1)] * 3
    assert scales[0].chunk_size[0] == scales[0].chunk_size[1] > scales[0].chunk_size[2]
    assert scales[0].key == "4_4_40" and scales[1].key == "8_8_40"
    assert len(plan_scales((1000, 1000, 100), (4, 4, 40), max_scales=2)) == 2


def test_one_voxel_axes_are_not_halved():
    scales = plan_scales((300, 200, 1), (1, 1, 1), chunk_size=32)
    assert all(s.factor[2] == 1 and s.size[2] == 1 for s in scales)


@pytest.mark.parametrize("chunk", [0, 3, 48])
def test_chunk_size_must_be_a_power_of_two(chunk):
    with pytest.raises(UsageError, match="power of two"):
        plan_scales((10, 10, 10), (1, 1, 1), chunk_size=chunk)


def test_tiles_make_the_minimum_independent_of_the_section_area():
    """Whole planes of BigBrain's sections need 3.4 GiB with 2 workers; tiles fit 1 GiB, and the
    minimum of a tiled plan hardly moves from 4k to 64k sections (the scales' count and one row
    band of a read task aside)."""
    budget, uint8 = 1 << 30, np.dtype("uint8")
    bigbrain = plan_scales((6572, 7404, 5711), (2e4, 2e4, 2e4))
    whole = plan_slabs(bigbrain, 1, uint8, 2, 1 << 40, True, 1, main_base=60 * MiB)
    assert not whole.tiled and format_size(whole.minimum) == "3.4 GiB"
    minima = []
    for side in (4096, 16384, 65536):
        scales = plan_scales((side, side, 512), (1e3, 1e3, 1e3))
        plan = plan_slabs(scales, 1, uint8, 2, budget, True, main_base=60 * MiB)
        assert plan.tiled and plan.minimum <= plan.estimate <= budget
        minima.append(plan.minimum)
        for k in range(len(scales)):  # whole chunks and pairs; a tile feeds one tile of the next scale
            for j, ax in enumerate((1, 0)):
                tile, nxt = plan.tiles[k][j], scales[k + 1].factor[ax] if k + 1 < len(scales) else 1
                assert tile % scales[k].chunk_size[ax] == 0 and tile % nxt == 0
                if k + 1 < len(scales):
                    assert plan.tiles[k + 1][j] % (tile // nxt) == 0
    assert max(minima) < 1.1 * min(minima)


@pytest.mark.parametrize("reads_regions", [True, False], ids=["by-region", "whole-sections"])
def test_a_dask_worker_without_room_for_whole_planes_gets_tiles(reads_regions):
    """One worker's room of 1 GiB and BigBrain's sections: a task per block, each within the room;
    a source that decodes whole sections has no nesting (`nest` None) but a slab's decoded
    sections on the worker's local disk, and its tasks of scale 0 count a decoded section."""
    budget, uint8 = 1 << 30, np.dtype("uint8")
    bigbrain = plan_scales((6572, 7404, 5711), (2e4, 2e4, 2e4))
    plan = plan_worker_slabs(bigbrain, 1, uint8, budget, 1, reads_regions=reads_regions)
    assert plan.tiled and plan.nest is None
    needs = [task_memory(plan, bigbrain, k, 1) for k in range(len(bigbrain))]
    assert max(needs) <= budget
    section = 6572 * 5711
    assert plan.decode_per_slab == (not reads_regions)
    assert ("each section decoded once per slab by one task" in plan.summary()) == (not reads_regions)
    # one slab of decoded sections on the worker's local disk, not in its memory
    assert plan.task_scratch_bytes(bigbrain[0], 1) == (0 if reads_regions else plan.slab_planes[0] * section)
    # a section decoded whole and its copy, instead of the tile's rows of one section (pread)
    whole, rows = replace(plan, decode_per_slab=True), replace(plan, decode_per_slab=False)
    assert task_memory(whole, bigbrain, 0, 1) - task_memory(rows, bigbrain, 0, 1) > section
    with pytest.raises(UsageError, match="a task of this conversion needs on a Dask worker"):
        plan_worker_slabs(bigbrain, 1, uint8, 16 * MiB, 1, reads_regions=reads_regions)


@pytest.mark.parametrize("reads_regions", [True, False], ids=["by-region", "whole-sections"])
def test_a_dask_worker_whose_room_holds_whole_planes_but_not_a_tasks_copies_gets_tiles(reads_regions):
    """4 GiB and the 256-section BigBrain-like stack: whole planes plan within 4 GiB, but a task
    holds its slab twice (5.6 GiB): the planner goes on to tiles instead of refusing."""
    budget, uint8 = 4 << 30, np.dtype("uint8")
    stack = plan_scales((6572, 256, 5711), (21166.67, 2e4, 21166.67))
    plan = plan_worker_slabs(stack, 1, uint8, budget, 1, reads_regions=reads_regions)
    assert plan.tiled
    assert max(task_memory(plan, stack, k, 1) for k in range(len(stack))) <= budget
