"""What may be chosen: patterns, pattern sets, pruning, and the joint search space."""

from __future__ import annotations

from search_spaces.layers import LayerSpec, PrunedLayer
from search_spaces.patterns import Pattern, PatternSet, all_patterns

__all__ = ["LayerSpec", "Pattern", "PatternSet", "PrunedLayer", "all_patterns"]
