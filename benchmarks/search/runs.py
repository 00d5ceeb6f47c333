"""Replay search strategies over a measurement set: best-found latency per measurement.

A run is one (strategy, layer, seed) of the product's own kernel search loop,
:class:`autotune.task.KernelTask`, with a :class:`ReplayMeasurer` in place of
the farm: the task measures the layer's default config first, then what the
strategy proposes in batches over the layer's :class:`RecordedSpace`, retraining
the cost model by the product's policy (``CostModelManager``: after at least
8 new measurements and 20% growth), until the budget of measurements is spent;
the run keeps the best latency found after each measurement. The ``filtered``
variant's cost model learns from the run's own observations (cold start);
``filtered-warm``'s starts from the other layers of the set (transfer). Random
and TPE do not use a cost model, so theirs is the untrained ``random`` kind.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autotune.cost_model import Sample
from autotune.cost_model.manager import CostModelManager
from autotune.measurement_set import LayerRecord, MeasurementSet
from autotune.measurement_set._format import STATISTICS
from autotune.measurers import ReplayMeasurer, replay_context
from autotune.task import KernelTask

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

# Benchmark names -> (strategy name, cost model training data).
VARIANTS: dict[str, tuple[str, str | None]] = {
    "random": ("random", None),
    "tpe": ("tpe", None),
    "filtered": ("filtered", "own"),
    "filtered-warm": ("filtered", "transfer"),
}


@dataclass(frozen=True)
class SearchConfig:
    """How the strategies are replayed (keyword-only).

    Attributes:
        strategies: Names from :data:`VARIANTS`.
        seeds: Seeds per (strategy, layer).
        budget: Device measurements per run.
        batch: Configs proposed (and measured) per round.
        candidates_per_measure: The filter's pool size per measured config.
        within: Relative distance to the set's best that counts as found (0.05 = 5%).
        model_rounds: Boosting rounds of the cost model.
        statistic: Latency of a recorded config (``min`` or ``median`` of its repeats).
    """

    strategies: tuple[str, ...] = ("random", "tpe", "filtered", "filtered-warm")
    seeds: int = 10
    budget: int = 96
    batch: int = 8
    candidates_per_measure: int = 16
    within: float = 0.05
    model_rounds: int = 50
    statistic: str = "min"

    def __post_init__(self) -> None:
        bad = [s for s in self.strategies if s not in VARIANTS]
        if bad or not self.strategies:
            raise ValueError(
                f"strategies must be among {', '.join(VARIANTS)}; got {', '.join(bad) or 'none'}"
            )
        if self.candidates_per_measure < 1:
            raise ValueError(f"candidates_per_measure must be >= 1; got "
                             f"{self.candidates_per_measure}")
        if self.seeds < 1 or self.budget < 1 or self.batch < 1:
            raise ValueError(
                f"seeds, budget and batch must be >= 1; got {self.seeds}, {self.budget}, "
                f"{self.batch}"
            )
        if self.statistic not in STATISTICS:
            raise ValueError(
                f"statistic must be one of {', '.join(STATISTICS)}; got {self.statistic!r}"
            )
        if not 0 < self.within < 1:
            raise ValueError(f"within must be in (0, 1); got {self.within}")


@dataclass
class SearchRun:
    """One replayed run.

    Attributes:
        strategy: Benchmark name of the strategy.
        layer: Layer name.
        seed: Seed.
        best_s: Best latency (seconds) after measurement 1, 2, ... (inf before any success).
        to_within: Measurements until the best came within ``within`` of the set's best,
            or None when the budget ran out first.
        model_s: Seconds spent training the cost model.
    """

    strategy: str
    layer: str
    seed: int
    best_s: list[float] = field(default_factory=list)
    to_within: int | None = None
    model_s: float = 0.0


def layer_samples(rec: LayerRecord, statistic: str = "median") -> list[Sample]:
    """Training samples of every measured entry of a layer."""
    ctx = replay_context(rec)
    ok = rec.measured()
    return ctx.samples([e.config for e in ok], [e.latency(statistic) for e in ok])


def replay_run(
    mset: MeasurementSet, layer: str, strategy: str, seed: int, cfg: SearchConfig
) -> SearchRun:
    """Replay one strategy on one layer with one seed through the product's loop (deterministic)."""
    rec = mset.layer(layer)
    measurer = ReplayMeasurer(mset, statistic=cfg.statistic)
    space = measurer.space(rec)
    name, training = VARIANTS[strategy]
    prior = (
        [s for r in mset.layers if r.name != layer for s in layer_samples(r, cfg.statistic)]
        if training == "transfer" else []
    )
    models = CostModelManager(
        device_type=measurer.device_type,
        prior=prior,
        kind="xgb" if training is not None else "random",
        seed=seed,
        model_options={"rounds": cfg.model_rounds, "nthread": 1} if training else None,
    )
    task = KernelTask(
        layer=rec,
        context=replay_context(rec),
        space=space,
        measurer=measurer,
        models=models,
        strategy=name,
        budget=min(cfg.budget, len(space)),
        batch=cfg.batch,
        candidates_per_measure=cfg.candidates_per_measure,
        seed=seed,
    )
    result = task.run()
    run = SearchRun(strategy, layer, seed, model_s=models.train_s)
    best_set = rec.best_s(cfg.statistic)
    best = float("inf")
    for r in result.history:
        if r.skipped:
            continue
        if r.latency_s is not None:
            best = min(best, r.latency_s)
        run.best_s.append(best)
        if run.to_within is None and best <= best_set * (1 + cfg.within):
            run.to_within = len(run.best_s)
    return run


_WORKER_SET: MeasurementSet | None = None


def _init_worker(mset: MeasurementSet) -> None:
    global _WORKER_SET
    _WORKER_SET = mset


def _run_in_worker(job: tuple[str, str, int, SearchConfig]) -> SearchRun:
    assert _WORKER_SET is not None
    s, lay, seed, cfg = job
    return replay_run(_WORKER_SET, lay, s, seed, cfg)


def replay_all(
    mset: MeasurementSet,
    cfg: SearchConfig,
    *,
    layers: Sequence[str] | None = None,
    progress: Any = None,
    workers: int = 1,
) -> list[SearchRun]:
    """Every (strategy, layer, seed) run, in that order; ``progress(done, total)`` after each.

    Runs are independent and each is deterministic, so ``workers`` processes give
    the same results as one.
    """
    names = list(layers or [r.name for r in mset.layers])
    jobs = [
        (s, lay, seed, cfg) for s in cfg.strategies for lay in names for seed in range(cfg.seeds)
    ]
    if workers <= 1:
        out = []
        for i, job in enumerate(jobs):
            out.append(replay_run(mset, job[1], job[0], job[2], cfg))
            if progress:
                progress(i + 1, len(jobs))
        return out
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(mset,)) as pool:
        out = []
        for i, run in enumerate(pool.imap(_run_in_worker, jobs)):
            out.append(run)
            if progress:
                progress(i + 1, len(jobs))
    return out


def measurements_to_within(runs: Sequence[SearchRun], budget: int) -> float:
    """Median measurements to come within the target; a run that never did counts budget + 1."""
    vals = [r.to_within if r.to_within is not None else budget + 1 for r in runs]
    return float(np.median(vals)) if vals else float("nan")
