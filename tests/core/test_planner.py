"""The tile planner and the memory estimate (torch-free: the bench imports them)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from conftest import make_manifest

from f2i_mobile.core.contract import GRAPHS
from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.planner import ReceptiveField, photo_calls, plan_tiles


def test_planner_imports_no_torch():
    code = ("import sys; import f2i_mobile.core.planner, android_bench.plan; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("size", [(1, 1), (5, 3), (16, 16), (17, 16), (61, 29), (100, 37)])
@pytest.mark.parametrize("overlap,rf", [(0, None), (4, None), (8, 3), (6, 1)])
def test_blend_weights_are_a_partition_of_unity(size, overlap, rf):
    w, h = size
    plan = plan_tiles(w, h, scale=4, tile=16, overlap=overlap, multiple=2, receptive_field=rf)
    cw, ch = plan.canvas
    assert cw >= max(w, 16) and ch >= max(h, 16)
    total = np.zeros((ch * 4, cw * 4))
    for t in plan.tiles:
        total[t.out.y0:t.out.y1, t.out.x0:t.out.x1] += plan.weights(t)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    if rf and plan.seam_safe:  # nothing within rf of a tile's inner edge is used
        mu = plan.margin * 4
        t = plan.tiles[0]
        if plan.cols > 1:
            assert not plan.weights(t)[:, -mu:].any()


def test_plan_rounds_overlap_to_the_multiple_and_refuses_bad_tiles():
    plan = plan_tiles(100, 50, scale=4, tile=32, overlap=5, multiple=4)
    assert plan.overlap == 8 and plan.stride == 24 and all(t.lr.x0 % 4 == 0 for t in plan.tiles)
    with pytest.raises(F2IError, match="multiple of 4"):
        plan_tiles(100, 50, scale=4, tile=30, overlap=4, multiple=4)
    with pytest.raises(F2IError, match="more than half"):
        plan_tiles(100, 50, scale=4, tile=32, overlap=20, multiple=4)


def test_photo_calls_from_a_manifest_for_the_bench():
    from android_bench.plan import photo_plan

    manifest = make_manifest(tile=128, overlap=32)
    for i, g in enumerate(GRAPHS):
        manifest.graphs[g] = replace(manifest.graphs[g], flops=2_000_000_000 * (i + 1))
    plan, calls = photo_calls(manifest, 4000, 3000)
    assert plan.cols == 1 + -(-(1000 - 128) // 96) and plan.rows == 1 + -(-(750 - 128) // 96)
    assert calls == {"conditioner": 1, "statistics": 1, "encoder": plan.count,
                     "unet": plan.count, "decoder": plan.count}
    assert plan.gflops == pytest.approx(2 + 4 + (6 + 8 + 10) * plan.count)
    p = photo_plan(manifest, 4000, 3000)
    assert p.tiles == plan.count and p.calls == calls
    # the overlap and receptive field recorded by the export are the ones planned with
    manifest.tiling = replace(manifest.tiling, overlap=16, receptive_field=ReceptiveField(5))
    plan, _ = photo_calls(manifest, 4000, 3000)
    assert plan.overlap == 16 and plan.receptive_field == 5 and plan.margin == 5


def test_estimate_counts_the_statistics_pass_once_per_photo():
    """The photo graphs run once at batch 1 before any tile: when the statistics pass holds
    more than a batch of tiles, it sets the peak; what each graph's first run keeps resident
    counts once, whatever the batch or order."""
    from f2i_mobile.core.planner import MEASURED_SPREAD, GraphCost, estimate_peak

    act = 100 << 20
    tiles = {g: GraphCost(1.0, 0, 1 << 20, 0) for g in GRAPHS}
    heavy = {**tiles, "statistics": GraphCost(3.0, 0, act, 0)}
    plan = plan_tiles(1000, 750, scale=4, tile=128, overlap=28, multiple=8, costs=tiles)
    with_pass = plan_tiles(1000, 750, scale=4, tile=128, overlap=28, multiple=8, costs=heavy)
    for order in ("tile", "stage"):
        rise = estimate_peak(with_pass, order, 1) - estimate_peak(plan, order, 1)
        assert rise == pytest.approx((act - (1 << 20)) * MEASURED_SPREAD, rel=0.05)
    # a batch of 4 tiles at 60 MiB each outweighs the 100 MiB pass; one tile does not
    big_tiles = {g: GraphCost(1.0, 0, 60 << 20, 0) for g in GRAPHS} | {"statistics": heavy[
        "statistics"]}
    big = plan_tiles(1000, 750, scale=4, tile=128, overlap=28, multiple=8, costs=big_tiles)
    assert estimate_peak(big, "tile", 4) - estimate_peak(big, "tile", 1) == pytest.approx(
        (4 * (60 << 20) - act) * MEASURED_SPREAD, rel=0.01)
    assert with_pass.calls()["statistics"] == 1
    kept = {g: GraphCost(1.0, 0, c.activation_bytes, 0, retained_bytes=7 << 20)
            for g, c in tiles.items()}
    plan_kept = plan_tiles(1000, 750, scale=4, tile=128, overlap=28, multiple=8, costs=kept)
    for order, batch in (("tile", 1), ("tile", 4), ("stage", 2)):
        assert (estimate_peak(plan_kept, order, batch) - estimate_peak(plan, order, batch)
                == len(GRAPHS) * int((7 << 20) * MEASURED_SPREAD))
