"""A cost model with no knowledge: random scores (the exploration baseline)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from autotune.cost_model._base import CostModel, Sample


class RandomCostModel(CostModel):
    """Scores samples at random from its own seeded generator; predicts NaN."""

    kind = "random"

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def fit(self, samples: Sequence[Sample]) -> None:
        """Nothing to learn."""

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        return np.full(len(samples), np.nan)

    def score(self, samples: Sequence[Sample]) -> np.ndarray:
        return self._rng.random(len(samples))

    def to_bytes(self) -> bytes:
        return json.dumps({"kind": self.kind, "seed": self.seed}).encode()

    @classmethod
    def from_bytes(cls, blob: bytes) -> RandomCostModel:
        return cls(seed=json.loads(blob)["seed"])
