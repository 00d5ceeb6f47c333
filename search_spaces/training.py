"""Plain training and evaluation loops, with hooks for masks and ADMM.

Every loop owns a seeded ``torch.Generator`` for shuffling; nothing touches the
global RNG. :func:`configure_threads` keeps torch from oversubscribing a small
shared machine.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from search_spaces.data import Split

#: Extra loss term computed from the model (ADMM's penalty), added every step.
LossHook = Callable[[nn.Module], torch.Tensor]
#: Called after every optimizer step (re-masking) with the model.
StepHook = Callable[[nn.Module], None]
#: Called at the end of every epoch with (epoch index, model).
EpochHook = Callable[[int, nn.Module], None]


def configure_threads(max_threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``max_threads`` or the CPUs this process may use.

    Returns:
        The thread count set.
    """
    if max_threads is not None and max_threads < 1:
        raise ValueError(f"threads must be >= 1; got {max_threads}")
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    n = max(1, min(cpus, max_threads or cpus))
    torch.set_num_threads(n)
    return n


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How to run one training phase.

    Attributes:
        epochs: Passes over the data (> 0; may be fractional below 1 for tiny budgets).
        lr: Peak learning rate of SGD with Nesterov momentum 0.9.
        batch_size: Examples per step.
        weight_decay: L2 weight decay.
        seed: Seed of the shuffling generator.
        schedule: ``"cosine"`` (decay to 0) or ``"constant"``.
    """

    epochs: float = 4.0
    lr: float = 0.05
    batch_size: int = 128
    weight_decay: float = 5e-4
    seed: int = 0
    schedule: str = "cosine"

    def __post_init__(self) -> None:
        if not self.epochs > 0:
            raise ValueError(f"epochs must be > 0; got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0; got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {self.batch_size}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be one of cosine, constant; got {self.schedule!r}")


def train(
    model: nn.Module,
    data: Split,
    config: TrainConfig,
    *,
    loss_hook: LossHook | None = None,
    step_hook: StepHook | None = None,
    epoch_hook: EpochHook | None = None,
) -> float:
    """Train ``model`` in place with cross-entropy; return the last epoch's mean loss.

    Args:
        model: The network (left in train mode on return).
        data: Training examples.
        config: Epochs, learning rate, batch size, seed.
        loss_hook: Extra term added to each batch's loss (ADMM penalty).
        step_hook: Run after each optimizer step (re-apply masks).
        epoch_hook: Run after each epoch (ADMM's Z/U update).
    """
    g = torch.Generator().manual_seed(config.seed)
    n = len(data)
    steps_per_epoch = max(1, math.ceil(n / config.batch_size))
    total = max(1, round(config.epochs * steps_per_epoch))
    opt = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=0.9,
        nesterov=True,
        weight_decay=config.weight_decay,
    )
    model.train()
    step, epoch, last = 0, 0, float("nan")
    while step < total:
        perm = torch.randperm(n, generator=g)
        running, count = 0.0, 0
        for start in range(0, n, config.batch_size):
            if step >= total:
                break
            if config.schedule == "cosine":
                for group in opt.param_groups:
                    group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            idx = perm[start : start + config.batch_size]
            loss = F.cross_entropy(model(data.images[idx]), data.labels[idx])
            if loss_hook is not None:
                loss = loss + loss_hook(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step_hook is not None:
                step_hook(model)
            running += float(loss.detach()) * len(idx)
            count += len(idx)
            step += 1
        last = running / max(1, count)
        if epoch_hook is not None:
            epoch_hook(epoch, model)
        epoch += 1
    return last


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """Class ids predicted for ``images`` (eval mode; the training flag is restored)."""
    was = model.training
    model.eval()
    try:
        out = [
            model(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)
        ]
    finally:
        model.train(was)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)


def evaluate(model: nn.Module, data: Split, *, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` on ``data`` in [0, 1]."""
    if len(data) == 0:
        raise ValueError("cannot evaluate on an empty split")
    pred = predict(model, data.images, batch_size=batch_size)
    return float((pred == data.labels).float().mean())
