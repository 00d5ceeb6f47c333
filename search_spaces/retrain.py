"""Retrain a chosen configuration to the dense model's accuracy, resumably, epoch by epoch.

PatDNN's recipe (section 4.2): ADMM training toward the pattern set and the
per-layer connectivity rates (:class:`~search_spaces.admm.ADMMPruner`), then hard
pruning (the plan is made from the ADMM-trained weights), then masked retraining.
``finetune`` skips ADMM: the one-shot plan's masks are attached, BatchNorm is
re-estimated, and the masked model is retrained. ``none`` does neither.

Training goes through a :class:`~search_spaces.workload.Workload` (the trainer /
evaluator convention of NNI's pruners): pattune owns the optimizer and the
criterion, ADMM's penalty is part of the criterion, and the ADMM updates and the
masks run in a hook on the optimizer's step, so a user's own training loop works
unchanged. After every epoch the whole state (weights, optimizer and scheduler,
ADMM's Z, Y, U, V and rho, the plan once made, the history) is written to a
checkpoint, so a retraining killed at epoch k resumes at epoch k + 1 with the
same result. The checkpoint holds only tensors and plain values, so it loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pattune_common import Record, stable_hash
from search_spaces.admm import ADMMConfig, ADMMPruner
from search_spaces.masking import MaskHandle, attach_masks
from search_spaces.patterns import PatternSet
from search_spaces.pruning import PruneConfig, PruningPlan, plan_pruning
from search_spaces.retrain_state import (
    Checkpoint,
    Cosine,
    LossMeter,
    Teacher,
    admm_state,
    plan_from_state,
    plan_state,
    plan_state_hash,
    restore_admm,
)
from search_spaces.workload import Workload

log = logging.getLogger(__name__)

METHODS = ("admm", "finetune", "none")


@dataclass(frozen=True, kw_only=True)
class RetrainConfig(Record):
    """How to retrain (epochs are whole passes over the workload's training data).

    Attributes:
        method: ``admm`` (ADMM, hard pruning, masked retraining), ``finetune``
            (masked retraining of the one-shot pruning) or ``none``.
        admm_epochs: Epochs of the ADMM phase (``admm`` only).
        retrain_epochs: Epochs of masked retraining.
        lr: Learning rate (constant in the ADMM phase; in retraining it decays to 0
            by a per-step cosine).
        momentum: SGD momentum (Nesterov).
        weight_decay: L2 weight decay.
        rho: ADMM's initial penalty weight; ``rho_growth`` and ``rho_max`` as in
            :class:`~search_spaces.admm.ADMMConfig`.
        update_every: Optimizer steps between ADMM's Z/Y and dual updates.
        distill: Weight of knowledge distillation from the dense model in both
            phases (0: plain cross-entropy); the loss is ``(1 - distill) * CE +
            distill * T^2 * KL(dense || model)`` at temperature ``temperature``.
        temperature: The distillation temperature.
    """

    method: str = "admm"
    admm_epochs: int = 4
    retrain_epochs: int = 6
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    rho: float = 0.01
    rho_growth: float = 1.5
    rho_max: float = 1.0
    update_every: int = 100
    distill: float = 0.0
    temperature: float = 4.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"retrain must be one of {', '.join(METHODS)}; got {self.method!r}")
        if self.admm_epochs < 0 or self.retrain_epochs < 0:
            raise ValueError(
                f"epochs must be >= 0; got admm {self.admm_epochs}, retrain {self.retrain_epochs}"
            )
        if not self.lr > 0:
            raise ValueError(f"the learning rate must be > 0; got {self.lr}")
        if not 0 <= self.distill <= 1 or not self.temperature > 0:
            raise ValueError(f"distill must lie in [0, 1] and temperature be > 0; got "
                             f"{self.distill}, {self.temperature}")
        ADMMConfig(rho=self.rho, rho_growth=self.rho_growth, rho_max=self.rho_max,
                   update_every=self.update_every)  # validates those


@dataclass(frozen=True)
class EpochRecord(Record):
    """One finished epoch: phase (``admm`` or ``retrain``), 0-based epoch, mean loss, accuracy."""

    phase: str
    epoch: int
    loss: float
    accuracy: float
    seconds: float


@dataclass
class RetrainResult:
    """What a retraining produced.

    Attributes:
        model: The retrained model, masks attached (eval mode).
        plan: The pruning the masks come from.
        accuracy: The workload's accuracy of ``model``.
        history: Every epoch, in order (those before a resume included).
        resumed_at: The first epoch this call ran, as ``(phase, epoch)``, when it
            resumed a checkpoint; else None.
        residuals: ADMM's relative constraint residual before and after each of its
            updates (empty without ADMM).
    """

    model: nn.Module
    plan: PruningPlan
    accuracy: float
    history: list[EpochRecord] = field(default_factory=list)
    resumed_at: tuple[str, int] | None = None
    residuals: tuple[float, ...] = ()


Progress = Callable[[EpochRecord, int], None]


def _sgd(model: nn.Module, cfg: RetrainConfig) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                           weight_decay=cfg.weight_decay)


class _Retraining:
    """One retraining run: the phases, each epoch checkpointed."""

    def __init__(self, model: nn.Module, input_shape: Sequence[int], pattern_set: PatternSet,
                 prune: PruneConfig, workload: Workload, cfg: RetrainConfig,
                 checkpoint: Checkpoint, progress: Progress | None) -> None:
        self.model, self.input_shape, self.pattern_set = model, tuple(input_shape), pattern_set
        self.prune, self.workload, self.cfg = prune, workload, cfg
        self.checkpoint, self.progress = checkpoint, progress
        self.history: list[EpochRecord] = []
        self.residuals: tuple[float, ...] = ()
        self.teacher: Teacher | None = None
        self.total = (cfg.admm_epochs if cfg.method == "admm" else 0) + cfg.retrain_epochs

    def _epoch(self, phase: str, epoch: int, opt: torch.optim.Optimizer,
               meter: LossMeter) -> EpochRecord:
        t0 = time.perf_counter()
        self.workload.trainer(self.model, opt, meter, epoch)
        acc = float(self.workload.evaluator(self.model))
        rec = EpochRecord(phase, epoch, meter.mean(), acc, time.perf_counter() - t0)
        self.history.append(rec)
        log.info("retrain %s epoch %d: loss %.4f accuracy %.4f", phase, epoch, rec.loss, acc)
        return rec

    def _report(self, rec: EpochRecord) -> None:
        if self.progress is not None:
            self.progress(rec, self.total)

    def admm(self, start: int, saved: dict[str, Any] | None) -> None:
        cfg = self.cfg
        admm = ADMMPruner(self.model, self.input_shape, self.pattern_set, self.prune,
                          ADMMConfig(rho=cfg.rho, rho_growth=cfg.rho_growth, rho_max=cfg.rho_max,
                                     update_every=cfg.update_every))
        opt = _sgd(self.model, cfg)
        if saved is not None:
            restore_admm(admm, saved["admm"])
            opt.load_state_dict(saved["optimizer"])
        opt.register_step_post_hook(lambda *_: admm.step(self.model))
        for epoch in range(start, cfg.admm_epochs):
            rec = self._epoch("admm", epoch, opt, LossMeter(
                lambda: admm.penalty(self.model), self.teacher, self.cfg.distill))
            self.checkpoint.save({"phase": "admm", "epoch": epoch + 1, "model":
                                  self.model.state_dict(), "optimizer": opt.state_dict(),
                                  "admm": admm_state(admm), "plan": None,
                                  "history": [r.to_dict() for r in self.history]})
            self._report(rec)
        self.residuals = tuple(admm.history)

    def retrain(self, plan: PruningPlan, start: int, saved: dict[str, Any] | None) -> MaskHandle:
        cfg = self.cfg
        masks = attach_masks(self.model, plan.masks())
        opt = _sgd(self.model, cfg)
        sched = Cosine(opt, cfg.lr, cfg.retrain_epochs, self.workload.steps_per_epoch)
        if saved is not None and saved.get("optimizer") is not None:
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
        opt.register_step_post_hook(lambda *_: masks.reapply())
        opt.register_step_post_hook(sched)
        for epoch in range(start, cfg.retrain_epochs):
            rec = self._epoch("retrain", epoch, opt,
                              LossMeter(None, self.teacher, self.cfg.distill))
            sched.end_epoch()
            self.checkpoint.save({"phase": "retrain", "epoch": epoch + 1, "model":
                                  self.model.state_dict(), "optimizer": opt.state_dict(),
                                  "scheduler": sched.state_dict(), "plan": plan_state(plan),
                                  "history": [r.to_dict() for r in self.history]})
            self._report(rec)
        return masks


def retrain(
    model: nn.Module,
    input_shape: Sequence[int],
    pattern_set: PatternSet,
    prune: PruneConfig,
    workload: Workload,
    config: RetrainConfig,
    *,
    plan: PruningPlan | None = None,
    checkpoint: str | Path | None = None,
    progress: Progress | None = None,
) -> RetrainResult:
    """Retrain ``model`` in place toward ``pattern_set`` and ``prune``'s rates.

    Args:
        model: The trained dense model (changed in place; masks attached on return).
        input_shape: Its (N, C, H, W) input.
        pattern_set: The patterns 3x3 kernels may use.
        prune: The per-layer connectivity rates.
        workload: The trainer and evaluator.
        config: Method and schedule.
        plan: ``finetune``/``none``: the one-shot plan to keep (default: planned now).
            ``admm`` plans from the ADMM-trained weights instead.
        checkpoint: File written after every epoch and resumed from when it holds
            this same configuration (None: no checkpoint).
        progress: Called after every epoch with the record and the total epochs.
    """
    key = stable_hash({"config": config.to_dict(), "patterns": pattern_set.to_dict(),
                       "prune": prune.to_dict(), "workload": workload.name,
                       "plan": None if plan is None else plan_state_hash(plan)})
    store = Checkpoint(None if checkpoint is None else Path(checkpoint), key)
    run = _Retraining(model, input_shape, pattern_set, prune, workload, config, store, progress)
    if config.distill and config.method != "none":
        run.teacher = Teacher(model, model, config.temperature)  # the dense model, as given
    saved = store.load()
    phase, start = ("admm" if config.method == "admm" else "retrain"), 0
    resumed_at: tuple[str, int] | None = None
    if saved is not None:
        model.load_state_dict(saved["model"])
        run.history = [EpochRecord.from_dict(d) for d in saved["history"]]
        phase, start = saved["phase"], int(saved["epoch"])
        resumed_at = (phase, start)
        log.info("retrain: resuming %s at epoch %d from %s", phase, start, checkpoint)
    if config.method == "admm" and phase == "admm":
        run.admm(start, saved if saved is not None and saved["phase"] == "admm" else None)
        phase, start, saved = "retrain", 0, None
    if saved is not None and saved.get("plan") is not None:
        plan = plan_from_state(saved["plan"], model, input_shape, pattern_set, prune)
    elif plan is None or config.method == "admm":
        plan = plan_pruning(model, input_shape, pattern_set, prune)
    if config.method == "none":
        attach_masks(model, plan.masks())
    else:
        run.retrain(plan, start, saved if phase == "retrain" else None)
    if run.teacher is not None:
        run.teacher.remove()
    model.eval()
    accuracy = run.history[-1].accuracy if run.history and config.method != "none" \
        else float(workload.evaluator(model))
    return RetrainResult(model, plan, accuracy, run.history, resumed_at, run.residuals)


__all__ = ["METHODS", "EpochRecord", "RetrainConfig", "RetrainResult", "retrain"]
