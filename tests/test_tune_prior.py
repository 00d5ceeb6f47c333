"""The analytic cost prior: each term moves the estimate the way the generated code does.

The first tests check the model's physics on a synthetic layer (no labels); the
last one checks that on the recorded VGG-16 set (real latencies of this
project's kernels) the prior ranks configs far better than chance.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from autotune.cost_model.prior import GENERIC_CORE, estimated_cycles, prior_score
from search_spaces import LayerSpec

SPEC = LayerSpec("conv", 256, 256, 56, 56).to_dict()
STATS = {"kernels_alive": 18204, "nonzeros": 72816, "patterns": 8}
BASE = {
    "oc_block": 8, "tile_rows": 4, "tile_vecs": 2, "ic_block": 32, "unroll": 1,
    "loop_order": "block_group_tile", "threads": 1, "thread_mapping": "contiguous",
    "vector_width": 16, "fkr": True, "lre": True, "format": "fkw", "shifted": False,
}  # fmt: skip


def cycles(**changes: Any) -> float:
    return estimated_cycles(SPEC, STATS, {**BASE, **changes})


def test_more_accumulators_fill_the_fma_pipes() -> None:
    assert cycles(tile_rows=1, tile_vecs=1) > cycles(tile_rows=2, tile_vecs=2) > cycles()


def test_lanes_wasted_at_the_width_edge_cost_time() -> None:
    # 56 columns: two 16-lane vectors waste 8 lanes per row, one vector wastes 8 of 64.
    narrow = LayerSpec("conv", 256, 256, 56, 48).to_dict()
    wide = LayerSpec("conv", 256, 256, 56, 64).to_dict()
    per_col = [estimated_cycles(s, STATS, BASE) / w for s, w in ((narrow, 48), (wide, 64))]
    assert per_col[0] > per_col[1]


def test_tiny_channel_blocks_pay_per_visit_overhead() -> None:
    assert cycles(ic_block=8) > cycles(ic_block=32)


def test_prefetch_pays_only_when_the_tile_input_outgrows_l1() -> None:
    # 256 channels x 6 rows x 34 columns (~200 KiB) overflow L1: refills overlap compute.
    assert cycles(ic_block=256, prefetch=2) < cycles(ic_block=256)
    # 4 channels (~3 KiB) stay in L1: prefetch only adds instructions.
    assert cycles(ic_block=4, prefetch=2) > cycles(ic_block=4)


def test_out_prefetch_pays_only_when_the_output_outgrows_l2() -> None:
    # VGG-16's features.2: 64 planes of 224 x 224 (12.8 MB) are written from no cache.
    big = LayerSpec("conv", 64, 64, 224, 224).to_dict()
    stats = {"kernels_alive": 1138, "nonzeros": 4552, "patterns": 8}
    cfg = {**BASE, "ic_block": 64, "loop_order": "tile_block_group"}
    on = estimated_cycles(big, stats, {**cfg, "out_prefetch": True})
    assert on < 0.95 * estimated_cycles(big, stats, cfg)
    # 256 planes of 56 x 56 (3.2 MB) also outgrow L2; 14 x 14 (200 KB) stay in it.
    assert cycles(out_prefetch=True) < cycles()
    small = LayerSpec("conv", 256, 256, 14, 14).to_dict()
    assert estimated_cycles(small, STATS, {**BASE, "out_prefetch": True}) > estimated_cycles(
        small, STATS, BASE)


def test_tile_outer_order_keeps_the_partial_outputs_close() -> None:
    # Small blocks revisit the output once per block: 3 MiB of partial sums per pass
    # miss L2 unless one tile's outputs (for every filter) are finished first.
    tile_outer = cycles(ic_block=16, oc_block=64, loop_order="tile_block_group")
    assert tile_outer < cycles(ic_block=16, oc_block=64)


def test_channel_blocks_that_outgrow_l2_are_refetched_per_filter_group() -> None:
    big = LayerSpec("conv", 128, 128, 112, 112).to_dict()
    stats = {"kernels_alive": 4551, "nonzeros": 18204, "patterns": 8}
    huge_l2 = dataclasses.replace(GENERIC_CORE, l2_bytes=64 * 1024 * 1024)

    def ratio(core: Any) -> float:
        c128 = estimated_cycles(big, stats, {**BASE, "ic_block": 128}, core)
        return c128 / estimated_cycles(big, stats, {**BASE, "ic_block": 32}, core)

    # 128 channel planes of 112 x 112 (7.5 MB) outgrow a 1 MiB L2 far more than 32 do.
    assert ratio(GENERIC_CORE) > ratio(huge_l2)


def test_threads_share_the_filter_groups() -> None:
    assert cycles(threads=4) == pytest.approx(cycles() / 4)
    assert cycles(threads=3, oc_block=64) == pytest.approx(cycles(oc_block=64) * 2 / 4)


def test_pattern_specialised_code_is_preferred() -> None:
    assert cycles(format="csr", lre=False) > cycles(lre=False)
    assert prior_score(SPEC, STATS, BASE) == pytest.approx(-np.log(cycles()))


def test_prior_ranks_the_recorded_set() -> None:
    from scipy.stats import spearmanr

    from autotune.measurement_set import load
    from tests.search_bench_support import SHIPPED

    for rec in load(SHIPPED).layers:
        ok = rec.measured()
        lat = [e.latency("min") for e in ok]
        score = [prior_score(rec.spec, rec.stats, e.config.to_dict()) for e in ok]
        rho = spearmanr(score, [-t for t in lat])[0]
        assert rho > 0.65, (rec.name, rho)
        # Its favourite config is within 25% of the layer's best.
        assert lat[int(np.argmax(score))] < 1.25 * min(lat), rec.name
