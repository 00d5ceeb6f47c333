"""The cost-model interface: predict a kernel's latency before it is built.

A cost model sees a :class:`Sample` (layer shape, pruning statistics, the
KernelConfig's ``to_dict()``) and answers in two ways: :meth:`CostModel.predict`
gives seconds (for "predicted vs measured" records and quality metrics), and
:meth:`CostModel.score` gives a ranking score, higher = expected faster, which
is what the filter uses to choose what to build and measure.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One (layer, config) pair, with its measured latency when known.

    Attributes:
        group: Which kernel-tuning task it belongs to (the layer's weights hash):
            ranking is learned within a group.
        spec: ``LayerSpec.to_dict()``.
        stats: Pruning statistics (``kernels_total``, ``kernels_alive``,
            ``nonzeros``, ``patterns``, ``pattern_histogram``).
        config: ``KernelConfig.to_dict()``.
        latency_s: Measured median in seconds, or None when unknown.
    """

    group: str
    spec: dict[str, Any]
    stats: dict[str, Any]
    config: dict[str, Any]
    latency_s: float | None = field(default=None, compare=False)


class CostModel(abc.ABC):
    """Learns latency from measured samples; scores unmeasured ones.

    Contract: ``fit`` takes samples with ``latency_s`` set (seconds, > 0);
    ``predict`` and ``score`` return one float per sample, in input order. A
    model that has not been fitted predicts NaN and scores 0 (no preference),
    so a filter falls back to random choice. Not thread safe: one model per
    tuner thread, or guard it.
    """

    kind: str = "base"

    @abc.abstractmethod
    def fit(self, samples: Sequence[Sample]) -> None:
        """(Re)train on every given sample."""

    @abc.abstractmethod
    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        """Predicted latency in seconds per sample."""

    def score(self, samples: Sequence[Sample]) -> np.ndarray:
        """Ranking score per sample, higher = expected faster (default: -log predict)."""
        pred = self.predict(samples)
        return np.where(np.isfinite(pred), -np.log(np.maximum(pred, 1e-12)), 0.0)

    @property
    def fitted(self) -> bool:
        """True once :meth:`fit` has seen enough data to predict."""
        return False

    @abc.abstractmethod
    def to_bytes(self) -> bytes:
        """Serialise for the records database (no pickle: portable across versions)."""

    @classmethod
    @abc.abstractmethod
    def from_bytes(cls, blob: bytes) -> CostModel:
        """Inverse of :meth:`to_bytes`."""
