"""The accuracy benchmark's summary, on a tiny budget (the real run is a command, not a test)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.accuracy import AccuracyBenchConfig, run_accuracy_bench
from search_spaces.admm import ADMMConfig
from search_spaces.estimate import EstimateConfig
from search_spaces.example import ExampleRecipe
from search_spaces.training import TrainConfig


def test_tiny_accuracy_bench_summary(tmp_path: Path) -> None:
    config = AccuracyBenchConfig(
        recipe=ExampleRecipe(epochs=2, train_samples=3000),
        train_samples=3000,
        admm=ADMMConfig(
            admm=TrainConfig(epochs=1, lr=0.01, batch_size=64, schedule="constant"),
            retrain=TrainConfig(epochs=1, lr=0.01, batch_size=64),
            update_every=4,
        ),
        test_samples=1000,
        estimate=EstimateConfig(samples=500, bn_batches=2),
        dense_target=0.5,
        max_drop_points=50.0,
    )
    steps: list[str] = []
    result = run_accuracy_bench(config, cache_dir=tmp_path, threads=1, progress=steps.append)
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
    assert set(result["seconds"]) == {"dense", "oneshot", "estimate", "admm", "total"}
    assert steps[0] == "loading Fashion-MNIST"
    assert result["dense_cached"] is False and result["torch_threads"] == 1
