"""FKW layout, FKR order and thread mapping: exact sizes, orders and schedules."""

from __future__ import annotations

import numpy as np
import pytest

from codegen import config_space, generate, host_target
from codegen.fkw import filter_order, pack, thread_schedule, used_patterns
from codegen.layout import Layout
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


def test_layout_skews_planes_off_4k() -> None:
    cfg = config_space(LAYER.spec, host_target()).default()
    lay = Layout.of(LAYER.spec, cfg)
    assert lay.plane % 1024 == 48 and lay.chan_stride % 1024 == 16
    assert lay.wph % 16 == 0 and lay.wph >= lay.ntx * lay.tw
