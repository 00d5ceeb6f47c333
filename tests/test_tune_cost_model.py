"""The XGBoost cost model learns to rank and to predict, and survives a round trip.

The latencies here come from an analytic roofline-like function, not a device:
the test is about the learning machinery (features, objectives, serialisation);
real recorded measurements test the model's quality in the search benchmark.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from autotune.cost_model import Sample, load_cost_model, make_cost_model
from autotune.cost_model.features import Featurizer


def _latency(spec: dict, nnz: int, cfg: dict) -> float:
    oh, ow = spec["h"], spec["w"]
    vw, rows, vecs = cfg["vector_width"], cfg["tile_rows"], cfg["tile_vecs"]
    lanes = math.ceil(ow / (vw * vecs)) * vw * vecs * math.ceil(oh / rows) * rows
    waste = lanes / (oh * ow)
    eff = min(1.0, rows * vecs / 8) * (1.0 if cfg["format"] == "fkw" else 0.5)
    return nnz * oh * ow * waste / (2e9 * vw / 16 * eff) * (1.2 if cfg["loop_order"] == "b" else 1)


def _samples(rng: np.random.Generator, group: str, spec: dict, n: int) -> list[Sample]:
    nnz = spec["cin"] * spec["cout"] // 4 * 4
    stats = {
        "nonzeros": nnz,
        "kernels_alive": nnz // 4,
        "kernels_total": spec["cin"] * spec["cout"],
        "patterns": 8,
        "pattern_histogram": [nnz // 32] * 8,
    }
    out = []
    for _ in range(n):
        cfg = {
            "vector_width": int(rng.choice([4, 8, 16])),
            "tile_rows": int(rng.integers(1, 9)),
            "tile_vecs": int(rng.integers(1, 5)),
            "oc_block": int(rng.choice([1, 2, 4, 8])),
            "threads": 1,
            "format": str(rng.choice(["fkw", "csr"])),
            "loop_order": str(rng.choice(["a", "b"])),
            "lre": bool(rng.integers(2)),
        }
        out.append(Sample(group, spec, stats, cfg, _latency(spec, nnz, cfg)))
    return out


LAYERS = {
    "l1": {"cin": 64, "cout": 64, "h": 56, "w": 56, "stride": 1, "padding": 1, "groups": 1},
    "l2": {"cin": 128, "cout": 128, "h": 28, "w": 28, "stride": 1, "padding": 1, "groups": 1},
    "l3": {"cin": 256, "cout": 256, "h": 14, "w": 14, "stride": 1, "padding": 1, "groups": 1},
    "l4": {"cin": 32, "cout": 64, "h": 112, "w": 112, "stride": 1, "padding": 1, "groups": 1},
}


def test_learns_within_and_across_layers() -> None:
    rng = np.random.default_rng(0)
    data = {g: _samples(rng, g, spec, 240) for g, spec in LAYERS.items()}
    model = make_cost_model("xgb", seed=1, rounds=150)
    assert not model.fitted
    assert np.isnan(model.predict(data["l1"][:3])).all()
    # Within a layer: train on 160, test on the other 80.
    model.fit([s for g in data for s in data[g][:160]])
    test = data["l2"][160:]
    truth = [s.latency_s for s in test]
    assert spearmanr(model.score(test), [-t for t in truth]).statistic > 0.85
    rel = np.abs(model.predict(test) / np.array(truth) - 1)
    assert np.mean(rel <= 0.10) > 0.5
    # Across layers: never sees l3.
    cross = make_cost_model("xgb", seed=1, rounds=150)
    cross.fit([s for g in ("l1", "l2", "l4") for s in data[g]])
    held = data["l3"]
    assert spearmanr(cross.predict(held), [s.latency_s for s in held]).statistic > 0.6


def test_round_trip_predicts_identically() -> None:
    rng = np.random.default_rng(2)
    samples = _samples(rng, "l1", LAYERS["l1"], 60)
    model = make_cost_model("xgb", seed=3, rounds=30)
    model.fit(samples)
    again = load_cost_model(model.to_bytes())
    np.testing.assert_array_equal(model.predict(samples), again.predict(samples))
    np.testing.assert_array_equal(model.score(samples), again.score(samples))


def test_too_few_samples_is_not_fitted() -> None:
    model = make_cost_model("xgb")
    model.fit(_samples(np.random.default_rng(0), "l1", LAYERS["l1"], 5))
    assert not model.fitted
    assert np.all(model.score(_samples(np.random.default_rng(1), "l1", LAYERS["l1"], 3)) == 0)


def test_unknown_kind_lists_known() -> None:
    with pytest.raises(ValueError, match="cost model must be one of random, xgb; got 'nn'"):
        make_cost_model("nn")


def test_featurizer_columns_are_stable() -> None:
    samples = _samples(np.random.default_rng(4), "l1", LAYERS["l1"], 20)
    f = Featurizer().fit(samples)
    x = f.transform(samples)
    assert x.shape == (20, len(f.names()))
    assert "config.format=csr" in f.names() and "derived.lane_waste" in f.names()
    again = Featurizer.from_dict(f.to_dict())
    np.testing.assert_array_equal(again.transform(samples), x)
    assert np.isfinite(x).all()


def test_a_model_stored_before_the_prior_feature_still_featurises_as_trained() -> None:
    samples = _samples(np.random.default_rng(5), "l1", LAYERS["l1"], 20)
    f = Featurizer().fit(samples)
    assert f.names()[-1] == "derived.prior_log_cycles_per_mac"
    old = {"vocab": f.vocab, "numeric": f.numeric}  # no "derived" key: the old blob
    legacy = Featurizer.from_dict(old)
    assert legacy.names() == f.names()[:-1]
    assert legacy.transform(samples).shape == (20, len(f.names()) - 1)
