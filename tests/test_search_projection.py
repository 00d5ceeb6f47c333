"""Projection is the exact argmax; connectivity keeps exactly the right kernels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from search_spaces import (
    LayerSpec,
    PatternSet,
    all_patterns,
    kernels_to_keep,
    parse_connectivity,
    project_patterns,
    prune_layer,
)

PATTERNS = all_patterns()


@settings(max_examples=60, deadline=None)
@given(
    kernel=arrays(np.float32, (3, 3), elements=st.floats(-4, 4, width=32)),
    chosen=st.lists(st.integers(0, 55), min_size=1, max_size=12, unique=True),
)
def test_projection_is_brute_force_optimum(kernel: np.ndarray, chosen: list[int]) -> None:
    ps = PatternSet(tuple(PATTERNS[i] for i in chosen))
    idx = int(project_patterns(kernel[None, None], ps)[0, 0])
    kept = [float(np.sum((kernel.astype(np.float64) * p.mask()) ** 2)) for p in ps]
    assert kept[idx] == pytest.approx(max(kept), rel=0, abs=1e-9)
    assert idx == kept.index(max(kept))  # ties go to the lowest index


@pytest.mark.parametrize(
    ("rate", "removed"),
    [("3.6x", 1 - 1 / 3.6), (3.6, 1 - 1 / 3.6), ("1x", 0.0), (1, 0.0), (0.5, 0.5), ("0", 0.0)],
)
def test_parse_connectivity_forms(rate: object, removed: float) -> None:
    assert parse_connectivity(rate) == pytest.approx(removed)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["-0.1", "0.5x", "abc", "nanx", -2])
def test_parse_connectivity_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="fraction removed in \\[0, 1\\) or a ratio >= 1"):
        parse_connectivity(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("cout", "cin"), [(64, 64), (7, 3), (1, 1), (13, 5)])
@pytest.mark.parametrize("rate", ["3.6x", 0.25, 0.0, "8x"])
def test_connectivity_keeps_exact_count_of_strongest(cout: int, cin: int, rate: object) -> None:
    rng = np.random.default_rng(cout * 100 + cin)
    w = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32)
    ps = PatternSet(PATTERNS[:8])
    layer = prune_layer(LayerSpec("l", cin, cout, 6, 6), w, ps, connectivity=rate)  # type: ignore[arg-type]
    n = cout * cin
    keep = kernels_to_keep(n, parse_connectivity(rate))  # type: ignore[arg-type]
    assert layer.kernels_alive == keep
    energy = np.sum((w * ps.masks()[layer.pattern_ids.astype(int)]) ** 2, axis=(2, 3))
    if keep < n:
        assert energy[layer.alive].min() >= energy[~layer.alive].max()
    assert layer.nonzeros == 4 * keep


def test_kernels_to_keep_vgg_example() -> None:
    assert kernels_to_keep(64, parse_connectivity("3.6x")) == 18
    assert kernels_to_keep(64 * 64, parse_connectivity("3.6x")) == round(4096 / 3.6)
    for n, f in itertools.product(range(1, 40), (0.0, 0.3, 0.9)):
        assert 1 <= kernels_to_keep(n, f) <= n
