"""What may be chosen: patterns, pattern sets, pruning, and the joint search space."""

from __future__ import annotations

from search_spaces.layers import LayerSpec, PrunedLayer
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
    "parse_connectivity",
    "project_patterns",
    "prune_layer",
    "prune_weights",
    "random_pruned_layer",
]
