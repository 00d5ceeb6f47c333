"""Random start, then hill climbing over adjacent field values (Kernel Tuner's greedy style).

The first ``explore`` configs (the task's default and warm starts count) are
sampled at random; after that each batch is drawn from the unseen neighbours of
the ``top`` fastest configs so far, a neighbour being one field moved to the
adjacent value of its choices (sizes ascending), since kernel latency is smooth
in most single fields (tile sizes, blocks, distances). When no neighbour is
left, it falls back to random samples so the budget is still spent.
"""

from __future__ import annotations

from typing import Any

from autotune.strategies._base import SearchSpace, SearchStrategy
from codegen import KernelConfig


def adjacent(space: SearchSpace, cfg: KernelConfig) -> list[KernelConfig]:
    """Valid configs one step from ``cfg``: one field moved to an adjacent value of its choices."""
    out = []
    for name, values in space.choices.items():
        i = values.index(getattr(cfg, name))
        for j in (i - 1, i + 1):
            if 0 <= j < len(values):
                cand = cfg.replace(**{name: values[j]})
                if space.is_valid(cand):
                    out.append(cand)
    return out


class HillClimbSearch(SearchStrategy):
    """Random sampling for ``explore`` configs, then neighbours of the best ``top``.

    Args:
        explore: Configs to sample at random before climbing (>= 1).
        top: How many of the fastest configs so far the climb starts from.
        **kwargs: See :class:`SearchStrategy`.
    """

    name = "hillclimb"

    def __init__(self, *, explore: int = 18, top: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if explore < 1 or top < 1:
            raise ValueError(f"explore and top must be >= 1; got {explore}, {top}")
        self.explore = explore
        self.top = top

    def propose(self, n: int) -> list[KernelConfig]:
        taken = len(self.seen) + len(self.pending)
        if taken < self.explore:
            return self._random(min(n, self.explore - taken))
        ranked = sorted(((c, t) for c, t in self.history if t is not None), key=lambda ct: ct[1])
        pool: dict[str, KernelConfig] = {}
        for c, _ in ranked[: self.top]:
            for cand in self._fresh(adjacent(self.space, c)):
                pool.setdefault(self._key(cand), cand)
        picks = list(pool.values())
        if len(picks) > n:
            idx = sorted(self.rng.choice(len(picks), n, replace=False))
            picks = [picks[int(i)] for i in idx]
        if len(picks) < n:
            picks += self._fresh([c for c in self._random(n) if c not in picks])[: n - len(picks)]
        return picks
