"""Model-level pattern and connectivity pruning: which weights of which conv survive.

:func:`plan_pruning` looks at a model's current weights and decides, per conv
layer, a kernel pattern and an alive map (a :class:`LayerPlan`); the
:class:`PruningPlan` it returns turns into weight masks for torch
(:mod:`search_spaces.masking`), :class:`PrunedLayer` records for codegen, and a
per-layer report. What happens to each kind of layer:

* regular 3x3 convs: pattern projection, then connectivity pruning at the layer's rate;
* the first conv (reading the image): patterns, connectivity only with
  ``PruneConfig.input_layer_connectivity`` (PatDNN leaves the first layer whole);
* depthwise 3x3 (one kernel per channel): patterns, connectivity only with
  ``PruneConfig.depthwise_connectivity``;
* 1x1 and other non-3x3 convs: kept dense unless ``PruneConfig.other_connectivity``
  asks for whole-kernel pruning at that rate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from torch import nn

from search_spaces.fusion import Epilogue, find_epilogues
from search_spaces.fusion import fuse as fuse_layer
from search_spaces.layers import LayerSpec, PrunedLayer
from search_spaces.models import ConvInfo, conv_layers
from search_spaces.patterns import PatternSet
from search_spaces.projection import (
    connectivity_mask,
    keep_strongest,
    parse_connectivity,
    project_patterns,
)
from search_spaces.selection import NoPatternLayersError

Rate = float | str

#: Layer kinds in plans and reports.
PATTERN, DEPTHWISE, CONNECTIVITY, DENSE = "pattern", "depthwise", "connectivity", "dense"


@dataclass(frozen=True, kw_only=True)
class PruneConfig:
    """Per-layer pruning rates and which layer kinds get which pruning.

    Attributes:
        connectivity: Rate for regular 3x3 convs: a fraction removed in [0, 1)
            (``0.72``) or PatDNN's ratio form (``"3.6x"``: keep 1/3.6 of the kernels).
        layer_rates: Per-layer overrides by layer name, in either form.
        input_layer_connectivity: Also connectivity-prune the model's first conv
            (the one reading the image, often cin=3); off by default, as PatDNN keeps it whole.
        depthwise_connectivity: Also connectivity-prune depthwise 3x3 layers.
        other_connectivity: Rate of whole-kernel pruning for 1x1 and non-3x3
            convs; ``None`` (default) keeps them dense.
    """

    connectivity: Rate = "3.6x"
    layer_rates: Mapping[str, Rate] = field(default_factory=dict)
    input_layer_connectivity: bool = False
    depthwise_connectivity: bool = False
    other_connectivity: Rate | None = None

    def __post_init__(self) -> None:
        parse_connectivity(self.connectivity)
        for name, rate in self.layer_rates.items():
            try:
                parse_connectivity(rate)
            except ValueError as exc:
                raise ValueError(f"layer {name!r}: {exc}") from None
        object.__setattr__(self, "layer_rates", MappingProxyType(dict(self.layer_rates)))
        if self.other_connectivity is not None:
            parse_connectivity(self.other_connectivity)

    def rate_for(self, info: ConvInfo, *, first: bool = False) -> tuple[str, float]:
        """``(kind, removed fraction)`` for one layer; ``first`` marks the model's first conv."""
        s = info.spec
        if info.is_3x3 and s.is_depthwise:
            default = self.connectivity if self.depthwise_connectivity else 0.0
            kind = DEPTHWISE
        elif info.is_3x3:
            default = 0.0 if first and not self.input_layer_connectivity else self.connectivity
            kind = PATTERN
        else:
            default = 0.0 if self.other_connectivity is None else self.other_connectivity
            kind = CONNECTIVITY if self.other_connectivity is not None else DENSE
        rate = parse_connectivity(self.layer_rates.get(info.name, default))
        if kind == DENSE and rate > 0:
            kind = CONNECTIVITY
        return kind, rate

    def to_dict(self) -> dict[str, Any]:
        """JSON form (rates as given)."""
        return {
            "connectivity": self.connectivity,
            "layer_rates": dict(self.layer_rates),
            "input_layer_connectivity": self.input_layer_connectivity,
            "depthwise_connectivity": self.depthwise_connectivity,
            "other_connectivity": self.other_connectivity,
        }


@dataclass(frozen=True, eq=False)
class LayerPlan:
    """What survives in one conv layer.

    Attributes:
        spec: The layer's shape.
        kind: ``pattern``, ``depthwise``, ``connectivity`` or ``dense``.
        removed: Fraction of kernels connectivity pruning removes.
        pattern_ids: int16 (cout, cin_per_group) for 3x3 layers, else None.
        alive: bool (cout, cin_per_group).
        mask: float32 weight mask (cout, cin_per_group, kh, kw).
    """

    spec: LayerSpec
    kind: str
    removed: float
    pattern_ids: np.ndarray | None
    alive: np.ndarray
    mask: np.ndarray

    @property
    def weights_kept(self) -> int:
        """Non-zero positions of the mask."""
        return int(np.count_nonzero(self.mask))

    @property
    def pruned_macs(self) -> int:
        """Multiply-accumulates left (kept weights x output pixels)."""
        return self.weights_kept * self.spec.out_h * self.spec.out_w


def _plan_layer(
    info: ConvInfo, pattern_set: PatternSet, config: PruneConfig, *, first: bool
) -> LayerPlan:
    kind, removed = config.rate_for(info, first=first)
    w = info.module.weight.detach().cpu().numpy().astype(np.float32)
    if kind in (PATTERN, DEPTHWISE):
        ids = project_patterns(w, pattern_set)
        alive = connectivity_mask(w, ids, pattern_set, removed)
        mask = pattern_set.masks()[ids.astype(np.int64)] * alive[..., None, None]
        return LayerPlan(info.spec, kind, removed, ids, alive, mask.astype(np.float32))
    if kind == CONNECTIVITY:
        alive = alive_by_norm(w, removed)
    else:
        alive = np.ones(w.shape[:2], dtype=bool)
    mask = np.broadcast_to(alive[..., None, None], w.shape).astype(np.float32)
    return LayerPlan(info.spec, kind, removed, None, alive, mask)


def alive_by_norm(w: np.ndarray, removed: float) -> np.ndarray:
    """Whole kernels by their own squared norm, largest first, ties by position."""
    return keep_strongest((w.astype(np.float64) ** 2).sum(axis=(2, 3)), removed)


@dataclass(frozen=True, eq=False)
class PruningPlan:
    """The pruning decision for every conv layer of one model.

    Attributes:
        pattern_set: The patterns 3x3 kernels use.
        config: The rates it was planned with.
        layers: One :class:`LayerPlan` per conv layer, in forward order.
    """

    pattern_set: PatternSet
    config: PruneConfig
    layers: tuple[LayerPlan, ...]

    def masks(self) -> dict[str, np.ndarray]:
        """Weight mask per layer name, for layers that lose any weight."""
        return {p.spec.name: p.mask for p in self.layers if p.kind != DENSE}

    def layer(self, name: str) -> LayerPlan:
        """The plan of the layer called ``name``."""
        for p in self.layers:
            if p.spec.name == name:
                return p
        raise KeyError(f"no conv layer named {name!r} in this plan")

    def pruned_layers(self, model: nn.Module, *, fuse: bool = False) -> list[PrunedLayer]:
        """:class:`PrunedLayer` records of the 3x3 layers with ``model``'s current (masked) weights.

        Args:
            model: The model whose weights (and BatchNorm statistics) to read.
            fuse: Fold the BatchNorm, ReLU and 2x2 max-pool that follow each conv into
                its layer, as the generated kernels compute them for inference
                (:mod:`search_spaces.fusion`); the mask and patterns are unchanged.
        """
        epilogues = find_epilogues(model) if fuse else {}
        modules = dict(model.named_modules())
        out = []
        for p in self.layers:
            if p.pattern_ids is None:
                continue
            m = modules[p.spec.name]
            w = m.weight.detach().cpu().numpy().astype(np.float32) * p.mask
            b = None if m.bias is None else m.bias.detach().cpu().numpy()
            layer = PrunedLayer(
                spec=p.spec,
                pattern_set=self.pattern_set,
                pattern_ids=p.pattern_ids,
                alive=p.alive,
                weights=w,
                bias=b,
            )
            ep = epilogues.get(p.spec.name, Epilogue(p.spec.name))
            out.append(fuse_layer(layer, ep, model) if ep.fused else layer)
        return out


def plan_pruning(
    model: nn.Module,
    input_shape: Sequence[int],
    pattern_set: PatternSet,
    config: PruneConfig | None = None,
) -> PruningPlan:
    """Decide patterns and alive kernels for every conv of ``model`` from its current weights.

    Args:
        model: The trained (or random) network; not modified.
        input_shape: ``(N, C, H, W)`` used to find the layers' input sizes.
        pattern_set: 3x3 patterns kernels may use.
        config: Rates; default :class:`PruneConfig` (3.6x on regular 3x3 convs).

    Raises:
        NoPatternLayersError: ``model`` has no 3x3 conv.
        ValueError: A per-layer rate names a layer the model lacks.
    """
    config = config or PruneConfig()
    if pattern_set.k != 3:
        raise ValueError(
            f"pattern sets for model pruning must be 3x3; got {pattern_set.k}x{pattern_set.k}"
        )
    infos = conv_layers(model, input_shape)
    if not any(i.is_3x3 for i in infos):
        raise NoPatternLayersError(
            "the model has no 3x3 conv layer, so pattern pruning has nothing to prune; "
            "give a model with 3x3 convolutions"
        )
    unknown = set(config.layer_rates) - {i.name for i in infos}
    if unknown:
        raise ValueError(
            f"per-layer rates name unknown layers {sorted(unknown)}; conv layers are "
            f"{', '.join(i.name for i in infos)}"
        )
    layers = tuple(
        _plan_layer(info, pattern_set, config, first=i == 0) for i, info in enumerate(infos)
    )
    return PruningPlan(pattern_set=pattern_set, config=config, layers=layers)
