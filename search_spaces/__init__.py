"""What may be chosen: patterns, pattern sets, pruning, and the joint search space.

This top level re-exports the torch-free records and primitives only, so that
``import search_spaces`` stays cheap for codegen. The torch side lives in
submodules: ``models`` (built-in architectures, ``conv_layers``), ``selection``
(PatDNN pattern-set selection), ``pruning`` (per-layer plans), ``masking``
(masks in a live model), ``artifacts`` (files codegen reads), ``admm``,
``estimate``, ``data`` (Fashion-MNIST), ``example``, ``pipeline`` and ``bench``.
"""

from __future__ import annotations

from search_spaces.layers import LayerSpec, PrunedLayer, layer_stats
from search_spaces.patterns import Pattern, PatternSet, all_patterns
from search_spaces.projection import (
    connectivity_mask,
    kernels_to_keep,
    parse_connectivity,
    project_patterns,
    prune_layer,
    prune_weights,
    random_pruned_layer,
)

__all__ = [
    "LayerSpec",
    "Pattern",
    "PatternSet",
    "PrunedLayer",
    "all_patterns",
    "connectivity_mask",
    "kernels_to_keep",
    "layer_stats",
    "parse_connectivity",
    "project_patterns",
    "prune_layer",
    "prune_weights",
    "random_pruned_layer",
]
