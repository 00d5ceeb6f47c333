"""The parts of a retraining (:mod:`search_spaces.retrain`) that are not its phases.

The criterion it hands the trainer (cross-entropy, distillation from the dense
teacher, ADMM's penalty), the per-step cosine schedule, and the checkpoint: a plan,
ADMM's state and the schedule as tensors and plain values, so a checkpoint loads
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from search_spaces.admm import ADMMPruner
from search_spaces.models import conv_layers
from search_spaces.patterns import PatternSet
from search_spaces.pruning import LayerPlan, PruneConfig, PruningPlan

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1


class Teacher:
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


class LossMeter:
    """The criterion pattune hands the trainer: cross-entropy, distillation, a penalty.

    ``(1 - a) * CE + a * KD`` (``a`` = the distillation weight, 0 without a teacher)
    plus the penalty (ADMM's); the mean of the plain cross-entropy is tracked.
    """

    def __init__(self, penalty: Callable[[], torch.Tensor] | None = None,
                 teacher: Teacher | None = None, distill: float = 0.0) -> None:
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


class Cosine:
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


class Checkpoint:
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


def admm_state(admm: ADMMPruner) -> dict[str, Any]:
    return {"rho": admm.rho, "steps": admm.steps, "history": list(admm.history),
            "layers": [{"name": x.name, "z": x.z, "y": x.y, "u": x.u, "v": x.v}
                       for x in admm.layers]}


def restore_admm(admm: ADMMPruner, state: dict[str, Any]) -> None:
    admm.rho, admm.steps, admm.history = state["rho"], state["steps"], list(state["history"])
    saved = {d["name"]: d for d in state["layers"]}
    for x in admm.layers:
        d = saved[x.name]
        x.z, x.y, x.u, x.v = d["z"], d["y"], d["u"], d["v"]


def plan_state_hash(plan: PruningPlan) -> str:
    """A content hash of a plan's masks (part of a checkpoint's key)."""
    h = hashlib.sha256()
    for p in plan.layers:
        h.update(p.spec.name.encode())
        h.update(p.mask.tobytes())
    return h.hexdigest()[:16]


__all__ = ["CHECKPOINT_VERSION", "Checkpoint", "Cosine", "LossMeter", "Teacher", "admm_state",
           "plan_from_state", "plan_state", "plan_state_hash", "restore_admm"]
