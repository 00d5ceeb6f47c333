"""Cost models that rank KernelConfigs before they are built, by name.

``make_cost_model("xgb")`` / ``load_cost_model(blob)``; implementations are
imported lazily so XGBoost is loaded only when used.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

from autotune.cost_model._base import CostModel, Sample

_KINDS = {
    "xgb": "autotune.cost_model.xgb:XGBCostModel",
    "random": "autotune.cost_model.random:RandomCostModel",
}


def _cls(kind: str) -> type[CostModel]:
    if kind not in _KINDS:
        raise ValueError(f"cost model must be one of {', '.join(sorted(_KINDS))}; got {kind!r}")
    module, name = _KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def make_cost_model(kind: str = "xgb", **kwargs: Any) -> CostModel:
    """A new, untrained cost model of the named kind."""
    return _cls(kind)(**kwargs)


def load_cost_model(blob: bytes) -> CostModel:
    """Rebuild a model from :meth:`CostModel.to_bytes` output."""
    return _cls(json.loads(blob)["kind"]).from_bytes(blob)


__all__ = ["CostModel", "Sample", "load_cost_model", "make_cost_model"]
