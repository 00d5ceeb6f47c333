"""Summarise replayed runs and cost-model quality; plot best-found latency vs measurements."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autotune.measurement_set import MeasurementSet
from benchmarks.search.runs import SearchConfig, SearchRun, measurements_to_within


def _curve(runs: Sequence[SearchRun], best: dict[str, float], budget: int) -> np.ndarray:
    """Median over runs of best-found / set best after 1..budget measurements."""
    rows = []
    for r in runs:
        ratio = np.array(r.best_s, dtype=np.float64) / best[r.layer]
        pad = np.full(budget, ratio[-1] if len(ratio) else np.inf)
        pad[: len(ratio)] = ratio
        rows.append(pad)
    return np.median(np.array(rows), axis=0) if rows else np.full(budget, np.nan)


def summarise(
    mset: MeasurementSet,
    runs: Sequence[SearchRun],
    cfg: SearchConfig,
    quality: dict[str, Any] | None,
    *,
    source: str,
) -> dict[str, Any]:
    """The JSON document of ``pattune bench search`` (see docs/search_benchmark.md)."""
    best = {r.name: r.best_s(cfg.statistic) for r in mset.layers}
    per_strategy: dict[str, Any] = {}
    for s in cfg.strategies:
        mine = [r for r in runs if r.strategy == s]
        per_strategy[s] = {
            "median_measurements_to_within": measurements_to_within(mine, cfg.budget),
            "reached": sum(r.to_within is not None for r in mine) / max(1, len(mine)),
            "per_layer": {
                lay: measurements_to_within([r for r in mine if r.layer == lay], cfg.budget)
                for lay in best
            },
            "median_final_over_best": float(
                np.median([r.best_s[-1] / best[r.layer] for r in mine if r.best_s])
            ),
            "model_train_s": round(sum(r.model_s for r in mine), 3),
        }

    def ratio(a: str, b: str) -> float | None:
        if a not in per_strategy or b not in per_strategy:
            return None
        return float(
            per_strategy[a]["median_measurements_to_within"]
            / per_strategy[b]["median_measurements_to_within"]
        )

    summary: dict[str, Any] = {
        "tpe_over_filtered": ratio("tpe", "filtered"),
        "random_over_filtered": ratio("random", "filtered"),
        "tpe_over_filtered_warm": ratio("tpe", "filtered-warm"),
    }
    if quality is not None:
        summary.update(
            spearman_within_layer=quality["mean"]["within"]["spearman"],
            spearman_cross_layer=quality["mean"]["cross"]["spearman"],
            within_10pct=quality["mean"]["within"]["within_10pct"],
        )
    return {
        "benchmark": "search",
        "set": source,
        "set_metadata": {k: mset.metadata.get(k) for k in ("device", "cpu", "compiler", "created")},
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": {
            "strategies": list(cfg.strategies),
            "seeds": cfg.seeds,
            "budget": cfg.budget,
            "batch": cfg.batch,
            "candidates_per_measure": cfg.candidates_per_measure,
            "within": cfg.within,
            "statistic": cfg.statistic,
        },
        "layers": {
            r.name: {
                "configs": len(r.entries),
                "space_size": r.space_size,
                "coverage": r.coverage,
                "best_s": best[r.name],
            }
            for r in mset.layers
        },
        "summary": summary,
        "strategies": per_strategy,
        "cost_model": quality,
    }


def plot(
    mset: MeasurementSet, runs: Sequence[SearchRun], cfg: SearchConfig, path: str | Path
) -> Path:
    """PNG: median best-found latency / set best vs measurements, per layer and over all."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = {r.name: r.best_s(cfg.statistic) for r in mset.layers}
    panels = [*best, "all layers"]
    # Conventional names (conv2_2) where the recording gave them.
    names = (mset.metadata.get("pruning") or {}).get("layers") or {}
    alias = {module: short for short, module in names.items() if short != module}
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), squeeze=False)
    x = np.arange(1, cfg.budget + 1)
    for ax, panel in zip(axes[0], panels, strict=True):
        for s in cfg.strategies:
            mine = [r for r in runs if r.strategy == s and panel in (r.layer, "all layers")]
            ax.plot(x, _curve(mine, best, cfg.budget), label=s)
        ax.axhline(1 + cfg.within, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"{alias[panel]} ({panel})" if panel in alias else panel)
        ax.set_xlabel("device measurements")
        ax.set_ylim(0.95, 2.0)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"best found / set best (median of {cfg.seeds} seeds)")
    axes[0][-1].legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
