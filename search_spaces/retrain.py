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

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from pattune_common import Record, stable_hash
from search_spaces.admm import ADMMConfig, ADMMPruner
from search_spaces.masking import MaskHandle, attach_masks
from search_spaces.models import conv_layers
from search_spaces.patterns import PatternSet
from search_spaces.pruning import LayerPlan, PruneConfig, PruningPlan, plan_pruning
from search_spaces.workload import Workload

log = logging.getLogger(__name__)

METHODS = ("admm", "finetune", "none")
CHECKPOINT_VERSION = 1


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


class _Teacher:
    """The dense model as a distillation teacher for the student being retrained.

    The criterion sees only ``(output, target)``; a forward pre-hook on the student
    keeps the input of its latest training forward, so the teacher's logits for the
    same batch are at hand, whatever loop the user's trainer runs.
    """

    def __init__(self, dense: nn.Module, student: nn.Module, temperature: float) -> None:
        self.dense = copy.deepcopy(dense).eval()
        for p in self.dense.parameters():
            p.requires_grad_(False)
        self.temperature = temperature
        self.x: torch.Tensor | None = None
        self.handle = student.register_forward_pre_hook(self._keep)

    def _keep(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if module.training and args and isinstance(args[0], torch.Tensor):
            self.x = args[0]

    def loss(self, output: torch.Tensor) -> torch.Tensor | None:
        """T^2 KL(teacher || student) at temperature T for the latest batch, or None."""
        if self.x is None or self.x.shape[0] != output.shape[0]:
            return None
        with torch.no_grad():
            soft = F.softmax(self.dense(self.x) / self.temperature, dim=1)
        log_p = F.log_softmax(output / self.temperature, dim=1)
        return F.kl_div(log_p, soft, reduction="batchmean") * self.temperature**2

    def remove(self) -> None:
        self.handle.remove()


class _LossMeter:
    """The criterion pattune hands the trainer: cross-entropy, distillation, a penalty.

    ``(1 - a) * CE + a * KD`` (``a`` = the distillation weight, 0 without a teacher)
    plus the penalty (ADMM's); the mean of the plain cross-entropy is tracked.
    """

    def __init__(self, penalty: Callable[[], torch.Tensor] | None = None,
                 teacher: _Teacher | None = None, distill: float = 0.0) -> None:
        self.penalty, self.teacher, self.distill = penalty, teacher, distill
        self.total, self.count = 0.0, 0

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(output, target)
        self.total += float(ce.detach()) * int(target.shape[0])
        self.count += int(target.shape[0])
        loss = ce
        kd = self.teacher.loss(output) if self.teacher is not None and self.distill else None
        if kd is not None:
            loss = (1 - self.distill) * ce + self.distill * kd
        return loss + self.penalty() if self.penalty is not None else loss

    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")


def plan_state(plan: PruningPlan) -> list[dict[str, Any]]:
    """A plan's layers as tensors and plain values (``torch.load(weights_only=True)``-safe)."""
    return [
        {"name": p.spec.name, "kind": p.kind, "removed": p.removed,
         "pattern_ids": None if p.pattern_ids is None else torch.from_numpy(p.pattern_ids.copy()),
         "alive": torch.from_numpy(p.alive.copy()), "mask": torch.from_numpy(p.mask.copy())}
        for p in plan.layers
    ]


def plan_from_state(state: Sequence[dict[str, Any]], model: nn.Module,
                    input_shape: Sequence[int], pattern_set: PatternSet,
                    config: PruneConfig) -> PruningPlan:
    """The plan :func:`plan_state` saved, its layer shapes read from ``model`` again."""
    specs = {i.name: i.spec for i in conv_layers(model, input_shape)}
    layers = tuple(
        LayerPlan(specs[d["name"]], d["kind"], float(d["removed"]),
                  None if d["pattern_ids"] is None else d["pattern_ids"].numpy(),
                  d["alive"].numpy(), d["mask"].numpy())
        for d in state
    )
    return PruningPlan(pattern_set=pattern_set, config=config, layers=layers)


class _Cosine:
    """Per-step cosine decay of the learning rate to 0 over a phase, driven by the optimizer.

    Steps per epoch come from the workload when it knows them; otherwise epoch 0
    runs at the base rate while its steps are counted, and the cosine spans the
    remaining epochs.
    """

    def __init__(self, opt: torch.optim.Optimizer, base: float, epochs: int,
                 steps_per_epoch: int | None) -> None:
        self.opt, self.base, self.epochs = opt, base, epochs
        self.per_epoch = steps_per_epoch
        self.counted: int | None = None  # epoch 0's steps, when they had to be counted
        self.step = 0

    def __call__(self, *_: object) -> None:
        self.step += 1
        if self.per_epoch is None:
            return
        start = self.counted or 0
        total = max(1, self.per_epoch * self.epochs - start)
        frac = min(1.0, (self.step - start) / total)
        for group in self.opt.param_groups:
            group["lr"] = self.base * 0.5 * (1 + math.cos(math.pi * frac))

    def end_epoch(self) -> None:
        """After epoch 0 of an unknown length: its step count fixes the schedule."""
        if self.per_epoch is None:
            self.per_epoch = self.counted = self.step

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "per_epoch": self.per_epoch, "counted": self.counted}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.per_epoch, self.counted = state["step"], state["per_epoch"], state["counted"]


class _Checkpoint:
    """The retraining's state on disk: written atomically after every epoch."""

    def __init__(self, path: Path | None, key: str) -> None:
        self.path, self.key = path, key

    def load(self) -> dict[str, Any] | None:
        if self.path is None or not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a torn or foreign file: start afresh
            log.warning("retrain checkpoint %s unreadable (%s); starting afresh", self.path, exc)
            return None
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION \
                or state.get("key") != self.key:
            log.warning("retrain checkpoint %s is for another configuration; starting afresh",
                        self.path)
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        torch.save({"version": CHECKPOINT_VERSION, "key": self.key, **state}, tmp)
        tmp.replace(self.path)


def _sgd(model: nn.Module, cfg: RetrainConfig) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                           weight_decay=cfg.weight_decay)


def _admm_state(admm: ADMMPruner) -> dict[str, Any]:
    return {"rho": admm.rho, "steps": admm.steps, "history": list(admm.history),
            "layers": [{"name": x.name, "z": x.z, "y": x.y, "u": x.u, "v": x.v}
                       for x in admm.layers]}


def _restore_admm(admm: ADMMPruner, state: dict[str, Any]) -> None:
    admm.rho, admm.steps, admm.history = state["rho"], state["steps"], list(state["history"])
    saved = {d["name"]: d for d in state["layers"]}
    for x in admm.layers:
        d = saved[x.name]
        x.z, x.y, x.u, x.v = d["z"], d["y"], d["u"], d["v"]


class _Retraining:
    """One retraining run: the phases, each epoch checkpointed."""

    def __init__(self, model: nn.Module, input_shape: Sequence[int], pattern_set: PatternSet,
                 prune: PruneConfig, workload: Workload, cfg: RetrainConfig,
                 checkpoint: _Checkpoint, progress: Progress | None) -> None:
        self.model, self.input_shape, self.pattern_set = model, tuple(input_shape), pattern_set
        self.prune, self.workload, self.cfg = prune, workload, cfg
        self.checkpoint, self.progress = checkpoint, progress
        self.history: list[EpochRecord] = []
        self.residuals: tuple[float, ...] = ()
        self.teacher: _Teacher | None = None
        self.total = (cfg.admm_epochs if cfg.method == "admm" else 0) + cfg.retrain_epochs

    def _epoch(self, phase: str, epoch: int, opt: torch.optim.Optimizer,
               meter: _LossMeter) -> EpochRecord:
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
            _restore_admm(admm, saved["admm"])
            opt.load_state_dict(saved["optimizer"])
        opt.register_step_post_hook(lambda *_: admm.step(self.model))
        for epoch in range(start, cfg.admm_epochs):
            rec = self._epoch("admm", epoch, opt, _LossMeter(
                lambda: admm.penalty(self.model), self.teacher, self.cfg.distill))
            self.checkpoint.save({"phase": "admm", "epoch": epoch + 1, "model":
                                  self.model.state_dict(), "optimizer": opt.state_dict(),
                                  "admm": _admm_state(admm), "plan": None,
                                  "history": [r.to_dict() for r in self.history]})
            self._report(rec)
        self.residuals = tuple(admm.history)

    def retrain(self, plan: PruningPlan, start: int, saved: dict[str, Any] | None) -> MaskHandle:
        cfg = self.cfg
        masks = attach_masks(self.model, plan.masks())
        opt = _sgd(self.model, cfg)
        sched = _Cosine(opt, cfg.lr, cfg.retrain_epochs, self.workload.steps_per_epoch)
        if saved is not None and saved.get("optimizer") is not None:
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
        opt.register_step_post_hook(lambda *_: masks.reapply())
        opt.register_step_post_hook(sched)
        for epoch in range(start, cfg.retrain_epochs):
            rec = self._epoch("retrain", epoch, opt,
                              _LossMeter(None, self.teacher, self.cfg.distill))
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
    store = _Checkpoint(None if checkpoint is None else Path(checkpoint), key)
    run = _Retraining(model, input_shape, pattern_set, prune, workload, config, store, progress)
    if config.distill and config.method != "none":
        run.teacher = _Teacher(model, model, config.temperature)  # the dense model, as given
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


def plan_state_hash(plan: PruningPlan) -> str:
    """A content hash of a plan's masks (part of a checkpoint's key)."""
    import hashlib

    h = hashlib.sha256()
    for p in plan.layers:
        h.update(p.spec.name.encode())
        h.update(p.mask.tobytes())
    return h.hexdigest()[:16]


__all__ = ["METHODS", "EpochRecord", "RetrainConfig", "RetrainResult", "plan_from_state",
           "plan_state", "retrain"]
