"""Kernel-tuning tasks: find the fastest KernelConfig of one pruned layer on one device type.

A task is keyed by (device type, layer signature, pruned-weights hash). Latency
is additive over layers, so a task's measurements and best config serve every
later trial that meets the same key: a task that was tuned before starts from
its recorded results and only measures what its budget still allows. A new
task is warm-started from tasks with nearby keys (same shape, other weights):
their best configs are measured first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from autotune.cost_model.manager import CostModelManager
from autotune.measure import ConfigResult, KernelMeasurer
from autotune.strategies import TaskContext, make_strategy
from codegen import ConfigSpace, KernelConfig
from search_spaces.layers import LayerSpec, PrunedLayer, layer_stats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskResult:
    """The outcome of one kernel-tuning task (seconds).

    Attributes:
        key: ``device_type/signature-hash/weights-hash``.
        best: The fastest config, or None when every config failed.
        best_s: Its median latency.
        default: The layer's default config.
        default_s: Its median latency (None if it failed).
        measured: Configs newly measured by this call.
        reused: Configs whose results came from the database.
        failed: Configs that failed (build, verify or run).
        filtered: Configs the cost model scored but did not pick.
    """

    key: str
    best: KernelConfig | None
    best_s: float | None
    default: KernelConfig
    default_s: float | None
    measured: int
    reused: int
    failed: int
    filtered: int


class KernelTask:
    """Tunes one pruned layer's kernel.

    Args:
        layer: The pruned layer.
        space: Its valid configs (``codegen.config_space``), narrowed by the space file.
        measurer: Builds, verifies, measures and records.
        models: The device type's cost model.
        strategy: Strategy name (``filtered``, ``tpe``, ``random``).
        budget: Configs with a result (reused ones count) before the task is done.
        batch: Configs proposed per round.
        candidates_per_measure: Cost-model pool size per measured config.
        seed: Strategy seed.
    """

    def __init__(
        self,
        *,
        layer: PrunedLayer,
        space: ConfigSpace,
        measurer: KernelMeasurer,
        models: CostModelManager,
        strategy: str = "filtered",
        budget: int = 24,
        batch: int = 8,
        candidates_per_measure: int = 16,
        seed: int = 0,
    ) -> None:
        self.layer = layer
        self.space = space
        self.measurer = measurer
        self.models = models
        self.budget = budget
        self.batch = batch
        self.context = TaskContext(
            group=layer.weights_hash,
            spec=layer.spec.to_dict(),
            stats=layer_stats(layer),
        )
        kwargs: dict[str, Any] = {"space": space, "seed": seed}
        if strategy == "filtered":
            kwargs.update(
                cost_model=models.model,
                context=self.context,
                candidates_per_measure=candidates_per_measure,
            )
        self.strategy = make_strategy(strategy, **kwargs)
        self.key = f"{measurer.device_type}/{layer.spec.signature()}/{layer.weights_hash}"

    def _observe(self, results: list[ConfigResult]) -> tuple[int, int, int]:
        done = [r for r in results if not r.skipped]
        self.strategy.observe([r.config for r in done], [r.median_s for r in done])
        return (
            sum(1 for r in done if not r.reused and r.median_s is not None),
            sum(1 for r in done if r.reused),
            sum(1 for r in done if r.median_s is None),
        )

    def _warm_start(self) -> list[KernelConfig]:
        """Best configs of earlier tasks on layers of the same shape (other weights)."""
        records = self.measurer.records
        sig = self.layer.spec.signature()
        out: list[KernelConfig] = []
        for h, info in records.layer_specs(self.measurer.device_type).items():
            if h == self.layer.weights_hash or LayerSpec.from_dict(info["spec"]).signature() != sig:
                continue
            best = records.best(device_type=self.measurer.device_type, layer_hash=h)
            if best is not None:
                cfg = KernelConfig.from_dict(best.config)
                if self.space.is_valid(cfg) and cfg not in out:
                    out.append(cfg)
        return out[:4]

    def run(self) -> TaskResult:
        """Measure until the budget is met; return the best config."""
        records = self.measurer.records
        prior = records.measurements(
            device_type=self.measurer.device_type, layer_hash=self.layer.weights_hash, status=None
        )
        known = [
            ConfigResult(KernelConfig.from_dict(m.config), m.median_s, m.error, reused=True)
            for m in prior
            if m.status in ("done", "failed")
        ]
        measured, reused, failed = self._observe(known)
        default = self.space.default()
        first = [default, *(c for c in self._warm_start() if c != default)]
        stalls = 0
        while len(self.strategy.history) < self.budget and stalls < 3:
            want = min(self.batch, self.budget - len(self.strategy.history))
            configs = [c for c in first if c.to_json() not in self.strategy.seen][:want]
            first = []
            if len(configs) < want:
                self.models.maybe_retrain()
                more = self.strategy.propose(want - len(configs))
                configs += [c for c in more if c not in configs]
            if not configs:
                break
            preds = self.models.model.predict(self.context.samples(configs))
            results = self.measurer.measure(
                self.layer,
                configs,
                predicted_s=list(preds),
                cost_model_version=self.models.version,
            )
            m, r, f = self._observe(results)
            measured, reused, failed = measured + m, reused + r, failed + f
            stalls = stalls + 1 if all(x.skipped for x in results) else 0
        best = self.strategy.best()
        default_s = next(
            (t for c, t in self.strategy.history if c == default and t is not None), None
        )
        return TaskResult(
            key=self.key,
            best=None if best is None else best[0],
            best_s=None if best is None else best[1],
            default=default,
            default_s=default_s,
            measured=measured,
            reused=reused,
            failed=failed,
            filtered=self.strategy.filtered,
        )
