"""Optuna TPE over the KernelConfig fields.

Each field is a categorical parameter. A TPE suggestion that breaks a joint
rule (too many accumulators, ...) is *repaired* to the nearest valid config
(fewest fields changed, among valid samples) and the study is told the config
that was really measured, so TPE learns from real points only.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import optuna

from autotune.strategies._base import SearchStrategy

optuna.logging.set_verbosity(optuna.logging.WARNING)


class TPESearch(SearchStrategy):
    """Tree-structured Parzen estimator (Optuna) over the config fields.

    Args:
        n_startup: Random trials before TPE models the space.
        **kwargs: See :class:`SearchStrategy`.
    """

    name = "tpe"

    def __init__(self, *, n_startup: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        with warnings.catch_warnings():
            # multivariate/group are "experimental" in Optuna but stable since 2.x.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=self.seed, n_startup_trials=n_startup, multivariate=True, group=True
            )
        self.study = optuna.create_study(sampler=sampler, direction="minimize")
        # Categorical distributions need JSON-able choices; store indexes.
        self._dists: dict[str, optuna.distributions.BaseDistribution] = {
            f: optuna.distributions.CategoricalDistribution(list(range(len(v))))
            for f, v in self.space.choices.items()
        }

    def _from_params(self, params: dict[str, int]) -> Any:
        values = {f: self.space.choices[f][i] for f, i in params.items()}
        return dataclasses.replace(self.space.default(), **values)

    def _params(self, config: Any) -> dict[str, int]:
        return {f: list(v).index(getattr(config, f)) for f, v in self.space.choices.items()}

    def _repair(self, config: Any) -> Any | None:
        pool = self._fresh(self.space.sample(self.rng, 64))
        if not pool:
            return None
        fields = list(self.space.choices)
        return min(pool, key=lambda c: sum(getattr(c, f) != getattr(config, f) for f in fields))

    def propose(self, n: int) -> list[Any]:
        out: list[Any] = []
        for _ in range(n * 8):
            if len(out) >= n:
                break
            trial = self.study.ask(self._dists)
            cfg = self._from_params(trial.params)
            # The asked trial is only a suggestion; what is measured is told via add_trial.
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            if not self.space.is_valid(cfg):
                cfg = self._repair(cfg)
                if cfg is None:
                    break
            if self._fresh([cfg]) and all(cfg != o for o in out):
                out.append(cfg)
        if len(out) < n:
            out += self._fresh([c for c in self._random(n) if all(c != o for o in out)])[
                : n - len(out)
            ]
        return out

    def observe(self, configs: Sequence[Any], latencies: Sequence[float | None]) -> None:
        super().observe(configs, latencies)
        for cfg, lat in zip(configs, latencies, strict=True):
            self.study.add_trial(
                optuna.trial.create_trial(
                    params=self._params(cfg),
                    distributions=self._dists,
                    value=lat,
                    state=(
                        optuna.trial.TrialState.COMPLETE
                        if lat is not None
                        else optuna.trial.TrialState.FAIL
                    ),
                )
            )
