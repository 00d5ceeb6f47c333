"""FKW layout, FKR order and thread mapping: exact sizes, orders and schedules."""

from __future__ import annotations

import numpy as np
import pytest

from codegen import config_space, generate, host_target
from codegen.fkw import filter_order, pack, thread_schedule, used_patterns
from codegen.layout import INPUT_SLACK, Layout
from codegen.tiles import channel_lines, variants
from search_spaces.layers import LayerSpec
from search_spaces.projection import random_pruned_layer
from tests.codegen_support import PATTERNS8

LAYER = random_pruned_layer(LayerSpec("l", cin=40, cout=12, h=6, w=6), PATTERNS8,
                            connectivity="3.6x", seed=4)


def test_fkw_bytes_are_exact() -> None:
    cfg = config_space(LAYER.spec, host_target()).default().replace(ic_block=16)
    packed = pack(LAYER, cfg)
    k, nb, cout = len(used_patterns(LAYER)), 3, LAYER.spec.cout
    expected = (4 * LAYER.nonzeros            # tap weights
                + 2 * LAYER.kernels_alive     # uint16 channel per kernel
                + 2 * cout * (nb * k + 1)     # uint16 run offsets per filter
                + 4 * (cout + 1)              # int32 filter starts
                + 4 * cout)                   # int32 FKR permutation
    assert packed.format_bytes == expected
    assert generate(LAYER, cfg, host_target()).format_bytes == expected


def test_fkw_runs_hold_each_kernel_once_sorted_by_pattern() -> None:
    cfg = config_space(LAYER.spec, host_target()).default().replace(ic_block=40)
    arrays = dict(pack(LAYER, cfg).arrays)
    used = used_patterns(LAYER)
    for i, f in enumerate(arrays["perm"]):
        start = arrays["fstart"][i]
        rel = arrays["rel"].reshape(LAYER.spec.cout, -1)[i]
        for slot, p in enumerate(used):
            chans = arrays["chan"][start + rel[slot]: start + rel[slot + 1]]
            want = np.flatnonzero(LAYER.alive[f] & (LAYER.pattern_ids[f] == p))
            assert list(chans) == list(want)


def test_fkr_sorts_filters_by_kernel_count() -> None:
    order = filter_order(LAYER, True)
    counts = LAYER.alive.sum(axis=1)[order]
    assert list(counts) == sorted(counts, reverse=True)
    assert sorted(order) == list(range(LAYER.spec.cout))
    assert list(filter_order(LAYER, False)) == list(range(LAYER.spec.cout))


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        ("contiguous", [[0, 1], [2, 3, 4]]),
        ("interleaved", [[0, 2, 4], [1, 3]]),
        ("balanced", [[0, 3], [1, 2, 4]]),
    ],
)
def test_thread_mappings(mapping: str, expected: list[list[int]]) -> None:
    assert thread_schedule([9, 5, 2, 1, 3], 2, mapping) == expected


def test_unknown_mapping_is_rejected() -> None:
    with pytest.raises(ValueError, match="thread_mapping must be one of contiguous, interleaved, "
                                         "balanced; got 'rr'"):
        thread_schedule([1], 1, "rr")


def test_layout_skews_large_planes_off_4k_and_packs_small_ones() -> None:
    big = LayerSpec("big", cin=8, cout=8, h=56, w=56)
    lay = Layout.of(big, config_space(big, host_target()).default())
    assert lay.plane % 1024 == 48 and lay.chan_stride % 1024 == 16
    # 14x14: a 16-float row (14 columns + 2 zero borders), planes back to back.
    small = LayerSpec("small", cin=8, cout=8, h=14, w=14)
    lay = Layout.of(small, config_space(small, host_target()).default())
    assert (lay.wph, lay.hp, lay.plane, lay.chan_stride) == (16, 16, 256, 256)


@pytest.mark.parametrize("spec", [
    LayerSpec("s1", cin=3, cout=4, h=14, w=14), LayerSpec("s2", cin=3, cout=4, h=56, w=56, stride=2),
    LayerSpec("odd", cin=3, cout=4, h=7, w=9), LayerSpec("wide", cin=3, cout=4, h=5, w=112),
])
def test_layout_rows_hold_what_valid_outputs_read_and_reads_stay_in_the_buffer(
        spec: LayerSpec) -> None:
    """Rows are only as wide as the valid outputs need, so a partial last vector reads on
    past its row; every tile's farthest read (its taps' lines, the shuffle's extra vector)
    must still land inside the input buffer plus its zeroed ``INPUT_SLACK``."""
    space = config_space(spec, host_target())
    for cfg in space.sample(np.random.default_rng(0), 40):
        lay = Layout.of(spec, cfg)
        s = spec.stride
        assert lay.wph % 16 == 0
        assert lay.wph >= spec.out_w + (spec.kw - 1) // s
        assert lay.wph < max(spec.out_w + (spec.kw - 1) // s, -(-(spec.padding + spec.w) // s)) + 16
        last = variants(lay)[(True, True)]
        base = (spec.cin - 1) * lay.chan_stride + (lay.nty - 1) * lay.rows * s * lay.wph \
            + (lay.ntx - 1) * lay.tw
        farthest = base + max(channel_lines(last, lay)) + lay.vl
        assert farthest <= lay.input_floats + INPUT_SLACK, (cfg, farthest, lay.input_floats)
