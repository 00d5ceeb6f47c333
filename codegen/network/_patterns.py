"""Tuned pattern layers in a network: the caller's contract, checked before any code is made.

A pattern layer comes as the tuner and the export make it:
``PruningPlan.pruned_layers(model, fuse=True)``, so it computes its conv plus the epilogue
:func:`search_spaces.fusion.find_epilogues` finds for the model (BatchNorm folded, ReLU,
2x2 max-pool). :func:`check_pattern_layer` refuses a layer whose shape, epilogue or
weights do not match the model: the network would otherwise compute something other than
the torch model it claims to be.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from torch import nn

from codegen.config import KernelConfig
from codegen.network._lower import NetworkError
from search_spaces.fusion import Epilogue, fold_batchnorm
from search_spaces.layers import PrunedLayer

#: Conv module name -> (pattern layer, its tuned config or None for the codegen default).
PatternLayers = Mapping[str, tuple[PrunedLayer, KernelConfig | None]]

_HINT = "give the layers PruningPlan.pruned_layers(model, fuse=True) makes from this model"


def check_pattern_layer(name: str, layer: PrunedLayer, ep: Epilogue, module: nn.Conv2d,
                        geo: dict[str, int], model: nn.Module) -> None:
    """Refuse ``layer`` unless it is conv ``name`` of ``model`` with epilogue ``ep``.

    Args:
        name: The conv's module name.
        layer: The pattern layer given for it.
        ep: The epilogue the model's dataflow allows (what ``fuse=True`` folded in).
        module: The conv module.
        geo: The conv's shape as traced (``cin``, ``h``, ``w``, ``cout``, ``kh``, ``kw``,
            ``stride``, ``padding``, ``groups``).
        model: The model (for the BatchNorm module).

    Raises:
        NetworkError: Shape, epilogue or weights differ.
    """
    if not isinstance(layer, PrunedLayer):
        raise TypeError(f"pattern layer {name!r} must be a PrunedLayer; got "
                        f"{type(layer).__name__}")
    s = layer.spec
    have = {"cin": s.cin, "h": s.h, "w": s.w, "cout": s.cout, "kh": s.kh, "kw": s.kw,
            "stride": s.stride, "padding": s.padding, "groups": s.groups}
    if have != geo:
        diff = ", ".join(f"{k} {have[k]} != {geo[k]}" for k in geo if have[k] != geo[k])
        raise NetworkError(f"network: pattern layer {name!r} does not have the conv's shape "
                           f"({diff}); {_HINT}")
    if layer.relu != (ep.relu is not None) or layer.maxpool != (ep.maxpool is not None):
        raise NetworkError(
            f"network: pattern layer {name!r} has relu={layer.relu}, maxpool={layer.maxpool} "
            f"but the model's epilogue of the conv is {ep.to_dict()}; {_HINT}")
    w = module.weight.detach().float().numpy().astype(np.float32)
    b = None if module.bias is None else module.bias.detach().float().numpy()
    if ep.batchnorm is not None:
        bn = model.get_submodule(ep.batchnorm)
        assert isinstance(bn, nn.BatchNorm2d)
        w, b = fold_batchnorm(w, b, bn)
    lw = np.asarray(layer.weights, np.float32)
    scale = max(float(np.max(np.abs(w))) if w.size else 0.0, 1e-30)
    err = float(np.max(np.abs(lw - w))) / scale if w.size else 0.0
    lb = np.zeros(s.cout, np.float32) if layer.bias is None else np.asarray(layer.bias)
    mb = np.zeros(s.cout, np.float32) if b is None else np.asarray(b, np.float32)
    berr = float(np.max(np.abs(lb - mb))) / max(float(np.max(np.abs(mb))), 1e-30)
    if err > 1e-5 or berr > 1e-5:
        raise NetworkError(
            f"network: pattern layer {name!r} does not hold the model's (masked"
            f"{', BatchNorm-folded' if ep.batchnorm else ''}) weights: relative difference "
            f"{max(err, berr):.1e}; {_HINT}")


__all__ = ["PatternLayers", "check_pattern_layer"]
