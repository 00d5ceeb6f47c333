"""Per-layer pruning report: kernels kept, weights kept, MACs dense vs pruned."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pattune_common import Record
from search_spaces.pruning import PruningPlan


@dataclass(frozen=True)
class LayerReport(Record):
    """One conv layer's pruning outcome.

    Attributes:
        name: Layer name.
        kind: ``pattern``, ``depthwise``, ``connectivity`` or ``dense``.
        shape: ``cout x cin/groups x kh x kw @ HxW /stride``.
        kernels_total: Kernels before connectivity pruning.
        kernels_kept: Kernels alive.
        weights_total: Dense weight count.
        weights_kept: Weights left.
        dense_macs: Multiply-accumulates of the dense layer.
        pruned_macs: Multiply-accumulates left.
    """

    name: str
    kind: str
    shape: str
    kernels_total: int
    kernels_kept: int
    weights_total: int
    weights_kept: int
    dense_macs: int
    pruned_macs: int

    schema = "layer_report"

    @property
    def compression(self) -> float:
        """Dense weights / kept weights."""
        return self.weights_total / max(1, self.weights_kept)


@dataclass(frozen=True)
class PruneReport(Record):
    """Every layer's :class:`LayerReport` plus totals.

    Attributes:
        patterns: Size of the pattern set.
        connectivity: The default connectivity rate, as given.
        layers: Per-layer rows, forward order.
    """

    patterns: int
    connectivity: str
    layers: tuple[LayerReport, ...]

    schema = "prune_report"

    def totals(self, *, kinds: tuple[str, ...] | None = None) -> dict[str, int]:
        """Summed counts over layers (of ``kinds`` only, when given)."""
        rows = [r for r in self.layers if kinds is None or r.kind in kinds]
        keys = (
            "kernels_total",
            "kernels_kept",
            "weights_total",
            "weights_kept",
            "dense_macs",
            "pruned_macs",
        )
        return {k: sum(getattr(r, k) for r in rows) for k in keys}

    @property
    def conv_compression(self) -> float:
        """Dense / kept weights over all conv layers."""
        t = self.totals()
        return t["weights_total"] / max(1, t["weights_kept"])

    @property
    def pattern_compression(self) -> float:
        """Dense / kept weights over the pattern-pruned (3x3) layers."""
        t = self.totals(kinds=("pattern", "depthwise"))
        return t["weights_total"] / max(1, t["weights_kept"])

    def to_dict(self) -> dict[str, Any]:
        d = {
            "patterns": self.patterns,
            "connectivity": self.connectivity,
            "layers": [r.to_dict() for r in self.layers],
        }
        d["totals"] = self.totals()
        d["conv_compression"] = round(self.conv_compression, 4)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PruneReport:
        return cls(
            patterns=int(data["patterns"]),
            connectivity=str(data["connectivity"]),
            layers=tuple(LayerReport.from_dict(r) for r in data["layers"]),
        )

    def rich_table(self):  # type: ignore[no-untyped-def]
        """A :class:`rich.table.Table` with one row per layer and a total row."""
        from rich.table import Table

        t = Table(
            title=f"pattern pruning: {self.patterns} patterns, connectivity {self.connectivity}"
        )
        for col in (
            "layer",
            "kind",
            "shape",
            "kernels kept",
            "weights kept",
            "MACs dense",
            "MACs pruned",
            "x",
        ):
            t.add_column(col, justify="left" if col in ("layer", "kind", "shape") else "right")
        for r in self.layers:
            t.add_row(
                r.name, r.kind, r.shape, f"{r.kernels_kept}/{r.kernels_total}",
                f"{r.weights_kept}/{r.weights_total}", _si(r.dense_macs), _si(r.pruned_macs),
                f"{r.compression:.2f}",
            )  # fmt: skip
        s = self.totals()
        t.add_row(
            "total", "", "", f"{s['kernels_kept']}/{s['kernels_total']}",
            f"{s['weights_kept']}/{s['weights_total']}", _si(s["dense_macs"]), _si(s["pruned_macs"]),
            f"{self.conv_compression:.2f}", style="bold",
        )  # fmt: skip
        return t


def _si(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def build_report(plan: PruningPlan) -> PruneReport:
    """The report of a :class:`PruningPlan`."""
    rows = []
    for p in plan.layers:
        s = p.spec
        rows.append(
            LayerReport(
                name=s.name,
                kind=p.kind,
                shape=f"{s.cout}x{s.cin_per_group}x{s.kh}x{s.kw} @ {s.h}x{s.w} /{s.stride}",
                kernels_total=int(p.alive.size),
                kernels_kept=int(p.alive.sum()),
                weights_total=int(p.mask.size),
                weights_kept=p.weights_kept,
                dense_macs=s.dense_macs,
                pruned_macs=p.pruned_macs,
            )
        )
    return PruneReport(
        patterns=len(plan.pattern_set),
        connectivity=str(plan.config.connectivity),
        layers=tuple(rows),
    )
