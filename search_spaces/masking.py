"""Weight masks in a live torch model.

:func:`attach_masks` zeroes the pruned weights in place and keeps them zero:
a gradient hook masks each weight's gradient, and (for ordinary modules) a
forward pre-hook re-applies the mask before every forward, so the model's
output is exactly ``conv2d`` with the masked weights even if an optimizer's
weight decay or momentum touched a pruned position. The parameters keep their
names, so ``model.state_dict()`` is already the pruned state_dict with the
usual keys. TorchScript modules get the in-place masking and gradient hooks;
call :meth:`MaskHandle.reapply` after each optimizer step there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

MASK_BUFFER = "weight_mask"


def _mask_pre_hook(module: nn.Module, args: tuple[Any, ...]) -> None:
    """Zero the pruned weights before the forward (``.data``: autograd need not see it)."""
    weight: torch.Tensor = module.weight  # type: ignore[assignment]
    weight.data.mul_(getattr(module, MASK_BUFFER))


class MaskHandle:
    """The masks attached to one model; :meth:`remove` detaches the hooks (weights stay masked)."""

    def __init__(self, model: nn.Module, masks: Mapping[str, np.ndarray | torch.Tensor]) -> None:
        modules = dict(model.named_modules())
        missing = sorted(set(masks) - set(modules))
        if missing:
            raise ValueError(f"masks name layers the model lacks: {missing}")
        self._entries: list[tuple[str, torch.Tensor, torch.Tensor]] = []
        self._handles: list[Any] = []
        self._modules: list[nn.Module] = []
        for name, mask in masks.items():
            module = modules[name]
            weight = module.weight
            m = torch.as_tensor(np.asarray(mask), dtype=weight.dtype, device=weight.device)
            if m.shape != weight.shape:
                raise ValueError(
                    f"mask of {name!r} has shape {tuple(m.shape)}, weight {tuple(weight.shape)}"
                )
            self._entries.append((name, weight, m))
            self._handles.append(weight.register_hook(lambda g, m=m: g * m))
            if not isinstance(module, torch.jit.ScriptModule):
                # A non-persistent buffer and a plain-function hook: a deepcopy of the model
                # masks its own weights, and state_dict keeps its usual keys.
                module.register_buffer(MASK_BUFFER, m, persistent=False)
                self._handles.append(module.register_forward_pre_hook(_mask_pre_hook))
                self._modules.append(module)
        self.reapply()

    @property
    def names(self) -> list[str]:
        """Masked layer names, in the order given."""
        return [n for n, _, _ in self._entries]

    def masks(self) -> dict[str, torch.Tensor]:
        """The masks as tensors, by layer name."""
        return {n: m for n, _, m in self._entries}

    @torch.no_grad()
    def reapply(self) -> None:
        """Zero every pruned weight again (use as a step hook after optimizer steps)."""
        for _, w, m in self._entries:
            w.mul_(m)

    def __call__(self, model: nn.Module) -> None:
        """Step-hook form of :meth:`reapply`."""
        self.reapply()

    def remove(self) -> None:
        """Detach the hooks; the weights keep their current (masked) values."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for module in self._modules:
            delattr(module, MASK_BUFFER)
        self._modules.clear()


def attach_masks(model: nn.Module, masks: Mapping[str, np.ndarray | torch.Tensor]) -> MaskHandle:
    """Mask ``model``'s conv weights in place and keep them masked; see the module docstring.

    Args:
        model: Module whose named submodules include every key of ``masks``.
        masks: Per layer name, a 0/1 array of the weight's shape.

    Raises:
        ValueError: A name the model lacks or a shape that does not match.
    """
    return MaskHandle(model, masks)


def pruned_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``model``'s state_dict (its masked weights, usual keys)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
