"""Conv epilogues: the BatchNorm, ReLU and 2x2 max-pool right after a conv, fused into it.

Inference engines (and PatDNN's compiler) do not run BatchNorm and ReLU as
layers of their own after a conv: in eval mode BatchNorm is an affine map per
output channel, so it folds exactly into the conv's weights and bias::

    scale = gamma / sqrt(running_var + eps)
    w'    = w * scale            (per output channel; pruned zeros stay zero)
    b'    = beta + (b - running_mean) * scale

and the ReLU becomes a ``max(0, .)`` when the kernel stores its output. A
2x2/stride-2 max-pool that follows (``nn.MaxPool2d(2)``: no padding, no
dilation, floor mode) becomes a final pass of the kernel over its
full-resolution output. The mask and the patterns do not change.

:func:`find_epilogues` finds what may be fused from the model's dataflow
(``torch.fx``), not from module order: a conv's output must go to exactly one
``nn.BatchNorm2d`` and/or ``nn.ReLU`` and/or ``nn.MaxPool2d`` module and nowhere else, and each module
of the chain must be called once in the forward pass (a ReLU module shared by
several call sites, as in ResNet blocks, stays in torch). Models ``torch.fx``
cannot trace (TorchScript files, data-dependent control flow) fuse nothing.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from search_spaces.layers import PrunedLayer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Epilogue:
    """What a generated conv computes beyond the conv itself.

    Attributes:
        conv: The conv's module name.
        batchnorm: Name of the ``nn.BatchNorm2d`` folded into it, or None.
        relu: Name of the ``nn.ReLU`` applied when storing, or None.
        maxpool: Name of the 2x2/stride-2 ``nn.MaxPool2d`` run as the kernel's
            final pass, or None.
    """

    conv: str
    batchnorm: str | None = None
    relu: str | None = None
    maxpool: str | None = None

    @property
    def fused(self) -> tuple[str, ...]:
        """Names of the modules the generated kernel computes besides the conv."""
        return tuple(n for n in (self.batchnorm, self.relu, self.maxpool) if n is not None)

    @property
    def last(self) -> str:
        """The module whose output is the generated kernel's output."""
        return self.maxpool or self.relu or self.batchnorm or self.conv

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"batchnorm": name or None, "relu": ..., "maxpool": ...}``."""
        return {"batchnorm": self.batchnorm, "relu": self.relu, "maxpool": self.maxpool}


def _foldable(bn: nn.Module) -> bool:
    return (
        isinstance(bn, nn.BatchNorm2d)
        and bn.track_running_stats
        and bn.running_mean is not None
        and bn.running_var is not None
    )


def _size2(v: Any) -> tuple[Any, Any]:
    return tuple(v) if isinstance(v, tuple | list) else (v, v)  # type: ignore[return-value]


def poolable(pool: nn.Module) -> bool:
    """Whether ``pool`` is the max-pool generated kernels fuse: 2x2, stride 2, floor mode.

    No padding, no dilation, no indices returned (``nn.MaxPool2d(2)``).
    """
    return (
        isinstance(pool, nn.MaxPool2d)
        and _size2(pool.kernel_size) == (2, 2)
        and _size2(pool.stride if pool.stride is not None else pool.kernel_size) == (2, 2)
        and _size2(pool.padding) == (0, 0)
        and _size2(pool.dilation) == (1, 1)
        and not pool.ceil_mode
        and not pool.return_indices
    )


def find_epilogues(model: nn.Module) -> dict[str, Epilogue]:
    """Per conv module name, the BatchNorm / ReLU / max-pool its generated kernel may fuse.

    Every conv called once in the forward pass gets an entry (an empty
    :class:`Epilogue` when nothing follows it that can be fused). An
    untraceable model gives ``{}``: nothing is fused.
    """
    if isinstance(model, torch.jit.ScriptModule):
        return {}
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:  # noqa: BLE001 - any user model; fusing is an optimisation
        log.info("model not traceable by torch.fx (%s): no BatchNorm/ReLU fused", exc)
        return {}
    modules = dict(model.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")

    def sole_user(node: torch.fx.Node, kind: type[nn.Module]) -> torch.fx.Node | None:
        users = list(node.users)
        if len(users) != 1:
            return None
        user = users[0]
        if user.op != "call_module" or calls[user.target] != 1:
            return None
        if not isinstance(modules.get(str(user.target)), kind) or user.args[:1] != (node,):
            return None
        if len(user.args) + len(user.kwargs) != 1:
            return None
        return user

    out: dict[str, Epilogue] = {}
    for node in graph.nodes:
        name = str(node.target)
        if node.op != "call_module" or not isinstance(modules.get(name), nn.Conv2d):
            continue
        if calls[node.target] != 1:
            continue
        bn = sole_user(node, nn.BatchNorm2d)
        if bn is not None and not _foldable(modules[str(bn.target)]):
            bn = None
        relu = sole_user(bn if bn is not None else node, nn.ReLU)
        pool = sole_user(relu or bn or node, nn.MaxPool2d)
        if pool is not None and not poolable(modules[str(pool.target)]):
            pool = None
        out[name] = Epilogue(
            conv=name,
            batchnorm=None if bn is None else str(bn.target),
            relu=None if relu is None else str(relu.target),
            maxpool=None if pool is None else str(pool.target),
        )
    return out


def fold_batchnorm(
    weights: np.ndarray, bias: np.ndarray | None, bn: nn.BatchNorm2d
) -> tuple[np.ndarray, np.ndarray]:
    """Conv ``weights`` (cout, ...) and ``bias`` with eval-mode ``bn`` folded in (float32).

    Computed in float64, rounded once; a zero weight stays an exact zero.
    """
    assert bn.running_mean is not None and bn.running_var is not None
    mean = bn.running_mean.detach().cpu().double().numpy()
    var = bn.running_var.detach().cpu().double().numpy()
    gamma = np.ones_like(mean) if bn.weight is None else bn.weight.detach().cpu().double().numpy()
    beta = np.zeros_like(mean) if bn.bias is None else bn.bias.detach().cpu().double().numpy()
    scale = gamma / np.sqrt(var + bn.eps)
    w = np.asarray(weights, dtype=np.float64) * scale.reshape(-1, *([1] * (weights.ndim - 1)))
    w[w == 0] = 0.0  # -0.0 from a negative scale: the same zero, one byte pattern for the hash
    b = np.zeros_like(mean) if bias is None else np.asarray(bias, dtype=np.float64)
    return w.astype(np.float32), (beta + (b - mean) * scale).astype(np.float32)


def fuse(layer: PrunedLayer, epilogue: Epilogue, model: nn.Module) -> PrunedLayer:
    """``layer`` with ``epilogue``'s BatchNorm (a module of ``model``) folded in, its ReLU
    and max-pool set."""
    w, b = np.asarray(layer.weights), layer.bias
    if epilogue.batchnorm is not None:
        bn = model.get_submodule(epilogue.batchnorm)
        assert isinstance(bn, nn.BatchNorm2d)
        w, b = fold_batchnorm(w, b, bn)
    return replace(layer, weights=w, bias=b, relu=epilogue.relu is not None,
                   maxpool=epilogue.maxpool is not None)


__all__ = ["Epilogue", "find_epilogues", "fold_batchnorm", "fuse", "poolable"]
