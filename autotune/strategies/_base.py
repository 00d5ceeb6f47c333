"""Kernel search strategies: which KernelConfigs of one layer to build and measure next.

A strategy works on one kernel-tuning task (one pruned layer on one device
type). It proposes configs in batches and is told their measured latencies; it
never builds or measures anything itself, so the same strategy runs against
real devices in ``pattune tune`` and against a recorded measurement set in
``pattune bench search``.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from autotune.cost_model import CostModel, Sample
from codegen import KernelConfig
from search_spaces.layers import PrunedLayer, layer_stats


class SearchSpace(Protocol):
    """What a strategy may choose from: ``codegen.ConfigSpace``, or a recorded set's space.

    ``choices`` lists every field's allowed values in a fixed order (sizes
    ascending); not every combination is valid, :meth:`is_valid` says which.
    """

    @property
    def choices(self) -> Mapping[str, tuple[Any, ...]]:
        """Allowed values per KernelConfig field."""

    def is_valid(self, cfg: KernelConfig) -> bool:
        """Whether ``cfg`` may be built and measured."""

    def sample(self, rng: np.random.Generator, n: int) -> list[KernelConfig]:
        """Up to ``n`` distinct valid configs drawn with ``rng``."""

    def default(self) -> KernelConfig:
        """A sensible valid config, measured first by every task."""


@dataclass(frozen=True)
class TaskContext:
    """What a cost model needs to know about the task's layer.

    Attributes:
        group: The task key (layer weights hash): cost-model query group.
        spec: ``LayerSpec.to_dict()``.
        stats: Pruning statistics of the layer (see ``RecordsDB.layer``).
    """

    group: str
    spec: dict[str, Any]
    stats: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, layer: PrunedLayer) -> TaskContext:
        """The context of a pruned layer (its weights hash is the group)."""
        return cls(group=layer.weights_hash, spec=layer.spec.to_dict(), stats=layer_stats(layer))

    def samples(
        self, configs: Sequence[KernelConfig], latencies: Sequence[float | None] = ()
    ) -> list[Sample]:
        """Cost-model samples for ``configs`` (with latencies in seconds when given)."""
        lats = list(latencies) or [None] * len(configs)
        return [
            Sample(self.group, self.spec, self.stats, c.to_dict(), lat)
            for c, lat in zip(configs, lats, strict=True)
        ]


class SearchStrategy(abc.ABC):
    """Proposes configs for one kernel-tuning task and learns from their latencies.

    Contract: :meth:`propose` returns at most ``n`` distinct valid configs that
    were neither observed nor reserved (:meth:`reserve`) before (fewer when the
    space is spent);
    :meth:`observe` takes configs with their median latency in seconds, or
    None for a failed config. Strategies own their seeded generator, so a run is
    deterministic per seed given the same observations. Not thread safe.

    Args:
        space: The layer's space (:class:`SearchSpace`).
        seed: Seed of the strategy's own generator.
        context: The task's layer, for cost models.
        cost_model: A shared cost model (used by model-based strategies).
    """

    name = "base"

    def __init__(
        self,
        *,
        space: SearchSpace,
        seed: int = 0,
        context: TaskContext | None = None,
        cost_model: CostModel | None = None,
    ) -> None:
        self.space = space
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.context = context
        self.cost_model = cost_model
        self.seen: set[str] = set()
        self.pending: set[str] = set()  # reserved by the caller, not yet observed
        self._json: dict[KernelConfig, str] = {}
        self.history: list[tuple[KernelConfig, float | None]] = []
        self.filtered = 0  # configs scored but not proposed (for progress displays)

    @abc.abstractmethod
    def propose(self, n: int) -> list[KernelConfig]:
        """Up to ``n`` new valid configs to measure next."""

    def reserve(self, configs: Sequence[KernelConfig]) -> None:
        """Configs the caller measures besides the proposals (a task's default and warm
        starts) in the coming batch: they are never proposed, and count as taken."""
        self.pending.update(self._key(c) for c in configs)

    def observe(
        self, configs: Sequence[KernelConfig], latencies: Sequence[float | None]
    ) -> None:
        """Record measured configs (seconds; None = failed). Subclasses extend, not replace."""
        for c, lat in zip(configs, latencies, strict=True):
            k = self._key(c)
            self.seen.add(k)
            self.pending.discard(k)
            self.history.append((c, lat))

    def best(self) -> tuple[KernelConfig, float] | None:
        """The fastest observed config and its latency, or None."""
        ok = [(c, t) for c, t in self.history if t is not None]
        return min(ok, key=lambda ct: ct[1]) if ok else None

    # -- helpers for subclasses ---------------------------------------------

    def _key(self, config: KernelConfig) -> str:
        """``config.to_json()``, memoised: canonical JSON dominated replayed searches' time."""
        k = self._json.get(config)
        if k is None:
            k = self._json[config] = config.to_json()
        return k

    def _fresh(self, configs: Sequence[KernelConfig]) -> list[KernelConfig]:
        out, keys = [], set()
        for c in configs:
            k = self._key(c)
            if k not in self.seen and k not in self.pending and k not in keys:
                keys.add(k)
                out.append(c)
        return out

    def _random(self, n: int) -> list[KernelConfig]:
        return self._fresh(self.space.sample(self.rng, n + len(self.seen) // 4 + 4))[:n]

    def _neighbours(self, config: KernelConfig, n: int) -> list[KernelConfig]:
        """Valid configs that differ from ``config`` in one field."""
        out = []
        fields = list(self.space.choices)
        for _ in range(n * 6):
            f = fields[int(self.rng.integers(len(fields)))]
            choices = self.space.choices[f]
            if len(choices) < 2:
                continue
            value = choices[int(self.rng.integers(len(choices)))]
            cand = dataclasses.replace(config, **{f: value})
            if self.space.is_valid(cand):
                out.append(cand)
            if len(out) >= n:
                break
        return self._fresh(out)
