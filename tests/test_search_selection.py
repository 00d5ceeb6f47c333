"""PatDNN pattern-set selection: natural patterns, frequency ranking, user-given sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

from search_spaces import Pattern, PatternSet, all_patterns
from search_spaces.selection import (
    NoPatternLayersError,
    count_natural_patterns,
    natural_patterns,
    parse_pattern_set,
    select_pattern_set,
    top_k_patterns,
)
from tests.search.factories import no_3x3


def test_natural_pattern_is_centre_plus_three_largest() -> None:
    k = np.array([[9.0, 0.1, -8.0], [0.2, 0.0, 0.3], [0.4, -7.0, 0.5]], dtype=np.float32)
    bits = int(natural_patterns(k))
    assert bits == (1 << 0) | (1 << 2) | (1 << 4) | (1 << 7)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float32, (3, 3), elements=st.floats(-4, 4, width=32), unique=True))
def test_natural_pattern_keeps_the_most_energy_among_centre_patterns(kernel: np.ndarray) -> None:
    bits = int(natural_patterns(kernel))
    taps = tuple(t for t in range(9) if bits >> t & 1)
    assert 4 in taps and len(taps) == 4
    kept = float(np.sum(kernel.ravel()[list(taps)] ** 2))
    best = max(float(np.sum((kernel * p.mask()) ** 2)) for p in all_patterns())
    assert kept == pytest.approx(best, rel=1e-6)


def test_counts_and_top_k_with_ties_in_canonical_order() -> None:
    a = np.zeros((3, 3), np.float32)
    a[0, 0] = a[0, 1] = a[0, 2] = 1  # natural pattern: taps 0,1,2,4
    b = np.zeros((3, 3), np.float32)
    b[2, 0] = b[2, 1] = b[2, 2] = 1  # taps 4,6,7,8
    w = np.stack([a, a, a, b, b]).reshape(5, 1, 3, 3)
    counts = count_natural_patterns([w])
    pa, pb = Pattern(3, (0, 1, 2, 4)), Pattern(3, (4, 6, 7, 8))
    assert counts == {pa: 3, pb: 2}
    ps = top_k_patterns(counts, 4)
    assert ps.patterns[:2] == (pa, pb)
    cands = all_patterns()
    # Unseen fillers follow in canonical order, skipping the ones already chosen.
    assert ps.patterns[2:] == tuple(p for p in cands if p not in (pa, pb))[:2]


@pytest.mark.parametrize("k", [0, 57])
def test_k_out_of_range(k: int) -> None:
    with pytest.raises(ValueError, match=rf"pattern count K must lie in 1\.\.56 .*; got {k}"):
        top_k_patterns({}, k)


def test_select_from_a_model_counts_every_3x3_kernel() -> None:
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, 1, 2] = 5.0
        conv.weight[:, :, 2, 1] = 4.0
        conv.weight[:, :, 0, 0] = 3.0
        conv.weight[0, 0, 0, 0] = 0.0
        conv.weight[0, 0, 2, 2] = 3.0
    ps = select_pattern_set(nn.Sequential(conv, nn.Conv2d(3, 3, 1)), (1, 2, 8, 8), 2)
    assert ps.patterns == (Pattern(3, (0, 4, 5, 7)), Pattern(3, (4, 5, 7, 8)))


def test_model_without_3x3_is_refused() -> None:
    with pytest.raises(NoPatternLayersError, match="the model has no 3x3 conv layer"):
        select_pattern_set(no_3x3(), (1, 3, 16, 16), 4)


def test_user_given_sets(tmp_path: Path) -> None:
    ps = parse_pattern_set("1,3,4,5/4,1,5,7")
    assert ps.patterns == (Pattern(3, (1, 3, 4, 5)), Pattern(3, (1, 4, 5, 7)))
    f = tmp_path / "set.json"
    f.write_text(ps.to_json())
    assert parse_pattern_set(str(f)) == ps
    assert PatternSet.from_dict(json.loads(f.read_text())) == ps
    with pytest.raises(ValueError, match="tap lists like"):
        parse_pattern_set("1,3,4,9")
    with pytest.raises(ValueError, match="cannot read pattern set file"):
        parse_pattern_set(str(tmp_path / "missing.json"))
