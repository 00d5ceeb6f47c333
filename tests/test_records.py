"""Core records: patterns, pattern sets, layer specs and pruned layers."""

from __future__ import annotations

import numpy as np
import pytest

from search_spaces import LayerSpec, Pattern, PatternSet, PrunedLayer, all_patterns


def test_pattern_counts() -> None:
    assert len(all_patterns()) == 56
    assert len(all_patterns(keep_centre=False)) == 126
    assert all(p.keeps_centre() and p.n == 4 for p in all_patterns())
    assert len(all_patterns(5, 6)) == 42504  # C(24, 5)


def test_pattern_ascii_and_json() -> None:
    p = Pattern(k=3, taps=(1, 3, 4, 5))
    assert str(p) == ". X .\nX X X\n. . ."
    assert Pattern.from_json(p.to_json()) == p
    assert hash(Pattern.from_json(p.to_json())) == hash(p)
    assert Pattern.from_mask(p.mask()) == p


def test_pattern_rejects_bad_taps() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        Pattern(k=3, taps=(4, 1))
    with pytest.raises(ValueError, match="0..8"):
        Pattern(k=3, taps=(4, 9))


def test_pruned_layer_round_trip(tmp_path) -> None:
    spec = LayerSpec(name="c", cin=4, cout=3, h=5, w=5)
    ps = PatternSet(all_patterns()[:4])
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 4, size=(3, 4))
    alive = rng.random((3, 4)) > 0.3
    w = rng.standard_normal((3, 4, 3, 3)).astype(np.float32)
    w *= ps.masks()[ids] * alive[..., None, None]
    layer = PrunedLayer(spec=spec, pattern_set=ps, pattern_ids=ids, alive=alive, weights=w)
    assert PrunedLayer.from_json(layer.to_json()) == layer
    layer.save_npz(tmp_path / "l.npz")
    assert PrunedLayer.load_npz(tmp_path / "l.npz").weights_hash == layer.weights_hash
    assert layer.nonzeros == 4 * int(alive.sum())
    with pytest.raises(ValueError, match="zero outside"):
        PrunedLayer(spec=spec, pattern_set=ps, pattern_ids=ids, alive=alive,
                    weights=np.ones((3, 4, 3, 3), np.float32))
