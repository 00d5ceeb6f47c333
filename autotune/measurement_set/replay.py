"""Replay: answer measurements from a recorded set instead of running code.

:class:`RecordedSpace` looks like a ``codegen.ConfigSpace`` whose valid configs
are exactly the recorded ones, so every search strategy runs on it unchanged.
:class:`ReplayMeasurer` has the shape of :class:`autotune.measure.KernelMeasurer`
(``measure(layer, configs) -> list[ConfigResult]``) and answers from the set:
a strategy replays in seconds, and deterministically, since nothing is timed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from autotune.measure import ConfigResult
from autotune.measurement_set._format import Entry, LayerRecord, MeasurementSet
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


class ReplayMeasurer:
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
        self, layer: LayerRecord | str, configs: Sequence[KernelConfig], **_: Any
    ) -> list[ConfigResult]:
        """Recorded results for ``configs``, in order.

        A config that is not in the set fails with ``"replay: ..."`` (a record,
        as a failed build would be), and is not counted as measured.
        """
        space = self.space(layer)
        out = []
        for cfg in configs:
            e = space.entries.get(cfg)
            if e is None:
                out.append(ConfigResult(cfg, error="replay: config not recorded in the set"))
                continue
            self.measured += 1
            out.append(ConfigResult(cfg, e.latency(self.statistic), e.error))
        return out
