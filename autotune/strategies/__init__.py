"""Kernel search strategies by name, imported lazily.

``make_strategy("filtered", space=..., cost_model=..., context=...)``. Known:
``random``, ``tpe``, ``filtered`` (TPE + XGBoost cost-model filter) and
``hillclimb`` (random start, then neighbours of the best; the kernel benchmark's).
"""

from __future__ import annotations

import importlib
from typing import Any

from autotune.strategies._base import SearchSpace, SearchStrategy, TaskContext

_STRATEGIES = {
    "random": "autotune.strategies.random:RandomSearch",
    "tpe": "autotune.strategies.tpe:TPESearch",
    "filtered": "autotune.strategies.filtered:FilteredSearch",
    "hillclimb": "autotune.strategies.hillclimb:HillClimbSearch",
}


def strategy_names() -> list[str]:
    """Names of the known strategies."""
    return sorted(_STRATEGIES)


def make_strategy(name: str, **kwargs: Any) -> SearchStrategy:
    """A new strategy of the named kind.

    Raises:
        ValueError: Unknown name (the message lists the known ones).
    """
    if name not in _STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(strategy_names())}; got {name!r}")
    module, cls = _STRATEGIES[name].split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)  # type: ignore[no-any-return]


__all__ = ["SearchSpace", "SearchStrategy", "TaskContext", "make_strategy", "strategy_names"]
