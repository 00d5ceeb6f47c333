"""Features of a (layer, pruning, KernelConfig) sample for the cost model.

Three families, as TVM's and Ansor's feature sets suggest: the layer's shape,
the pruning statistics, the config's own fields, and derived quantities that
relate the two (MACs, tile counts, lane waste, work and filter groups per
thread, bytes of input and weights moved). Categorical config fields are
one-hot encoded over a vocabulary fixed at fit time and stored with the model,
so a saved model featurises exactly as it did when trained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from autotune.cost_model._base import Sample
from autotune.cost_model.prior import estimated_cycles

_SPEC_KEYS = ("cin", "cout", "h", "w", "stride", "padding", "groups")


def _out(spec: dict[str, Any], axis: str) -> int:
    k = spec.get("kh" if axis == "h" else "kw", 3)
    return (spec[axis] + 2 * spec.get("padding", 1) - k) // spec.get("stride", 1) + 1


def _entropy(hist: Sequence[int]) -> float:
    total = float(sum(hist))
    if total <= 0:
        return 0.0
    p = np.asarray(hist, dtype=np.float64) / total
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def derived(spec: dict[str, Any], stats: dict[str, Any], cfg: dict[str, Any]) -> dict[str, float]:
    """Quantities that relate the config to the layer (all finite floats)."""
    oh, ow = _out(spec, "h"), _out(spec, "w")
    cout = spec["cout"]
    cin_g = spec["cin"] // spec.get("groups", 1)
    nnz = float(stats.get("nonzeros", cout * cin_g * 9))
    alive = float(stats.get("kernels_alive", cout * cin_g))
    vw = float(cfg.get("vector_width", 8))
    rows = float(cfg.get("tile_rows", 1))
    vecs = float(cfg.get("tile_vecs", 1))
    threads = float(max(1, cfg.get("threads", 1)))
    ocb = float(max(1, cfg.get("oc_block", 1)))
    icb = float(cfg.get("ic_block", 0) or cin_g)
    col_tiles = math.ceil(ow / (vw * vecs))
    row_tiles = math.ceil(oh / rows)
    lanes = col_tiles * vw * vecs * row_tiles * rows
    groups = math.ceil(cout / ocb)
    macs = nnz * oh * ow
    in_bytes = 4.0 * spec["cin"] * (spec["h"] + 2) * (spec["w"] + 2)
    return {
        "out_h": oh,
        "out_w": ow,
        "log_dense_macs": math.log(cout * cin_g * 9 * oh * ow),
        "log_pruned_macs": math.log(max(1.0, macs)),
        "alive_fraction": alive / max(1.0, cout * cin_g),
        "kernels_per_filter": alive / cout,
        "pattern_entropy": _entropy(stats.get("pattern_histogram", [])),
        "accumulators": rows * vecs,
        "spatial_tiles": float(col_tiles * row_tiles),
        "lane_waste": 1.0 - (oh * ow) / lanes,
        "filter_groups": float(groups),
        "groups_per_thread": groups / threads,
        "log_macs_per_thread": math.log(max(1.0, macs / threads)),
        "ic_passes": math.ceil(cin_g / icb),
        "log_input_bytes_moved": math.log(in_bytes * groups),
        "log_weight_bytes": math.log(max(1.0, nnz * 4 + alive * 2)),
        "tile_input_reuse": (rows + 2) * vecs * vw / max(1.0, rows * vecs * vw),
        "ic_block_kib": icb * (rows + 2) * (ow + 2) * 4 / 1024.0,
        # The analytic prior's estimate per MAC: its cache and overhead terms are
        # what the other features cannot express, and it transfers across layers.
        "prior_log_cycles_per_mac": math.log(estimated_cycles(spec, stats, cfg) / max(1.0, macs)),
    }


DERIVED = tuple(derived({"cin": 8, "cout": 8, "h": 8, "w": 8}, {}, {}))
# Derived columns of models stored before the prior became a feature.
_LEGACY_DERIVED = DERIVED[:-1]


class Featurizer:
    """Turns samples into a float32 matrix with stable, named columns.

    Args:
        vocab: Categorical field -> its known values (from :meth:`fit`). Values
            unseen at fit time get all-zero one-hot columns.
        numeric: Numeric config fields (from :meth:`fit`).
        derived_keys: Which :func:`derived` quantities are columns (default: all;
            a stored model keeps the ones it was trained with).
    """

    def __init__(
        self,
        vocab: dict[str, list[Any]] | None = None,
        numeric: list[str] | None = None,
        derived_keys: Sequence[str] = DERIVED,
    ):
        self.vocab: dict[str, list[Any]] = vocab or {}
        self.numeric: list[str] = numeric or []
        self.derived_keys: list[str] = list(derived_keys)

    def fit(self, samples: Sequence[Sample]) -> Featurizer:
        """Learn which config fields are numeric and the categorical vocabularies."""
        numeric: set[str] = set()
        vocab: dict[str, set[Any]] = {}
        for s in samples:
            for k, v in s.config.items():
                if isinstance(v, int | float):  # bool is an int
                    numeric.add(k)
                else:
                    vocab.setdefault(k, set()).add(str(v))
        self.numeric = sorted(numeric)
        self.vocab = {k: sorted(v) for k, v in sorted(vocab.items())}
        return self

    def names(self) -> list[str]:
        """Column names, in matrix order."""
        cols = [f"layer.{k}" for k in _SPEC_KEYS] + ["pruning.patterns"]
        cols += [f"config.{k}" for k in self.numeric]
        cols += [f"config.{k}={v}" for k, vals in self.vocab.items() for v in vals]
        return cols + [f"derived.{k}" for k in self.derived_keys]

    def transform(self, samples: Sequence[Sample]) -> np.ndarray:
        """Feature matrix, shape (len(samples), len(names()))."""
        rows = []
        for s in samples:
            row = [float(s.spec.get(k, 0)) for k in _SPEC_KEYS]
            row.append(float(s.stats.get("patterns", 0)))
            row += [float(s.config.get(k, 0)) for k in self.numeric]
            for k, vals in self.vocab.items():
                v = str(s.config.get(k))
                row += [1.0 if v == val else 0.0 for val in vals]
            d = derived(s.spec, s.stats, s.config)
            row += [d[k] for k in self.derived_keys]
            rows.append(row)
        return np.asarray(rows, dtype=np.float32).reshape(len(samples), -1)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (stored inside the model blob)."""
        return {"vocab": self.vocab, "numeric": self.numeric, "derived": self.derived_keys}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Featurizer:
        """Inverse of :meth:`to_dict`."""
        return cls(
            vocab=data["vocab"],
            numeric=data["numeric"],
            derived_keys=data.get("derived", _LEGACY_DERIVED),
        )
