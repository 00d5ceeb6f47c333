"""The prune job behind ``pattune prune``: load, select patterns, prune, train, evaluate, save.

Three methods, cheapest first:

* ``oneshot``: projection and connectivity pruning of the given weights, nothing else;
* ``estimate`` (default for the example): one-shot, BatchNorm re-estimated, then a
  short masked fine-tune on a data budget (:mod:`search_spaces.estimate`);
* ``admm``: ADMM-regularised training, hard pruning, masked retraining
  (:mod:`search_spaces.admm`).

Training needs data, which only the bundled example has (Fashion-MNIST); other
models are pruned one-shot and evaluated with ``evaluate`` when one is given.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from pattune_common import UserInputError
from search_spaces.admm import ADMMConfig, admm_prune
from search_spaces.artifacts import save_pruned
from search_spaces.data import Split, load_split
from search_spaces.estimate import EstimateConfig, estimate_accuracy
from search_spaces.example import EXAMPLE_INPUT_SHAPE, ExampleRecipe, trained_example
from search_spaces.loading import load_evaluator, load_model
from search_spaces.masking import attach_masks
from search_spaces.patterns import PatternSet
from search_spaces.pruning import PruneConfig, PruningPlan, plan_pruning
from search_spaces.report import PruneReport, build_report
from search_spaces.selection import parse_pattern_set, select_pattern_set
from search_spaces.training import evaluate

METHODS = ("oneshot", "estimate", "admm")


@dataclass(frozen=True, kw_only=True)
class PruneJob:
    """Everything ``pattune prune`` was asked to do.

    Attributes:
        model: ``--model`` text (default: the bundled example).
        input_shape: Needed for models that are not built in.
        patterns: K, the number of patterns to select (PatDNN's frequency rule).
        pattern_set: A user-given set instead (``.json`` file or tap lists).
        prune: Connectivity rates and which layers get which pruning.
        method: ``oneshot``, ``estimate`` or ``admm``; None picks ``estimate``
            for the example and ``oneshot`` for other models.
        estimate: Budget of the ``estimate`` method.
        admm: Phases of the ``admm`` method.
        evaluate: ``package.module:function`` (model -> accuracy), optional.
        out: Output directory, or None to write nothing.
        data_dir: Fashion-MNIST directory (None: Debian's or ``$PATTUNE_FASHION_MNIST_DIR``).
        cache_dir: Cache of the trained example (None: ``$PATTUNE_CACHE`` or ``~/.cache/pattune``).
        recipe: How the dense example is trained.
        test_samples: Evaluate the example on a seeded subset of the 10k test set.
    """

    model: str = "example"
    input_shape: tuple[int, ...] | None = None
    patterns: int = 8
    pattern_set: str | None = None
    prune: PruneConfig = field(default_factory=PruneConfig)
    method: str | None = None
    estimate: EstimateConfig = field(default_factory=EstimateConfig)
    admm: ADMMConfig = field(default_factory=ADMMConfig)
    evaluate: str | None = None
    out: Path | None = None
    data_dir: Path | None = None
    cache_dir: Path | None = None
    recipe: ExampleRecipe = field(default_factory=ExampleRecipe)
    test_samples: int | None = None

    def __post_init__(self) -> None:
        if self.test_samples is not None and self.test_samples < 1:
            raise ValueError(f"test samples must be >= 1; got {self.test_samples}")
        if self.method is not None and self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")


@dataclass(frozen=True)
class PruneOutcome:
    """What a prune job produced.

    Attributes:
        model: The pruned model (masks attached).
        plan: The pruning plan.
        report: Per-layer report.
        metrics: Accuracies and timings (``dense_acc``, ``pruned_acc``, ``oneshot_acc``,
            ``seconds``...) where known.
    """

    model: nn.Module
    plan: PruningPlan
    report: PruneReport
    metrics: dict[str, Any]


def _pattern_set(job: PruneJob, model: nn.Module, shape: tuple[int, ...]) -> PatternSet:
    if job.pattern_set is not None:
        return parse_pattern_set(job.pattern_set)
    return select_pattern_set(model, shape, job.patterns)


@dataclass(frozen=True)
class _Subject:
    """The model to prune, its input shape and (for the example) its data."""

    model: nn.Module
    shape: tuple[int, ...]
    train: Split | None
    test: Split | None
    metrics: dict[str, Any]


def _is_example(job: PruneJob) -> bool:
    return job.model.strip().lower() in ("example", "example-fashion-mnist")


def _load_subject(job: PruneJob, progress: Callable[[str], None]) -> _Subject:
    if not _is_example(job):
        loaded = load_model(job.model)
        shape = job.input_shape or loaded.input_shape
        if shape is None:
            raise UserInputError(
                f"model {job.model!r} needs --input-shape N,C,H,W (such as 1,3,224,224) "
                "to find its layer sizes"
            )
        return _Subject(loaded.model, shape, None, None, {})
    progress("loading Fashion-MNIST")
    train_split = load_split("train", root=job.data_dir)
    test_split = load_split("test", root=job.data_dir)
    if job.test_samples is not None:
        test_split = test_split.subset(job.test_samples, seed=1)
    progress("loading or training the dense example")
    ex = trained_example(
        job.recipe, cache=job.cache_dir, train_split=train_split, test_split=test_split
    )
    metrics = {
        "dense_acc": ex.test_acc,
        "dense_cached": ex.cached,
        "dense_train_seconds": round(ex.seconds, 1),
    }
    return _Subject(ex.model, EXAMPLE_INPUT_SHAPE, train_split, test_split, metrics)


def _prune(
    job: PruneJob, method: str, subject: _Subject, pattern_set: PatternSet
) -> tuple[nn.Module, PruningPlan, dict[str, Any]]:
    """Apply ``method``; return the pruned model (masks attached), its plan and accuracies."""
    shape, train_split, test_split = subject.shape, subject.train, subject.test
    if method == "estimate":
        assert train_split is not None and test_split is not None
        est, model, plan = estimate_accuracy(
            subject.model,
            shape,
            pattern_set,
            train_split,
            test_split,
            prune=job.prune,
            config=job.estimate,
        )
        return model, plan, {"oneshot_acc": est.oneshot_acc, "pruned_acc": est.estimate_acc}
    model = copy.deepcopy(subject.model)
    if method == "oneshot":
        plan = plan_pruning(model, shape, pattern_set, job.prune)
        attach_masks(model, plan.masks())
        return (
            model,
            plan,
            {} if test_split is None else {"oneshot_acc": evaluate(model, test_split)},
        )
    assert train_split is not None and test_split is not None
    result = admm_prune(model, shape, pattern_set, train_split, prune=job.prune, config=job.admm)
    metrics = {"pruned_acc": evaluate(model, test_split), "admm_residuals": list(result.residuals)}
    return model, result.plan, metrics


def run_prune(job: PruneJob, *, progress: Callable[[str], None] = lambda _: None) -> PruneOutcome:
    """Run a prune job (see :class:`PruneJob`); writes files when ``job.out`` is set.

    Raises:
        UserInputError: Unloadable model, missing input shape, missing dataset, bad evaluator,
            a training method for a model without data.
        ValueError: Rates or K out of range, no 3x3 conv in the model.
    """
    t0 = time.perf_counter()
    evaluator = load_evaluator(job.evaluate) if job.evaluate else None
    method = job.method or ("estimate" if _is_example(job) else "oneshot")
    if method != "oneshot" and not _is_example(job):
        raise UserInputError(
            f"--method {method} trains and needs data, which only the bundled example has; "
            "use --method oneshot for other models"
        )
    subject = _load_subject(job, progress)
    metrics = dict(subject.metrics)
    if evaluator is not None:
        metrics["dense_acc"] = evaluator(subject.model)
    pattern_set = _pattern_set(job, subject.model, subject.shape)
    progress(f"pruning with {len(pattern_set)} patterns ({method})")
    model, plan, accs = _prune(job, method, subject, pattern_set)
    metrics.update(accs)
    if evaluator is not None:
        metrics["pruned_acc"] = evaluator(model)
    metrics.update(method=method, seconds=round(time.perf_counter() - t0, 1))
    if job.out is not None:
        progress(f"writing {job.out}")
        extra = {"metrics": metrics}
        save_pruned(
            job.out, model, plan, input_shape=subject.shape, model_name=job.model, extra=extra
        )
    return PruneOutcome(model=model, plan=plan, report=build_report(plan), metrics=metrics)
