"""``pattune.prune``: pattern- and connectivity-prune a model in one call.

The job itself is :func:`search_spaces.pipeline.run_prune`; this module turns
the CLI's flags (as keywords) into its :class:`~search_spaces.pipeline.PruneJob`
and its outcome into a typed :class:`PruneResult`. Nothing here prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from pattune._args import in_range
from pattune_common import UserInputError
from pattune_common.files import check_output_dir
from search_spaces.admm import ADMMConfig
from search_spaces.estimate import EstimateConfig
from search_spaces.example import ExampleRecipe
from search_spaces.loading import parse_input_shape
from search_spaces.patterns import PatternSet
from search_spaces.pipeline import PruneJob, run_prune
from search_spaces.pruning import PruneConfig, PruningPlan
from search_spaces.report import PruneReport
from search_spaces.training import TrainConfig, configure_threads


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune` produced.

    Attributes:
        model: The pruned model (masks attached: its state_dict is the pruned one).
        plan: Which weights survive in every conv layer.
        report: Per-layer kernels, weights and MACs, dense against pruned.
        method: ``oneshot``, ``estimate`` or ``admm``.
        seconds: Wall time of the job.
        dense_accuracy: The dense model's accuracy, where data or an evaluator gave one.
        oneshot_accuracy: Right after projection, where measured.
        pruned_accuracy: The pruned model's final accuracy, where measured.
        out: The folder the files were written to, or None.
        metrics: Every figure the job measured (the ``metrics`` of ``--json``).
    """

    model: nn.Module
    plan: PruningPlan
    report: PruneReport
    method: str
    seconds: float
    dense_accuracy: float | None
    oneshot_accuracy: float | None
    pruned_accuracy: float | None
    out: Path | None
    metrics: dict[str, Any]

    @property
    def pattern_set(self) -> PatternSet:
        """The patterns the 3x3 kernels use."""
        return self.plan.pattern_set

    @property
    def conv_compression(self) -> float:
        """Dense over kept weights, all conv layers."""
        return self.report.conv_compression

    def to_dict(self) -> dict[str, Any]:
        """The summary ``pattune prune --json`` writes: metrics, report and pattern set."""
        return {
            "metrics": self.metrics,
            "report": self.report.to_dict(),
            "pattern_set": self.pattern_set.to_dict(),
        }


def layer_rates(values: Mapping[str, str | float] | Sequence[str]) -> dict[str, str | float]:
    """Per-layer rates from a mapping, or from ``NAME=RATE`` texts as ``--layer-rate`` takes."""
    if isinstance(values, Mapping):
        return dict(values)
    rates: dict[str, str | float] = {}
    for v in values:
        name, sep, rate = v.partition("=")
        if not sep or not name or not rate:
            raise UserInputError(
                "--layer-rate must look like NAME=RATE (such as features.3=0.5 or "
                f"features.3=2x); got {v!r}"
            )
        rates[name.strip()] = rate.strip()
    return rates


def _shape(shape: str | Sequence[int] | None) -> tuple[int, ...] | None:
    if isinstance(shape, str):
        return parse_input_shape(shape) if shape else None
    return None if shape is None else tuple(int(n) for n in shape)


def _metric(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)


def prune(
    *,
    model: str = "example",
    out: str | os.PathLike[str] | None = None,
    patterns: int = 8,
    pattern_set: str | None = None,
    connectivity: str | float = "3.6x",
    layer_rate: Mapping[str, str | float] | Sequence[str] | None = None,
    input_layer_connectivity: bool = False,
    depthwise_connectivity: bool = False,
    other_connectivity: str | float | None = None,
    method: str | None = None,
    admm: bool = False,
    admm_epochs: float = 3.0,
    retrain_epochs: float = 3.0,
    finetune_samples: int = 6000,
    input_shape: str | Sequence[int] | None = None,
    evaluate: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    train_epochs: float = 4.0,
    train_samples: int | None = None,
    threads: int | None = None,
    test_samples: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> PruneResult:
    """Pattern- and connectivity-prune a model; write its files when ``out`` is given.

    Args:
        model: ``example``, a built-in name, ``package.module:factory`` or a TorchScript file.
        out: Folder for the pruned state_dict, per-layer JSON/NPZ and the report.
        patterns: K, the number of patterns to select (PatDNN's frequency rule).
        pattern_set: Use this set instead: a ``.json`` file or tap lists like ``1,3,4,5/1,4,5,7``.
        connectivity: Kernels removed per 3x3 layer: a fraction in [0, 1) or a ratio like ``3.6x``.
        layer_rate: Per-layer rates: ``{"features.3": "2x"}`` or ``["features.3=2x"]``.
        input_layer_connectivity: Connectivity-prune the model's first conv too.
        depthwise_connectivity: Connectivity-prune depthwise 3x3 layers too.
        other_connectivity: Whole-kernel rate for 1x1 and other non-3x3 convs.
        method: ``oneshot``, ``estimate`` (the example's default) or ``admm`` (example only).
        admm: Same as ``method="admm"``.
        admm_epochs: Epochs of ADMM training.
        retrain_epochs: Epochs of masked retraining after ADMM.
        finetune_samples: Training examples of the estimate's fine-tune.
        input_shape: N,C,H,W of a model that is not built in.
        evaluate: ``package.module:function(model) -> accuracy``.
        data_dir: Fashion-MNIST folder (default: Debian's).
        cache_dir: Cache of the trained example.
        train_epochs: Epochs of the example's dense training.
        train_samples: Train the example on a subset of this many examples.
        threads: Torch threads (default: every CPU this process may use).
        test_samples: Evaluate the example on this many test examples.
        progress: Called with a short line as each step starts.

    Raises:
        UserInputError: An unloadable model, a missing input shape or dataset, a
            training method for a model without data, contradicting arguments, an
            ``out`` that is a file or not writable (checked before any work).
        ValueError: Rates, K or budgets out of range; a model with no 3x3 conv.
    """
    if admm and method not in (None, "admm"):
        raise UserInputError(f"--admm contradicts --method {method}; give one of them")
    if isinstance(patterns, bool) or not isinstance(patterns, int) or not 1 <= patterns <= 56:
        raise UserInputError("--patterns (K) must lie in 1..56 (the 3x3 patterns with 4 "
                             f"non-zeros that keep the centre); got {patterns!r}")
    for flag, value in (("--admm-epochs", admm_epochs), ("--retrain-epochs", retrain_epochs),
                        ("--train-epochs", train_epochs)):
        in_range(flag, value, low=0, low_open=True, high=10_000)
    for flag, count in (("--finetune-samples", finetune_samples), ("--threads", threads),
                        ("--train-samples", train_samples), ("--test-samples", test_samples)):
        in_range(flag, count, low=1)
    if out is not None:  # before the pruning (minutes to hours), not after it
        check_output_dir(out, "--out")
    config = PruneConfig(
        connectivity=connectivity,
        layer_rates=layer_rates(layer_rate or []),
        input_layer_connectivity=input_layer_connectivity,
        depthwise_connectivity=depthwise_connectivity,
        other_connectivity=other_connectivity,
    )
    job = PruneJob(
        model=model,
        input_shape=_shape(input_shape),
        patterns=patterns,
        pattern_set=pattern_set,
        prune=config,
        method="admm" if admm else method,
        estimate=EstimateConfig(samples=finetune_samples),
        admm=ADMMConfig(
            admm=TrainConfig(epochs=admm_epochs, lr=0.01, schedule="constant"),
            retrain=TrainConfig(epochs=retrain_epochs, lr=0.01),
        ),
        evaluate=evaluate,
        out=None if out is None else Path(out),
        data_dir=None if data_dir is None else Path(data_dir),
        cache_dir=None if cache_dir is None else Path(cache_dir),
        recipe=ExampleRecipe(epochs=train_epochs, train_samples=train_samples),
        test_samples=test_samples,
    )
    configure_threads(threads)
    outcome = run_prune(job, progress=progress or (lambda _msg: None))
    m = outcome.metrics
    return PruneResult(
        model=outcome.model,
        plan=outcome.plan,
        report=outcome.report,
        method=str(m["method"]),
        seconds=float(m["seconds"]),
        dense_accuracy=_metric(m, "dense_acc"),
        oneshot_accuracy=_metric(m, "oneshot_acc"),
        pruned_accuracy=_metric(m, "pruned_acc"),
        out=job.out,
        metrics=m,
    )


__all__ = ["PruneResult", "layer_rates", "prune"]
