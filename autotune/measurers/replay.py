"""Replay: answer measurements from a recorded set instead of running code.

:class:`RecordedSpace` is a :class:`~autotune.strategies.SearchSpace` whose valid
configs are exactly the recorded ones, so every search strategy runs on it
unchanged. :class:`ReplayMeasurer` is a :class:`~autotune.measurers.Measurer`
that answers from the set: the product's kernel search loop
(:class:`autotune.task.KernelTask`) replays in seconds, and deterministically,
since nothing is timed (Kernel Tuner's simulation runner).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from autotune.measurement_set._format import Entry, LayerRecord, MeasurementSet
from autotune.measurers._base import ConfigResult, Measurer, check_distinct
from autotune.strategies import TaskContext
from codegen import KernelConfig


class RecordedSpace:
    """The configs of one recorded layer, with ``codegen.ConfigSpace``'s search interface.

    Args:
        record: The recorded layer. Its space's ``choices`` are the field values;
            a config is valid when it was recorded (measured or failed).
    """

    def __init__(self, record: LayerRecord) -> None:
        self.record = record
        # Keyed by the (frozen, hashable) config itself: cheaper than its JSON.
        self.entries: dict[KernelConfig, Entry] = {e.config: e for e in record.entries}
        if not self.entries:
            raise ValueError(f"layer {record.name!r} has no recorded config to replay")
        self._configs = [e.config for e in record.entries]
        recorded = record.space.get("choices", {})
        self.choices: dict[str, tuple[Any, ...]] = {
            f: tuple(recorded[f]) if f in recorded else (getattr(self._configs[0], f),)
            for f in (fld.name for fld in dataclasses.fields(KernelConfig))
        }

    def __len__(self) -> int:
        return len(self._configs)

    def is_valid(self, cfg: KernelConfig) -> bool:
        """True when ``cfg`` was recorded."""
        return cfg in self.entries

    def enumerate(self) -> Iterator[KernelConfig]:
        """Every recorded config, in recording order."""
        return iter(self._configs)

    def sample(self, rng: np.random.Generator, n: int) -> list[KernelConfig]:
        """Up to ``n`` distinct recorded configs, uniformly at random."""
        idx = rng.choice(len(self._configs), size=min(n, len(self._configs)), replace=False)
        return [self._configs[int(i)] for i in idx]

    def default(self) -> KernelConfig:
        """The codegen default config of the layer's field values when recorded, else the first."""
        c = self.choices
        pick = KernelConfig(
            **{f: (v[0] if len(v) == 1 else getattr(KernelConfig(), f)) for f, v in c.items()}
        )
        return pick if self.is_valid(pick) else self._configs[0]


def replay_context(record: LayerRecord) -> TaskContext:
    """The cost-model context of a recorded layer."""
    return TaskContext(group=record.weights_hash, spec=record.spec, stats=record.stats)


class ReplayMeasurer(Measurer[LayerRecord]):
    """Answers ``measure(layer, configs)`` from a measurement set.

    Args:
        mset: The recorded set.
        statistic: Which latency of an entry answers (``min`` or ``median``, see
            :meth:`Entry.latency`).

    Attributes:
        measured: Configs answered so far (the device measurements a replayed
            search "spent").
    """

    def __init__(self, mset: MeasurementSet, *, statistic: str = "median") -> None:
        super().__init__(device_type=str(mset.metadata.get("device", "replay")))
        Entry(KernelConfig(), median_s=1.0).latency(statistic)  # validates the name
        self.statistic = statistic
        self.mset = mset
        self._spaces: dict[str, RecordedSpace] = {}
        self.measured = 0

    def space(self, layer: LayerRecord | str) -> RecordedSpace:
        """The :class:`RecordedSpace` of a layer (by record or name)."""
        name = layer if isinstance(layer, str) else layer.name
        if name not in self._spaces:
            self._spaces[name] = RecordedSpace(self.mset.layer(name))
        return self._spaces[name]

    def measure(
        self,
        layer: LayerRecord,
        configs: Sequence[KernelConfig],
        *,
        predicted_s: Sequence[float | None] | None = None,
        cost_model_version: int | None = None,
    ) -> list[ConfigResult]:
        """Recorded results for ``configs``, in order.

        A config that is not in the set fails with ``"replay: ..."`` (a record,
        as a failed build would be), and is not counted as measured.
        """
        check_distinct(configs)
        space = self.space(layer)
        preds: list[float | None] = (
            list(predicted_s) if predicted_s is not None else [None] * len(configs)
        )
        out = []
        for cfg, pred in zip(configs, preds, strict=True):
            e = space.entries.get(cfg)
            if e is None:
                error = "replay: config not recorded in the set"
                out.append(ConfigResult(cfg, error=error, predicted_s=pred))
                self.stats.fail(error)
                continue
            self.measured += 1
            lat = e.latency(self.statistic)
            if lat is None:
                self.stats.fail(e.error or "replay: recorded without a latency")
                out.append(ConfigResult(cfg, error=e.error or "replay: recorded without a latency",
                                        predicted_s=pred))
            else:
                self.stats.measured += 1
                out.append(ConfigResult(cfg, lat, predicted_s=pred, times_s=e.times_s, cv=e.cv))
        return out
