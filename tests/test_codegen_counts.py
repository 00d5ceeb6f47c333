"""Counts of what a generated kernel executes, checked by hand on a one-kernel layer."""

from __future__ import annotations

import numpy as np

from codegen import KernelConfig, config_space, host_target
from codegen.counts import count
from search_spaces.layers import LayerSpec, PrunedLayer
from search_spaces.patterns import PatternSet, all_patterns
from tests.codegen_support import required_layers

# taps (0,1), (1,0), (1,1), (1,2): a plus without its bottom arm
PLUS = PatternSet((all_patterns()[26],))


def _one_kernel(h: int = 16, w: int = 16) -> PrunedLayer:
    spec = LayerSpec("one", cin=1, cout=1, h=h, w=w)
    weights = (PLUS.masks()[0] * 0.5).astype(np.float32).reshape(1, 1, 3, 3)
    return PrunedLayer(spec=spec, pattern_set=PLUS, pattern_ids=np.zeros((1, 1), np.int16),
                       alive=np.ones((1, 1), bool), weights=weights)


def test_one_kernel_counted_by_hand() -> None:
    assert PLUS[0].offsets == ((0, 1), (1, 0), (1, 1), (1, 2))
    layer = _one_kernel()
    cfg = KernelConfig(tile_rows=4, tile_vecs=1, vector_width=16, ic_block=1, lre=True)
    config_space(layer.spec, host_target()).validate(cfg)
    # 16 x 16 output: 4 tiles of 4 rows x 1 vector; 4 taps x 4 rows FMAs per tile.
    plain = count(layer, cfg)
    assert plain.vector_fmas == 4 * 16 and plain.visits == 4 and plain.acc_loads == 0
    # LRE: input rows 0-4 at dx 1, rows 1-4 at dx 0 and dx 2 = 13 loads a tile, and the
    # 9 at dx 1 or 2 straddle two lines (16-float vectors from a line-aligned row).
    assert (plain.loads, plain.split_loads, plain.shuffles) == (4 * 13, 4 * 9, 0)
    assert plain.broadcasts == 4 * 4 and plain.pattern_loops == 4
    # tap_shuffle: two aligned loads per input row (0-4), a shift per row and dx > 0.
    shuffled = count(layer, cfg.replace(tap_shuffle=True))
    assert (shuffled.loads, shuffled.split_loads, shuffled.shuffles) == (4 * 10, 0, 4 * 9)
    assert shuffled.vector_fmas == plain.vector_fmas
    # shift_sums: one aligned load per input row (0-4), and per visit each of the tile's 4
    # accumulators takes its offset-1 and offset-2 sums shifted into place.
    sums = count(layer, cfg.replace(shift_sums=True))
    assert (sums.loads, sums.split_loads, sums.shuffles) == (4 * 5, 0, 4 * 4 * 2)
    assert sums.vector_fmas == plain.vector_fmas
    # Without LRE every FMA loads its own vector.
    assert count(layer, cfg.replace(lre=False)).loads == plain.vector_fmas


def test_lanes_cover_the_useful_macs_and_blocks_reload_accumulators() -> None:
    for name, layer in required_layers().items():
        sp = config_space(layer.spec, host_target())
        cfg = sp.default()
        c = count(layer, cfg)
        assert c.vector_fmas * cfg.vector_width >= layer.pruned_macs, name
        csr = count(layer, sp.default().replace(format="csr", lre=False, tap_shuffle=False,
                                                shift_sums=False))
        assert csr.vector_fmas == c.vector_fmas and csr.broadcasts == c.broadcasts, name
    layer = required_layers()["odd_width"]  # cin 8
    cfg = config_space(layer.spec, host_target()).default().replace(ic_block=4)
    c = count(layer, cfg)
    assert c.acc_loads * 2 == c.acc_stores  # the second of two blocks reloads
