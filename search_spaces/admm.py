"""ADMM-regularised training toward the pattern and connectivity constraints (PatDNN).

Following Zhang et al. (ECCV 2018) as extended by PatDNN (Niu et al., ASPLOS 2020,
section 4.2): for every pruned layer's weights W, two auxiliary variables Z
(pattern constraint set S) and Y (connectivity constraint set S') and their
scaled duals U and V. Training minimises

    loss(W) + sum over layers of rho/2 * (||W - Z + U||^2 + ||W - Y + V||^2)

by SGD, and every ``update_every`` steps performs

    Z = proj_S(W + U),  U = U + W - Z
    Y = proj_S'(W + V), V = V + W - Y
    rho = min(rho * rho_growth, rho_max)

Both projections are exact (:func:`search_spaces.projection.project_patterns`,
whole-kernel pruning by norm). Afterwards :func:`admm_prune` hard-prunes (plans
masks from the ADMM-trained weights) and retrains with the masks attached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from search_spaces.data import Split
from search_spaces.masking import MaskHandle, attach_masks
from search_spaces.models import conv_layers
from search_spaces.patterns import PatternSet
from search_spaces.projection import project_patterns
from search_spaces.pruning import DENSE, PruneConfig, PruningPlan, alive_by_norm, plan_pruning
from search_spaces.training import TrainConfig, train


@dataclass(frozen=True, kw_only=True)
class ADMMConfig:
    """ADMM phase and masked retraining.

    Attributes:
        admm: Training of the ADMM phase (epochs, learning rate, seed).
        retrain: Masked retraining after hard pruning.
        rho: Initial penalty weight.
        rho_growth: Factor applied to rho at every Z/Y update (PatDNN raises rho stepwise).
        rho_max: Upper bound on rho.
        update_every: Optimizer steps between Z/Y and dual updates.
    """

    admm: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=3, lr=0.01, schedule="constant")
    )
    retrain: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, lr=0.01))
    rho: float = 0.01
    rho_growth: float = 1.5
    rho_max: float = 1.0
    update_every: int = 100

    def __post_init__(self) -> None:
        if not self.rho > 0 or not self.rho_max >= self.rho:
            raise ValueError(f"need 0 < rho <= rho_max; got rho={self.rho}, rho_max={self.rho_max}")
        if self.rho_growth < 1:
            raise ValueError(f"rho_growth must be >= 1; got {self.rho_growth}")
        if self.update_every < 1:
            raise ValueError(f"update_every must be >= 1; got {self.update_every}")


class _Layer:
    """ADMM variables of one layer (torch tensors shaped like its weight)."""

    def __init__(
        self, name: str, weight: torch.Tensor, patterns: PatternSet | None, removed: float
    ) -> None:
        self.name, self.weight, self.patterns, self.removed = name, weight, patterns, removed
        w = weight.detach()
        self.z = self.proj_pattern(w)
        self.y = self.proj_connectivity(w)
        self.u = torch.zeros_like(w)
        self.v = torch.zeros_like(w)

    def proj_pattern(self, w: torch.Tensor) -> torch.Tensor:
        """Nearest point of the pattern set S (identity for non-3x3 layers)."""
        if self.patterns is None:
            return w.clone()
        ids = project_patterns(w.cpu().numpy(), self.patterns)
        mask = self.patterns.masks()[ids.astype(np.int64)]
        return w * torch.from_numpy(mask).to(w)

    def proj_connectivity(self, w: torch.Tensor) -> torch.Tensor:
        """Nearest point of S': all but the largest-norm kernels zeroed."""
        if self.removed <= 0:
            return w.clone()
        alive = alive_by_norm(w.cpu().numpy(), self.removed)
        return w * torch.from_numpy(alive[..., None, None].astype(np.float32)).to(w)

    def joint_residual(self) -> tuple[float, float]:
        """(||W - proj_S'(proj_S(W))||^2, ||W||^2): how far W is from both constraints."""
        w = self.weight.detach()
        p = self.proj_pattern(w)
        if self.removed > 0:
            # p's kernel norms are the pattern-kept norms, so this is connectivity_mask's rule.
            alive = alive_by_norm(p.cpu().numpy(), self.removed)
            p = p * torch.from_numpy(alive[..., None, None].astype(np.float32)).to(w)
        return float(((w - p) ** 2).sum()), float((w**2).sum())


class ADMMPruner:
    """The ADMM state of one model: Z, Y, U, V per pruned layer and the current rho.

    Use :meth:`penalty` as a training loss hook and :meth:`step` as a step hook;
    :attr:`history` records the relative constraint residual after every update.
    """

    def __init__(
        self,
        model: nn.Module,
        input_shape: Sequence[int],
        pattern_set: PatternSet,
        prune: PruneConfig,
        config: ADMMConfig,
    ) -> None:
        self.config = config
        self.rho = config.rho
        self.steps = 0
        self.layers: list[_Layer] = []
        for i, info in enumerate(conv_layers(model, input_shape)):
            kind, removed = prune.rate_for(info, first=i == 0)
            if kind == DENSE:
                continue
            self.layers.append(
                _Layer(info.name, info.module.weight, pattern_set if info.is_3x3 else None, removed)
            )
        self.history: list[float] = [self.residual()]

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """rho/2 * sum(||W - Z + U||^2 + ||W - Y + V||^2): the augmented-Lagrangian term."""
        total = torch.zeros(())
        for layer in self.layers:
            w = layer.weight
            total = (
                total + ((w - layer.z + layer.u) ** 2).sum() + ((w - layer.y + layer.v) ** 2).sum()
            )
        return 0.5 * self.rho * total

    @torch.no_grad()
    def update(self) -> None:
        """Z/Y projections and dual updates, then raise rho."""
        for layer in self.layers:
            w = layer.weight.detach()
            layer.z = layer.proj_pattern(w + layer.u)
            layer.u = layer.u + w - layer.z
            layer.y = layer.proj_connectivity(w + layer.v)
            layer.v = layer.v + w - layer.y
        self.rho = min(self.rho * self.config.rho_growth, self.config.rho_max)
        self.history.append(self.residual())

    def step(self, model: nn.Module) -> None:
        """Step hook: count optimizer steps and update every ``update_every``."""
        self.steps += 1
        if self.steps % self.config.update_every == 0:
            self.update()

    def residual(self) -> float:
        """Relative squared distance of the weights to the joint constraint set."""
        num = den = 0.0
        for layer in self.layers:
            a, b = layer.joint_residual()
            num, den = num + a, den + b
        return num / max(den, 1e-30)


@dataclass(frozen=True)
class ADMMResult:
    """Outcome of :func:`admm_prune`.

    Attributes:
        plan: The hard-pruning plan (from the ADMM-trained weights).
        masks: The attached masks (the model stays masked).
        residuals: Relative constraint residual after each ADMM update (first: before).
    """

    plan: PruningPlan
    masks: MaskHandle
    residuals: tuple[float, ...]


def admm_prune(
    model: nn.Module,
    input_shape: Sequence[int],
    pattern_set: PatternSet,
    train_data: Split,
    *,
    prune: PruneConfig | None = None,
    config: ADMMConfig | None = None,
) -> ADMMResult:
    """ADMM training, hard pruning, then masked retraining; ``model`` is changed in place."""
    prune = prune or PruneConfig()
    config = config or ADMMConfig()
    admm = ADMMPruner(model, input_shape, pattern_set, prune, config)
    train(model, train_data, config.admm, loss_hook=admm.penalty, step_hook=admm.step)
    plan = plan_pruning(model, input_shape, pattern_set, prune)
    masks = attach_masks(model, plan.masks())
    train(model, train_data, config.retrain, step_hook=masks)
    return ADMMResult(plan=plan, masks=masks, residuals=tuple(admm.history))
