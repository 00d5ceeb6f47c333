"""The measurement seam: KernelConfigs of one layer in, typed results out.

A :class:`Measurer` is what the kernel search loop (:class:`autotune.task.KernelTask`)
calls to learn how fast configs are; the loop never knows which one it has
(Kernel Tuner's real and simulation runners, MetaSchedule's ``Runner``):

* :class:`autotune.measurers.FarmMeasurer`: generate, build, verify against torch,
  run on a device of the type through the farm, record in the database;
* :class:`autotune.measurers.ReplayMeasurer`: answer from a recorded measurement set;
* :class:`autotune.measurers.LibraryMeasurer`: build a shared library and time it
  in this process (the kernel benchmark, next to torch).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from autotune.strategies import SearchSpace
from codegen import KernelConfig

L = TypeVar("L")
"""The layer a measurer knows: a ``PrunedLayer``, or a recorded layer for a replay."""


@dataclass(frozen=True)
class ConfigResult:
    """The outcome for one config: a latency, an error, or skipped; never a latency and an error.

    Attributes:
        config: The KernelConfig.
        latency_s: The measurer's latency in seconds (the farm: the median of the
            device's repeats; a replay: the set's statistic; in-process: the fastest
            call), or None on failure or skip.
        error: Why it failed; starts with the component (``"build: ..."``,
            ``"verify: ..."``, ``"ssh device pixel-3: timeout after 10 s"``).
        reused: True when the result was recorded before, not measured now.
        skipped: True when another live process is measuring it now.
        predicted_s: The cost model's prediction when the config was chosen.
        times_s: Every timed repeat, seconds (when the measurer has them).
        cv: Coefficient of variation of ``times_s`` (when known).
    """

    config: KernelConfig
    latency_s: float | None = None
    error: str | None = None
    reused: bool = False
    skipped: bool = False
    predicted_s: float | None = None
    times_s: tuple[float, ...] = ()
    cv: float | None = None

    def __post_init__(self) -> None:
        if self.latency_s is not None and self.error is not None:
            raise ValueError("a ConfigResult holds a latency or an error, never both")
        if self.latency_s is not None and not (math.isfinite(self.latency_s)
                                               and self.latency_s >= 0):
            raise ValueError(f"latency_s must be finite and >= 0 seconds; got {self.latency_s}")

    @property
    def ok(self) -> bool:
        """Whether the config has a latency."""
        return self.latency_s is not None


@dataclass
class MeasureStats:
    """Counters for progress displays and the overhead report (seconds)."""

    built: int = 0
    measured: int = 0
    reused: int = 0
    failed: int = 0
    build_s: float = 0.0
    measure_s: float = 0.0
    verify_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    def fail(self, error: str) -> None:
        """Count one failure; keep the first 20 messages."""
        self.failed += 1
        if len(self.errors) < 20:
            self.errors.append(error)


class Measurer(abc.ABC, Generic[L]):
    """Measures KernelConfigs of one layer at a time, for one device type.

    Contract:
        * :meth:`measure` returns one :class:`ConfigResult` per config, in the
          configs' order, the same length. It never raises for a config's failure
          (a build error, wrong output, a timeout, a lost device): those are results
          with ``error`` set. It raises only on misuse (a config twice in one batch).
        * Units: seconds.
        * Thread safety: one measurer serves one search loop (one thread).

    Attributes:
        device_type: What the results are latencies on (part of every task's key).
        stats: Counters since the measurer was made.
    """

    def __init__(self, *, device_type: str) -> None:
        self.device_type = device_type
        self.stats = MeasureStats()

    @abc.abstractmethod
    def measure(
        self,
        layer: L,
        configs: Sequence[KernelConfig],
        *,
        predicted_s: Sequence[float | None] | None = None,
        cost_model_version: int | None = None,
    ) -> list[ConfigResult]:
        """Results for ``configs`` in order: measured, reused, failed or skipped."""

    def recorded(self, layer: L) -> list[ConfigResult]:
        """Results of this layer recorded before (``reused``); a search starts from them.

        Default: none.
        """
        return []

    def warm_start(self, layer: L, space: SearchSpace) -> list[KernelConfig]:
        """Configs worth measuring first (the best of similar layers). Default: none."""
        return []

    def close(self) -> None:
        """Release what the measurer holds (loaded libraries, connections). Default: nothing."""


def check_distinct(configs: Sequence[KernelConfig]) -> None:
    """Raise ValueError when a config appears twice in one batch (a caller's bug)."""
    if len(set(configs)) != len(configs):
        raise ValueError("measure() takes distinct configs; got a config twice in one batch")
