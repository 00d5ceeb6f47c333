"""Kernel patterns: which taps of a k x k kernel survive pattern pruning.

PatDNN prunes every 3x3 kernel to one of a few *patterns*: 4 of the 9 weights,
the centre always among them. A :class:`Pattern` is that set of taps; a
:class:`PatternSet` is the K patterns a model is allowed to use, in a fixed
order, so a kernel's pattern is stored as an index into the set.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from pattune_common import Record


@dataclass(frozen=True, order=True)
class Pattern(Record):
    """The surviving taps of one k x k kernel.

    Attributes:
        k: Kernel side (3 for 3x3).
        taps: Row-major flat indices (``row * k + col``) of the kept weights,
            strictly increasing.
    """

    k: int
    taps: tuple[int, ...]

    schema = "pattern"

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"pattern side k must be >= 1; got {self.k}")
        taps = tuple(int(t) for t in self.taps)
        object.__setattr__(self, "taps", taps)
        if not taps:
            raise ValueError("a pattern needs at least one tap")
        if list(taps) != sorted(set(taps)):
            raise ValueError(f"pattern taps must be strictly increasing; got {list(taps)}")
        if taps[0] < 0 or taps[-1] >= self.k * self.k:
            raise ValueError(f"pattern taps must lie in 0..{self.k * self.k - 1}; got {list(taps)}")

    @classmethod
    def from_mask(cls, mask: Any) -> Pattern:
        """Build a pattern from a k x k array whose non-zero entries are the kept taps."""
        m = np.asarray(mask)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"pattern mask must be square k x k; got shape {m.shape}")
        return cls(k=int(m.shape[0]), taps=tuple(int(i) for i in np.flatnonzero(m)))

    @property
    def n(self) -> int:
        """Number of kept weights."""
        return len(self.taps)

    @property
    def offsets(self) -> tuple[tuple[int, int], ...]:
        """Kept taps as ``(row, col)`` pairs, row-major."""
        return tuple(divmod(t, self.k) for t in self.taps)

    def mask(self) -> np.ndarray:
        """Return the k x k float32 mask (1 on kept taps)."""
        m = np.zeros(self.k * self.k, dtype=np.float32)
        m[list(self.taps)] = 1.0
        return m.reshape(self.k, self.k)

    def keeps_centre(self) -> bool:
        """True when the kernel's centre tap (odd k) is kept."""
        return self.k % 2 == 1 and (self.k * self.k) // 2 in self.taps

    def __str__(self) -> str:
        rows = []
        for r in range(self.k):
            rows.append(" ".join("X" if r * self.k + c in self.taps else "." for c in range(self.k)))
        return "\n".join(rows)


def all_patterns(k: int = 3, n: int = 4, *, keep_centre: bool = True) -> tuple[Pattern, ...]:
    """Every k x k pattern with ``n`` kept taps, in lexicographic order of taps.

    Args:
        k: Kernel side.
        n: Kept taps per kernel.
        keep_centre: Only patterns that keep the centre (needs odd ``k``).
            3x3 with n=4 gives 56 patterns with the centre rule, 126 without.

    Raises:
        ValueError: ``n`` outside ``1..k*k`` or centre rule on an even kernel.
    """
    if k < 1 or not 1 <= n <= k * k:
        raise ValueError(f"need k >= 1 and 1 <= n <= k*k; got k={k}, n={n}")
    if keep_centre and k % 2 == 0:
        raise ValueError(f"keep_centre needs an odd kernel side; got k={k}")
    centre = (k * k) // 2
    out = []
    for taps in itertools.combinations(range(k * k), n):
        if keep_centre and centre not in taps:
            continue
        out.append(Pattern(k=k, taps=taps))
    return tuple(out)


@dataclass(frozen=True)
class PatternSet(Record):
    """The K patterns a model may use; a kernel stores an index into ``patterns``.

    Attributes:
        patterns: Distinct patterns of one kernel side, in a fixed order.
    """

    patterns: tuple[Pattern, ...]

    schema = "pattern_set"

    def __post_init__(self) -> None:
        pats = tuple(self.patterns)
        object.__setattr__(self, "patterns", pats)
        if not pats:
            raise ValueError("a pattern set needs at least one pattern")
        if len({p.k for p in pats}) != 1:
            raise ValueError("all patterns of a set must have the same kernel side")
        if len(set(pats)) != len(pats):
            raise ValueError("a pattern set must not list a pattern twice")

    @property
    def k(self) -> int:
        """Kernel side of every pattern."""
        return self.patterns[0].k

    def __len__(self) -> int:
        return len(self.patterns)

    def __getitem__(self, i: int) -> Pattern:
        return self.patterns[i]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.patterns)

    def masks(self) -> np.ndarray:
        """Return the set's masks as a float32 array of shape (K, k, k)."""
        return np.stack([p.mask() for p in self.patterns])

    def to_dict(self) -> dict[str, Any]:
        return {"patterns": [p.to_dict() for p in self.patterns]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatternSet:
        return cls(patterns=tuple(Pattern.from_dict(p) for p in data["patterns"]))

    def __str__(self) -> str:
        blocks = [str(p).split("\n") for p in self.patterns]
        k = self.k
        return "\n".join("   ".join(b[r] for b in blocks) for r in range(k))
