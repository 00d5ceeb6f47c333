"""Where a candidate's accuracy comes from: real data, a user evaluator, or a label-free proxy.

Every source answers ``dense()`` (the unpruned model) and ``estimate(plan)``
(the candidate, pruned as its :class:`~search_spaces.pruning.PruningPlan` says),
both in [0, 1]. The caller plans the pruning once and hands the same plan to the
estimate and to the kernel tasks, so one candidate is never pruned twice:

* :class:`DataEstimate`: the pruning engine's cheap estimate (one-shot
  projection, BatchNorm re-estimation, a short masked fine-tune on a data
  budget) evaluated on held-out real data (Fashion-MNIST for the example);
* :class:`EvaluatorEstimate`: one-shot pruning with masks, then the user's
  ``--evaluate package.module:function`` (model -> float);
* :class:`WorkloadEstimate`: the user's own data and training (``--data``,
  ``--train``, ``--evaluate``; :mod:`search_spaces.workload`): one-shot pruning
  with masks, ``epochs`` epochs of the user's trainer, then the evaluator;
* :class:`ProxyEstimate`: with no data and no evaluator, the agreement of the
  pruned model's top-1 class with the dense model's on seeded random inputs
  (1.0 = same decisions), a label-free proxy in the spirit of "fidelity" scores.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

from search_spaces.data import Split
from search_spaces.estimate import EstimateConfig, estimate_plan
from search_spaces.masking import attach_masks
from search_spaces.pruning import PruningPlan
from search_spaces.training import evaluate
from search_spaces.workload import Workload


class AccuracySource(abc.ABC):
    """Accuracy of the dense model and of pruned candidates, in [0, 1]."""

    name = "base"

    @abc.abstractmethod
    def dense(self) -> float:
        """The unpruned model's accuracy."""

    @abc.abstractmethod
    def estimate(self, plan: PruningPlan) -> tuple[float, nn.Module]:
        """The candidate's accuracy and its pruned model (a copy, masks attached).

        Args:
            plan: The candidate's pruning, planned on this source's model.
        """


class DataEstimate(AccuracySource):
    """One-shot + short masked fine-tune, evaluated on held-out labelled data.

    Args:
        model: The trained dense model.
        input_shape: Its (N, C, H, W) input.
        train: Data the fine-tune draws from.
        held_out: Data the estimate is evaluated on.
        config: The fine-tune budget.
        dense_accuracy: The dense model's accuracy on ``held_out`` if known.
    """

    name = "data"

    def __init__(
        self,
        *,
        model: nn.Module,
        input_shape: Sequence[int],
        train: Split,
        held_out: Split,
        config: EstimateConfig | None = None,
        dense_accuracy: float | None = None,
    ) -> None:
        self.model = model
        self.input_shape = tuple(input_shape)
        self.train = train
        self.held_out = held_out
        self.config = config or EstimateConfig()
        self._dense = dense_accuracy

    def dense(self) -> float:
        if self._dense is None:
            self._dense = evaluate(self.model, self.held_out)
        return self._dense

    def estimate(self, plan: PruningPlan) -> tuple[float, nn.Module]:
        est, pruned = estimate_plan(self.model, plan, self.train, self.held_out, config=self.config)
        return est.estimate_acc, pruned


class EvaluatorEstimate(AccuracySource):
    """One-shot pruning, then the user's evaluator function."""

    name = "evaluator"

    def __init__(
        self,
        *,
        model: nn.Module,
        input_shape: Sequence[int],
        evaluator: Callable[[nn.Module], float],
    ) -> None:
        self.model = model
        self.input_shape = tuple(input_shape)
        self.evaluator = evaluator
        self._dense: float | None = None

    def dense(self) -> float:
        if self._dense is None:
            self._dense = float(self.evaluator(self.model))
        return self._dense

    def estimate(self, plan: PruningPlan) -> tuple[float, nn.Module]:
        pruned = copy.deepcopy(self.model)
        attach_masks(pruned, plan.masks())
        return float(self.evaluator(pruned)), pruned


class WorkloadEstimate(AccuracySource):
    """One-shot pruning with masks, a short masked training by the workload, its evaluator.

    Args:
        model: The trained dense model.
        workload: The user's trainer and evaluator.
        epochs: Epochs of the workload's trainer per estimate (0: one-shot only).
        lr: Learning rate of the estimate's SGD.
    """

    name = "workload"

    def __init__(self, *, model: nn.Module, workload: Workload, epochs: int = 1,
                 lr: float = 0.01) -> None:
        if epochs < 0:
            raise ValueError(f"estimate epochs must be >= 0; got {epochs}")
        self.model = model
        self.workload = workload
        self.epochs = epochs
        self.lr = lr
        self._dense: float | None = None

    def dense(self) -> float:
        if self._dense is None:
            self._dense = float(self.workload.evaluator(self.model))
        return self._dense

    def estimate(self, plan: PruningPlan) -> tuple[float, nn.Module]:
        pruned = copy.deepcopy(self.model)
        masks = attach_masks(pruned, plan.masks())
        if self.epochs:
            opt = torch.optim.SGD(pruned.parameters(), lr=self.lr, momentum=0.9, nesterov=True)
            opt.register_step_post_hook(lambda *_: masks.reapply())
            for epoch in range(self.epochs):
                self.workload.trainer(pruned, opt, torch.nn.functional.cross_entropy, epoch)
        return float(self.workload.evaluator(pruned)), pruned


class ProxyEstimate(AccuracySource):
    """Top-1 agreement with the dense model on seeded random inputs (no labels needed)."""

    name = "proxy"

    def __init__(
        self, *, model: nn.Module, input_shape: Sequence[int], samples: int = 64, seed: int = 0
    ) -> None:
        self.model = model.eval()
        self.input_shape = tuple(input_shape)
        g = torch.Generator().manual_seed(seed)
        self.inputs = torch.randn((samples, *self.input_shape[1:]), generator=g)
        with torch.no_grad():
            self.reference = self._top1(self.model)

    def _top1(self, model: nn.Module) -> torch.Tensor:
        with torch.no_grad():
            out = torch.cat(
                [model(self.inputs[i : i + 16]) for i in range(0, len(self.inputs), 16)]
            )
        return out.reshape(len(self.inputs), -1).argmax(dim=1)

    def dense(self) -> float:
        return 1.0

    def estimate(self, plan: PruningPlan) -> tuple[float, nn.Module]:
        pruned = copy.deepcopy(self.model)
        attach_masks(pruned, plan.masks())
        agree = (self._top1(pruned.eval()) == self.reference).float().mean().item()
        return float(agree), pruned
