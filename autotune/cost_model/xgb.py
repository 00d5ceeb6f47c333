"""XGBoost cost model: a regression booster to predict and choose, optionally a ranking one.

The regression booster predicts ``log(seconds per pruned MAC)``, a target that
is comparable across layers, so one model trained on every layer of a device
type transfers to unseen layers and gives latencies in seconds for "predicted
vs measured" records. Within one layer the target is a monotone function of
latency, so its order is also what the filter ranks by (``score="regression"``,
the default). A ``rank:pairwise`` booster (one query group per kernel-tuning
task, as TVM's XGBoost tuner learns) is the alternative (``score="rank"``).

Why regression and shallow trees (``pattune bench search`` on the shipped VGG-16
set, held-out configs): the ranking booster's Spearman correlation was 0.54
within a layer and 0.52 across layers against 0.68 and 0.69 for the regression
booster's predictions; depth-6, 200-round boosters fit the measurement noise
(0.56 within a layer) where depth 3 and 50 rounds gave 0.68, and train 4x faster.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from autotune.cost_model._base import CostModel, Sample
from autotune.cost_model.features import Featurizer, derived

# XGBoost's OpenMP threads busy-wait by default; on 2 shared cores that stalls.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import xgboost as xgb

MIN_SAMPLES = 8
SCORES = ("regression", "rank")
RELEVANCE_LEVELS = 31


def _pruned_macs(s: Sample) -> float:
    return math.exp(derived(s.spec, s.stats, s.config)["log_pruned_macs"])


def _relevance(groups: np.ndarray, latency: np.ndarray) -> np.ndarray:
    """Integer relevance per sample: 0 (slowest of its group) .. 31 (fastest)."""
    rel = np.zeros(len(latency), dtype=np.float32)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        order = np.argsort(np.argsort(-latency[idx], kind="stable"), kind="stable")
        rel[idx] = np.floor(RELEVANCE_LEVELS * order / max(1, len(idx) - 1))
    return rel


class XGBCostModel(CostModel):
    """Cost model of two XGBoost boosters over :class:`Featurizer` features.

    Args:
        seed: Seed of both boosters (deterministic given the same data).
        rounds: Boosting rounds per booster.
        max_depth: Tree depth.
        eta: Learning rate.
        nthread: XGBoost threads (default: ``PATTUNE_XGB_THREADS`` or 2).
        score: What :meth:`score` ranks by: ``regression`` (minus the predicted
            log seconds) or ``rank`` (the ``rank:pairwise`` booster, trained only then).
    """

    kind = "xgb"

    def __init__(
        self,
        *,
        seed: int = 0,
        rounds: int = 50,
        max_depth: int = 3,
        eta: float = 0.1,
        nthread: int | None = None,
        score: str = "regression",
    ) -> None:
        if score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}; got {score!r}")
        self.score_with = score
        self.seed = seed
        self.rounds = rounds
        self.params: dict[str, Any] = {
            "max_depth": max_depth,
            "eta": eta,
            "min_child_weight": 1,
            "subsample": 0.9,
            "colsample_bytree": 0.9,
            "seed": seed,
            "nthread": nthread or int(os.environ.get("PATTUNE_XGB_THREADS", "2")),
            "verbosity": 0,
        }
        self.featurizer = Featurizer()
        self._reg: xgb.Booster | None = None
        self._rank: xgb.Booster | None = None
        self.n_train = 0

    @property
    def fitted(self) -> bool:
        return self._reg is not None

    def fit(self, samples: Sequence[Sample]) -> None:
        """Train both boosters on ``samples`` (those with a latency); fewer than 8 is a no-op."""
        data = [s for s in samples if s.latency_s is not None and s.latency_s > 0]
        if len(data) < MIN_SAMPLES:
            return
        # Sort by group: XGBoost's ranking objective wants query ids contiguous.
        data.sort(key=lambda s: s.group)
        self.featurizer = Featurizer().fit(data)
        x = self.featurizer.transform(data)
        lat = np.array([s.latency_s for s in data], dtype=np.float64)
        macs = np.array([_pruned_macs(s) for s in data])
        y_reg = np.log(lat / macs)
        self._reg = xgb.train(
            {**self.params, "objective": "reg:squarederror"},
            xgb.DMatrix(x, label=y_reg),
            num_boost_round=self.rounds,
        )
        names = sorted({s.group for s in data})
        qid = np.array([names.index(s.group) for s in data])
        if self.score_with == "rank" and any(np.sum(qid == g) > 1 for g in range(len(names))):
            self._rank = xgb.train(
                {**self.params, "objective": "rank:pairwise"},
                xgb.DMatrix(x, label=_relevance(qid, lat), qid=qid),
                num_boost_round=self.rounds,
            )
        self.n_train = len(data)

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        if self._reg is None or not samples:
            return np.full(len(samples), np.nan)
        x = self.featurizer.transform(samples)
        macs = np.array([_pruned_macs(s) for s in samples])
        return np.exp(self._reg.predict(xgb.DMatrix(x))) * macs

    def score(self, samples: Sequence[Sample]) -> np.ndarray:
        """Ranking score (higher = faster); within one group only the order is meaningful."""
        if self._rank is None:
            return super().score(samples)
        return np.asarray(
            self._rank.predict(xgb.DMatrix(self.featurizer.transform(samples))), dtype=np.float64
        )

    def to_bytes(self) -> bytes:
        def raw(b: xgb.Booster | None) -> str | None:
            return None if b is None else base64.b64encode(bytes(b.save_raw("json"))).decode()

        return json.dumps(
            {
                "kind": self.kind,
                "seed": self.seed,
                "rounds": self.rounds,
                "score": self.score_with,
                "params": self.params,
                "n_train": self.n_train,
                "featurizer": self.featurizer.to_dict(),
                "reg": raw(self._reg),
                "rank": raw(self._rank),
            }
        ).encode()

    @classmethod
    def from_bytes(cls, blob: bytes) -> XGBCostModel:
        data = json.loads(blob)
        # Models stored before "score" existed ranked with their rank booster.
        model = cls(seed=data["seed"], rounds=data["rounds"], score=data.get("score", "rank"))
        model.params = data["params"]
        model.n_train = data["n_train"]
        model.featurizer = Featurizer.from_dict(data["featurizer"])

        def load(text: str | None) -> xgb.Booster | None:
            if text is None:
                return None
            b = xgb.Booster()
            b.load_model(bytearray(base64.b64decode(text)))
            return b

        model._reg = load(data["reg"])
        model._rank = load(data["rank"])
        return model
