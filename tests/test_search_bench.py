"""The accuracy benchmark's summary, on a tiny budget (the real run is a command, not a test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.accuracy import AccuracyBenchConfig, run_accuracy_bench, run_ranking_bench
from search_spaces.estimate import EstimateConfig
from search_spaces.example import ExampleRecipe
from search_spaces.retrain import RetrainConfig


def tiny(samples: int = 3000) -> AccuracyBenchConfig:
    return AccuracyBenchConfig(
        recipe=ExampleRecipe(epochs=2, train_samples=3000),
        train_samples=samples,
        retrain=RetrainConfig(admm_epochs=1, retrain_epochs=1, lr=0.01, update_every=4),
        batch_size=64,
        test_samples=1000,
        estimate=EstimateConfig(samples=500, bn_batches=2),
        dense_target=0.5,
        max_drop_points=50.0,
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dense example for both tests (training it is most of their time)."""
    return tmp_path_factory.mktemp("example")


def test_tiny_accuracy_bench_summary(cache: Path) -> None:
    config = tiny()
    steps: list[str] = []
    result = run_accuracy_bench(config, cache_dir=cache, threads=1, progress=steps.append)
    for key in ("dense_acc", "oneshot_acc", "estimate_acc", "pruned_acc", "conv_compression"):
        assert 0 < result[key], key
    assert result["dense_acc"] > 0.5 and result["pruned_acc"] > 0.3
    assert result["patterns"] and len(result["patterns"]) == 8
    assert all(len(p) == 4 and 4 in p for p in result["patterns"])
    assert result["connectivity"] == "3.6x" and result["test_samples"] == 1000
    # 8 patterns (4 of 9) on every conv, 3.6x connectivity on all but the first.
    assert 7.5 < result["conv_compression"] < 8.2
    assert result["macs_pruned"] < result["macs_dense"] / 7
    assert result["drop_points"] == round(100 * (result["dense_acc"] - result["pruned_acc"]), 2)
    assert len(result["admm_residuals"]) == 1 + 47 // 4  # 47 steps of 64 in one epoch
    assert [(e["phase"], e["epoch"]) for e in result["epochs"]] == [("admm", 0), ("retrain", 0)]
    assert result["pruned_acc"] == round(result["epochs"][-1]["accuracy"], 4)
    assert set(result["seconds"]) == {"dense", "oneshot", "estimate", "admm", "total"}
    assert steps[0] == "loading Fashion-MNIST"
    assert result["torch_threads"] == 1


def test_tiny_ranking_bench_compares_estimate_and_retraining(cache: Path) -> None:
    doc = run_ranking_bench(tiny(500), configurations=2, eval_samples=300,
                            estimate=EstimateConfig(samples=300, bn_batches=2),
                            cache_dir=cache, threads=1)
    rows = doc["configurations"]
    assert len(rows) == 2 and len({(r["k"], tuple(r["rates"].items())) for r in rows}) == 2
    assert all(0 < r["estimate_acc"] <= 1 and 0 < r["retrained_acc"] <= 1 for r in rows)
    assert -1 <= doc["estimate_spearman"] <= 1
    gap = sum(r["retrained_acc"] - r["estimate_acc"] for r in rows) / 2
    assert doc["estimate_gap_points"] == round(100 * gap, 2)
    assert "features.0" not in rows[0]["rates"]  # the input layer keeps its kernels
