"""``pattune bench accuracy``: what pattern pruning costs the example in accuracy.

Trains (or loads the cached) dense example, selects 8 patterns by PatDNN's
frequency rule, prunes with 3.6x connectivity, and measures on the real 10k
test set: the one-shot projection, the cheap estimate the tuner uses, and ADMM
training with masked retraining. Targets: the dense net reaches 0.91 and ADMM
stays within 1.0 point of it (``--quick``, on a training subset: 0.85 and 2.0 points).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from search_spaces.admm import ADMMConfig, admm_prune
from search_spaces.data import load_split
from search_spaces.estimate import EstimateConfig, estimate_accuracy
from search_spaces.example import EXAMPLE_INPUT_SHAPE, ExampleRecipe, trained_example
from search_spaces.masking import attach_masks
from search_spaces.pruning import PruneConfig, plan_pruning
from search_spaces.report import build_report
from search_spaces.selection import select_pattern_set
from search_spaces.training import TrainConfig, configure_threads, evaluate


@dataclass(frozen=True, kw_only=True)
class AccuracyBenchConfig:
    """One accuracy benchmark run.

    Attributes:
        recipe: Dense training.
        train_samples: Training examples ADMM and retraining use (None: all).
        admm: ADMM and retraining phases.
        patterns: K.
        connectivity: Connectivity rate of the regular 3x3 layers.
        dense_target: Minimum dense accuracy.
        max_drop_points: Largest allowed accuracy drop, in percentage points.
        test_samples: Evaluate on a seeded subset of the test set (None: all 10k).
        estimate: Budget of the cheap estimate.
    """

    recipe: ExampleRecipe
    train_samples: int | None
    admm: ADMMConfig
    patterns: int = 8
    connectivity: str = "3.6x"
    dense_target: float = 0.91
    max_drop_points: float = 1.0
    test_samples: int | None = None
    estimate: EstimateConfig = field(default_factory=EstimateConfig)

    @classmethod
    def full(cls) -> AccuracyBenchConfig:
        """The full run (all 60k training examples)."""
        return cls(
            recipe=ExampleRecipe(),
            train_samples=None,
            admm=ADMMConfig(
                admm=TrainConfig(epochs=4, lr=0.01, schedule="constant"),
                retrain=TrainConfig(epochs=3, lr=0.01),
                update_every=100,
            ),
        )

    @classmethod
    def quick(cls) -> AccuracyBenchConfig:
        """The ``--quick`` run on a 10k training subset."""
        return cls(
            recipe=ExampleRecipe(epochs=3, train_samples=10000),
            train_samples=10000,
            admm=ADMMConfig(
                admm=TrainConfig(epochs=2, lr=0.01, schedule="constant"),
                retrain=TrainConfig(epochs=2, lr=0.01),
                rho=0.02,
                update_every=16,
            ),
            dense_target=0.85,
            max_drop_points=2.0,
        )


@contextmanager
def _timed(times: dict[str, float], name: str) -> Iterator[None]:
    t = time.perf_counter()
    yield
    times[name] = round(time.perf_counter() - t, 1)


def run_accuracy_bench(
    config: AccuracyBenchConfig,
    *,
    cache_dir: Path | None = None,
    data_dir: Path | None = None,
    threads: int | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Run the benchmark; return its JSON summary (see the module docstring).

    Args:
        config: Budget and targets (:meth:`AccuracyBenchConfig.full` or ``.quick``).
        cache_dir: Cache of the dense example.
        data_dir: Fashion-MNIST directory.
        threads: Torch threads (default: every CPU this process may use).
        progress: Called with a short line as each phase starts.
    """
    threads = configure_threads(threads)
    t_start = time.perf_counter()
    times: dict[str, float] = {}
    progress("loading Fashion-MNIST")
    train_full = load_split("train", root=data_dir)
    test = load_split("test", root=data_dir)
    if config.test_samples is not None:
        test = test.subset(config.test_samples, seed=1)
    train = train_full if config.train_samples is None else train_full.subset(config.train_samples)
    progress("dense example (cached after the first run)")
    with _timed(times, "dense"):
        ex = trained_example(
            config.recipe, cache=cache_dir, train_split=train_full, test_split=test
        )
    shape = EXAMPLE_INPUT_SHAPE
    pattern_set = select_pattern_set(ex.model, shape, config.patterns)
    prune = PruneConfig(connectivity=config.connectivity)
    with _timed(times, "oneshot"):
        oneshot = copy.deepcopy(ex.model)
        attach_masks(oneshot, plan_pruning(oneshot, shape, pattern_set, prune).masks())
        oneshot_acc = evaluate(oneshot, test)
    progress("cheap estimate (one-shot + short masked fine-tune)")
    with _timed(times, "estimate"):
        est, _, _ = estimate_accuracy(
            ex.model, shape, pattern_set, train, test, prune=prune, config=config.estimate
        )
    progress("ADMM training, hard pruning, masked retraining")
    with _timed(times, "admm"):
        pruned = copy.deepcopy(ex.model)
        result = admm_prune(pruned, shape, pattern_set, train, prune=prune, config=config.admm)
        pruned_acc = evaluate(pruned, test)
    times["total"] = round(time.perf_counter() - t_start, 1)
    report = build_report(result.plan)
    drop = 100.0 * (ex.test_acc - pruned_acc)
    return {
        "quick": config.train_samples is not None,
        "dense_acc": round(ex.test_acc, 4),
        "dense_cached": ex.cached,
        "oneshot_acc": round(oneshot_acc, 4),
        "estimate_acc": round(est.estimate_acc, 4),
        "pruned_acc": round(pruned_acc, 4),
        "drop_points": round(drop, 2),
        "targets_met": bool(ex.test_acc >= config.dense_target and drop <= config.max_drop_points),
        "dense_target": config.dense_target,
        "max_drop_points": config.max_drop_points,
        "patterns": [list(p.taps) for p in pattern_set],
        "connectivity": config.connectivity,
        "conv_compression": round(report.conv_compression, 3),
        "pattern_layer_compression": round(report.pattern_compression, 3),
        "macs_dense": report.totals()["dense_macs"],
        "macs_pruned": report.totals()["pruned_macs"],
        "admm_residuals": [round(r, 5) for r in result.residuals],
        "train_samples": len(train),
        "test_samples": len(test),
        "recipe": asdict(config.recipe),
        "seconds": times,
        "torch_threads": threads,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "torch": torch.__version__,
    }
