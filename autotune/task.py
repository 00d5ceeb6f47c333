"""The kernel search loop: find the fastest KernelConfig of one layer on one device type.

:class:`KernelTask` is the only kernel search loop in pattune: ``pattune tune``
runs it against devices through the farm, ``pattune bench search`` against a
recorded measurement set, ``pattune bench kernels`` against libraries timed in
this process; only the :class:`~autotune.measurers.Measurer` differs.

A task is keyed by (device type, layer signature, pruned-weights hash). Latency
is additive over layers, so a task's measurements serve every later trial that
meets the same key: a task starts from the results its measurer has recorded
for the layer and only measures what its budget still allows. The default
config is measured first, then the measurer's warm starts (the best configs of
layers of the same shape) and the caller's ``first`` configs, then what the
strategy proposes; before each proposal the cost model is retrained when enough
new data arrived, and the strategy sees the newest model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic

from autotune.cost_model.manager import CostModelManager
from autotune.measurers import ConfigResult, Measurer
from autotune.measurers._base import L
from autotune.strategies import SearchSpace, TaskContext, make_strategy
from codegen import KernelConfig
from search_spaces.layers import LayerSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskResult:
    """The outcome of one kernel-tuning task (seconds).

    Attributes:
        key: ``device_type/signature-hash/weights-hash``.
        best: The fastest config, or None when every config failed.
        best_s: Its latency.
        default: The layer's default config.
        default_s: Its latency (None if it failed).
        measured: Configs newly measured by this call.
        reused: Configs whose results were recorded before.
        failed: Configs that failed (build, verify or run).
        filtered: Configs the cost model scored but did not pick.
        history: Every result the task saw, in order: the recorded ones first, then
            each batch as measured (skipped ones included).
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
    history: tuple[ConfigResult, ...] = ()


class KernelTask(Generic[L]):
    """Tunes one layer's kernel through a measurer.

    Args:
        layer: The layer, as the measurer knows it (a ``PrunedLayer``, or a
            recorded layer for a replay).
        context: The layer for the cost model (:meth:`TaskContext.of` a pruned layer).
        space: Its valid configs (``codegen.config_space``, narrowed by the space file).
        measurer: Measures batches of configs.
        models: The device type's cost model.
        strategy: Strategy name (``filtered``, ``tpe``, ``random``, ``hillclimb``).
        strategy_options: Extra keyword arguments of the strategy.
        budget: Configs with a result (recorded ones count) before the task is done.
        batch: Configs proposed and measured per round.
        candidates_per_measure: The filtered strategy's pool size per measured config.
        seed: Strategy seed.
        first: Configs to measure first, after the default and the warm starts.
    """

    def __init__(
        self,
        *,
        layer: L,
        context: TaskContext,
        space: SearchSpace,
        measurer: Measurer[L],
        models: CostModelManager,
        strategy: str = "filtered",
        strategy_options: Mapping[str, Any] | None = None,
        budget: int = 24,
        batch: int = 8,
        candidates_per_measure: int = 16,
        seed: int = 0,
        first: Sequence[KernelConfig] = (),
    ) -> None:
        if budget < 1 or batch < 1:
            raise ValueError(f"budget and batch must be >= 1; got {budget}, {batch}")
        self.layer = layer
        self.context = context
        self.space = space
        self.measurer = measurer
        self.models = models
        self.budget = budget
        self.batch = batch
        self.first = list(first)
        kwargs: dict[str, Any] = {
            "space": space, "seed": seed, "context": context, "cost_model": models.model,
        }
        if strategy == "filtered":
            kwargs["candidates_per_measure"] = candidates_per_measure
        kwargs.update(strategy_options or {})
        self.strategy = make_strategy(strategy, **kwargs)
        signature = LayerSpec.from_dict(context.spec).signature()
        self.key = f"{measurer.device_type}/{signature}/{context.group}"

    def _queue(self) -> list[KernelConfig]:
        """Default, warm starts, then the caller's first configs; valid and distinct."""
        out: list[KernelConfig] = []
        for cfg in [self.space.default(), *self.measurer.warm_start(self.layer, self.space),
                    *self.first]:
            if cfg not in out and self.space.is_valid(cfg):
                out.append(cfg)
        return out

    def _next_batch(self, queue: list[KernelConfig]) -> list[KernelConfig]:
        """Up to one batch: queued configs not seen yet, then the strategy's proposals."""
        want = min(self.batch, self.budget - len(self.strategy.history))
        configs: list[KernelConfig] = []
        while queue and len(configs) < want:
            cfg = queue.pop(0)
            if cfg.to_json() not in self.strategy.seen:
                configs.append(cfg)
        if len(configs) < want:
            self.strategy.reserve(configs)
            self.models.maybe_retrain()
            self.strategy.cost_model = self.models.model  # the newest, also mid-task
            more = self.strategy.propose(want - len(configs))
            configs += [c for c in more if c not in configs]
        return configs

    def _observe(self, results: Sequence[ConfigResult]) -> None:
        done = [r for r in results if not r.skipped]
        self.strategy.observe([r.config for r in done], [r.latency_s for r in done])
        fresh = [r for r in done if r.ok and not r.reused]
        self.models.observe(
            self.context.samples([r.config for r in fresh], [r.latency_s for r in fresh])
        )

    def run(self) -> TaskResult:
        """Measure until the budget is met (or nothing new can be measured); the best config."""
        history = list(self.measurer.recorded(self.layer))
        self._observe(history)
        queue = self._queue()
        stalls = 0
        while len(self.strategy.history) < self.budget and stalls < 3:
            configs = self._next_batch(queue)
            if not configs:
                break
            preds = self.models.model.predict(self.context.samples(configs))
            results = self.measurer.measure(
                self.layer, configs, predicted_s=[float(p) for p in preds],
                cost_model_version=self.models.version,
            )
            self._observe(results)
            history += results
            stalls = stalls + 1 if all(r.skipped for r in results) else 0
        return self._result(history)

    def _result(self, history: list[ConfigResult]) -> TaskResult:
        best = self.strategy.best()
        default = self.space.default()
        return TaskResult(
            key=self.key,
            best=None if best is None else best[0],
            best_s=None if best is None else best[1],
            default=default,
            default_s=next(
                (r.latency_s for r in history if r.config == default and r.ok), None
            ),
            measured=sum(1 for r in history if r.ok and not r.reused),
            reused=sum(1 for r in history if r.reused),
            failed=sum(1 for r in history if r.error is not None),
            filtered=self.strategy.filtered,
            history=tuple(history),
        )
