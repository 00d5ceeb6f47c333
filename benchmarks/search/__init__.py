"""The search-efficiency benchmark: strategies replayed over a recorded measurement set.

``run_benchmark(mset, SearchConfig(...))`` replays every strategy (random,
TPE, TPE + XGBoost filter, the filter warm-started from the other layers) for
several seeds on every layer, measures the cost model's quality on held-out
measurements, and returns the JSON document ``pattune bench search`` writes.
"""

from __future__ import annotations

from typing import Any

from autotune.measurement_set import MeasurementSet
from benchmarks.search.quality import quality
from benchmarks.search.report import plot, summarise
from benchmarks.search.runs import (
    VARIANTS,
    SearchConfig,
    SearchRun,
    replay_all,
    replay_run,
)


def run_benchmark(
    mset: MeasurementSet,
    cfg: SearchConfig,
    *,
    source: str = "measurement set",
    plot_path: str | None = None,
    with_quality: bool = True,
    progress: Any = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Replay the strategies, judge the cost model, and summarise (see docs/search_benchmark.md)."""
    runs = replay_all(mset, cfg, progress=progress, workers=workers)
    q = quality(mset, statistic=cfg.statistic) if with_quality and len(mset.layers) >= 2 else None
    doc = summarise(mset, runs, cfg, q, source=source)
    if plot_path:
        doc["plot"] = str(plot(mset, runs, cfg, plot_path))
    return doc


__all__ = [
    "VARIANTS",
    "SearchConfig",
    "SearchRun",
    "plot",
    "quality",
    "replay_all",
    "replay_run",
    "run_benchmark",
    "summarise",
]
