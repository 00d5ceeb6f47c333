"""TPE + cost-model filter: score many candidates, measure the most promising.

Each round draws a candidate pool at least ``candidates_per_measure`` times the
batch size, from TPE suggestions, random samples and one-field neighbours of
the best configs so far; the cost model ranks the pool, and the batch is its
top entries plus an ``epsilon`` share of random pool members (exploration, as
in TVM's XGBoost tuner). Until the model is trained, the analytic cost prior
(:mod:`autotune.cost_model.prior`: estimated cycles from the layer shape, the
pruning and the config) ranks the pool instead, so even the first
measurements go to configs the generated code's structure favours.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autotune.cost_model.prior import prior_score
from autotune.strategies.tpe import TPESearch


class FilteredSearch(TPESearch):
    """TPE proposals filtered by a cost model.

    Args:
        candidates_per_measure: Pool size per measured config (>= 10 recommended).
        epsilon: Share of each batch drawn at random from the pool.
        **kwargs: See :class:`TPESearch`; ``cost_model`` and ``context`` are required.
    """

    name = "filtered"

    def __init__(
        self,
        *,
        candidates_per_measure: int = 16,
        epsilon: float = 0.1,
        prior_weight: float = 8.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prior_weight = prior_weight
        if self.cost_model is None or self.context is None:
            raise ValueError("the filtered strategy needs a cost_model and a task context")
        self.candidates_per_measure = candidates_per_measure
        self.epsilon = epsilon

    def _pool(self, n: int, size: int) -> list[Any]:
        # TPE suggestions cost ~10 ms each and grow with history; a quarter of a large
        # pool made the filter 4x slower than TPE for no better pick (bench search), so
        # TPE contributes one batch and the cost model ranks it among the rest.
        pool = super().propose(max(1, min(n, size // 4)))
        ranked = sorted(((c, t) for c, t in self.history if t is not None), key=lambda ct: ct[1])
        for c, _ in ranked[:4]:
            pool += self._neighbours(c, size // 16 + 1)
        pool += self._random(size - len(pool))
        return self._fresh(pool)

    def propose(self, n: int) -> list[Any]:
        assert self.cost_model is not None and self.context is not None
        pool = self._pool(n, n * self.candidates_per_measure)
        if not pool:
            return []
        # Cold start: the analytic cost prior (estimated cycles) ranks the pool until the model
        # has data, and is blended out as the model's training data grows (weight
        # k / (k + n)), instead of spending the first batch on TPE's random start-up.
        prior = _z(np.array(
            [prior_score(self.context.spec, self.context.stats, c.to_dict()) for c in pool]
        ))
        # What the model has learned from (all layers for a warm model), not this task alone.
        n_train = int(getattr(self.cost_model, "n_train", 0)) if self.cost_model.fitted else 0
        weight = self.prior_weight / (self.prior_weight + n_train)
        if self.cost_model.fitted:
            scores = (1 - weight) * _z(self.cost_model.score(self.context.samples(pool))) + (
                weight * prior
            )
        else:
            scores = prior
        order = list(np.argsort(-scores, kind="stable"))
        n_random = round(n * self.epsilon)
        chosen = order[: n - n_random]
        rest = order[n - n_random :]
        if n_random and rest:
            picks = self.rng.choice(len(rest), size=min(n_random, len(rest)), replace=False)
            chosen += [rest[int(i)] for i in picks]
        self.filtered += len(pool) - len(chosen)
        return [pool[i] for i in chosen]


def _z(x: np.ndarray) -> np.ndarray:
    """Standardised scores (ranking-preserving; 0 when all equal)."""
    sd = float(np.std(x))
    return (x - float(np.mean(x))) / sd if sd > 0 else np.zeros_like(x, dtype=np.float64)
