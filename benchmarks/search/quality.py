"""Cost-model quality on held-out measurements of a set: within a layer and across layers.

Within a layer: a seeded random 80/20 split of the layer's measured configs;
the model trains on the 80% and is judged on the 20%. Across layers
(transfer): the model trains on every other layer of the set and is judged on
all of the held-out layer. Metrics per layer:

- ``spearman``: Spearman rank correlation between the model's ranking score
  (what the filter uses; higher = faster) and minus the measured latency;
- ``spearman_predict``: the same for the regression booster's predicted seconds;
- ``top10_recall``: share of the 10 truly fastest held-out configs among the
  model's 10 best-scored;
- ``within_10pct``: share of held-out configs whose predicted latency is within
  +-10% of the measured one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from autotune.cost_model import Sample
from autotune.cost_model.xgb import XGBCostModel
from autotune.measurement_set import MeasurementSet
from benchmarks.search.runs import layer_samples

os.environ.setdefault("OMP_WAIT_POLICY", "passive")


def _metrics(model: XGBCostModel, test: Sequence[Sample]) -> dict[str, float]:
    lat = np.array([s.latency_s for s in test], dtype=np.float64)
    score = model.score(test)
    pred = model.predict(test)
    k = min(10, len(test))
    true_top = set(np.argsort(lat, kind="stable")[:k].tolist())
    model_top = set(np.argsort(-score, kind="stable")[:k].tolist())
    return {
        "spearman": float(spearmanr(score, -lat).statistic),
        "spearman_predict": float(spearmanr(pred, lat).statistic),
        "top10_recall": len(true_top & model_top) / k,
        "within_10pct": float(np.mean(np.abs(pred / lat - 1.0) <= 0.10)),
        "n_test": float(len(test)),
    }


def quality(
    mset: MeasurementSet,
    *,
    seed: int = 0,
    test_share: float = 0.2,
    rounds: int = 50,
    statistic: str = "median",
) -> dict[str, Any]:
    """Per-layer within-layer and cross-layer metrics, and their means over layers.

    Raises:
        ValueError: ``test_share`` outside (0, 1), or fewer than two layers for transfer.
    """
    if not 0 < test_share < 1:
        raise ValueError(f"test_share must be in (0, 1); got {test_share}")
    if len(mset.layers) < 2:
        raise ValueError("cost-model transfer needs a set of at least 2 layers")
    per_layer: dict[str, dict[str, dict[str, float]]] = {}
    for i, rec in enumerate(mset.layers):
        data = layer_samples(rec, statistic)
        rng = np.random.default_rng([seed, i])
        idx = rng.permutation(len(data))
        n_test = max(2, round(test_share * len(data)))
        test = [data[int(j)] for j in idx[:n_test]]
        train = [data[int(j)] for j in idx[n_test:]]
        within = XGBCostModel(seed=seed, rounds=rounds, nthread=1)
        within.fit(train)
        others = [s for r in mset.layers if r.name != rec.name for s in layer_samples(r, statistic)]
        cross = XGBCostModel(seed=seed, rounds=rounds, nthread=1)
        cross.fit(others)
        per_layer[rec.name] = {"within": _metrics(within, test), "cross": _metrics(cross, data)}
    keys = ("spearman", "spearman_predict", "top10_recall", "within_10pct")
    mean = {
        part: {k: float(np.mean([v[part][k] for v in per_layer.values()])) for k in keys}
        for part in ("within", "cross")
    }
    return {"per_layer": per_layer, "mean": mean}
