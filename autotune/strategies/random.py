"""Random search: uniform valid configs (the baseline every strategy must beat)."""

from __future__ import annotations

from typing import Any

from autotune.strategies._base import SearchStrategy


class RandomSearch(SearchStrategy):
    """Proposes uniformly sampled valid configs not seen before."""

    name = "random"

    def propose(self, n: int) -> list[Any]:
        return self._random(n)
