"""The cheap accuracy estimate for the tuner's many trials.

One-shot projection (no ADMM), BatchNorm statistics re-estimated on a few
batches (pruning shifts every activation's scale, and stale running statistics
alone can drop accuracy to chance), then a short masked fine-tune on a data
budget, then evaluation. The input model is never modified.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from search_spaces.data import Split
from search_spaces.masking import attach_masks
from search_spaces.patterns import PatternSet
from search_spaces.pruning import PruneConfig, PruningPlan, plan_pruning
from search_spaces.training import TrainConfig, evaluate, train


@dataclass(frozen=True, kw_only=True)
class EstimateConfig:
    """Budget of one estimate.

    Attributes:
        samples: Training examples the fine-tune sees in total (0: no fine-tune).
        lr: Fine-tune learning rate (cosine to 0).
        batch_size: Fine-tune batch size.
        bn_batches: Batches used to re-estimate BatchNorm statistics (0: skip).
        seed: Seed of the example draws.
    """

    samples: int = 6000
    lr: float = 0.01
    batch_size: int = 128
    bn_batches: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.samples < 0 or self.bn_batches < 0:
            raise ValueError(
                f"samples and bn_batches must be >= 0; got {self.samples}, {self.bn_batches}"
            )


@dataclass(frozen=True)
class Estimate:
    """One estimate's result.

    Attributes:
        oneshot_acc: Accuracy right after projection (BN re-estimated), no training.
        estimate_acc: Accuracy after the masked fine-tune.
        samples: Training examples the fine-tune used.
        seconds: Wall time of the whole estimate.
    """

    oneshot_acc: float
    estimate_acc: float
    samples: int
    seconds: float


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, data: Split, *, batches: int, batch_size: int = 128
) -> None:
    """Re-estimate BatchNorm running statistics from ``batches`` batches of ``data``."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or batches == 0:
        return
    was = model.training
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches seen
    model.train()
    for i in range(min(batches, max(1, len(data) // batch_size))):
        model(data.images[i * batch_size : (i + 1) * batch_size])
    for bn in bns:
        bn.momentum = 0.1
    model.train(was)


def estimate_accuracy(
    model: nn.Module,
    input_shape: Sequence[int],
    pattern_set: PatternSet,
    train_data: Split,
    eval_data: Split,
    *,
    prune: PruneConfig | None = None,
    config: EstimateConfig | None = None,
) -> tuple[Estimate, nn.Module, PruningPlan]:
    """Plan the pruning of ``model``, then :func:`estimate_plan` it.

    Returns:
        ``(estimate, pruned copy with masks attached, plan)``; the estimate's
        ``seconds`` include the planning.
    """
    t0 = time.perf_counter()
    plan = plan_pruning(model, input_shape, pattern_set, prune)
    est, pruned = estimate_plan(model, plan, train_data, eval_data, config=config)
    return replace(est, seconds=time.perf_counter() - t0), pruned, plan


def estimate_plan(
    model: nn.Module,
    plan: PruningPlan,
    train_data: Split,
    eval_data: Split,
    *,
    config: EstimateConfig | None = None,
) -> tuple[Estimate, nn.Module]:
    """Prune a copy of ``model`` by ``plan``, fine-tune it briefly with masks, evaluate it.

    The plan is taken as given (a tuner plans each candidate once and hands the
    same plan to the accuracy estimate and to its kernel tasks).

    Args:
        model: The dense model ``plan`` was planned on; not modified.
        plan: Which weights survive.
        train_data: What the BatchNorm re-estimation and the fine-tune draw from.
        eval_data: What the estimate is evaluated on.
        config: The budget (default :class:`EstimateConfig`).

    Returns:
        ``(estimate, pruned copy with masks attached)``.
    """
    config = config or EstimateConfig()
    t0 = time.perf_counter()
    pruned = copy.deepcopy(model)
    masks = attach_masks(pruned, plan.masks())
    data = train_data.subset(
        max(config.samples, config.bn_batches * config.batch_size), seed=config.seed
    )
    recalibrate_batchnorm(pruned, data, batches=config.bn_batches, batch_size=config.batch_size)
    oneshot = evaluate(pruned, eval_data)
    acc = oneshot
    if config.samples > 0:
        ft = data.subset(config.samples, seed=config.seed + 1)
        cfg = TrainConfig(epochs=1, lr=config.lr, batch_size=config.batch_size, seed=config.seed)
        train(pruned, ft, cfg, step_hook=masks)
        acc = evaluate(pruned, eval_data)
    est = Estimate(
        oneshot_acc=oneshot,
        estimate_acc=acc,
        samples=config.samples,
        seconds=time.perf_counter() - t0,
    )
    return est, pruned
