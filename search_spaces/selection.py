"""Pattern-set selection as in PatDNN: the K most frequent natural patterns.

A kernel's *natural pattern* is its centre plus its ``n - 1`` largest-magnitude
other taps. Counting natural patterns over every 3x3 kernel of a trained model
and keeping the ``K`` most frequent gives the pattern set (PatDNN, Niu et al.,
ASPLOS 2020, section 4). A user-given set is accepted as well
(:func:`parse_pattern_set`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from torch import nn

from pattune_common import UserInputError
from search_spaces.models import conv_layers
from search_spaces.patterns import Pattern, PatternSet, all_patterns


class NoPatternLayersError(UserInputError):
    """The model has no 3x3 conv layer, so there is nothing to pattern-prune."""


def natural_patterns(weights: np.ndarray, *, n: int = 4) -> np.ndarray:
    """Bit mask (bit ``t`` set for kept tap ``t``) of each 3x3 kernel's natural pattern.

    Ties in magnitude go to the lower tap index, so all-zero kernels get a fixed pattern.

    Args:
        weights: float array (..., 3, 3).
        n: Kept taps, the centre included (1..9).

    Returns:
        int64 array (...) of bit masks.
    """
    w = np.abs(np.asarray(weights, dtype=np.float64))
    if w.shape[-2:] != (3, 3):
        raise ValueError(f"natural patterns need 3x3 kernels; got {w.shape[-2:]}")
    if not 1 <= n <= 9:
        raise ValueError(f"n must lie in 1..9; got {n}")
    flat = w.reshape(-1, 9).copy()
    flat[:, 4] = np.inf  # the centre is always kept
    order = np.argsort(-flat, axis=1, kind="stable")[:, :n]
    bits = np.bitwise_or.reduce(np.left_shift(np.int64(1), order), axis=1)
    return bits.reshape(w.shape[:-2])


def _bits_to_pattern(bits: int) -> Pattern:
    return Pattern(k=3, taps=tuple(t for t in range(9) if bits >> t & 1))


def count_natural_patterns(kernels: Iterable[np.ndarray], *, n: int = 4) -> dict[Pattern, int]:
    """How many kernels have each natural pattern, over several layers' weight arrays."""
    counts: dict[int, int] = {}
    for w in kernels:
        bits, freq = np.unique(natural_patterns(w, n=n), return_counts=True)
        for b, f in zip(bits.tolist(), freq.tolist(), strict=True):
            counts[b] = counts.get(b, 0) + f
    return {_bits_to_pattern(b): c for b, c in counts.items()}


def top_k_patterns(counts: dict[Pattern, int], k: int, *, n: int = 4) -> PatternSet:
    """The ``k`` most frequent patterns; ties and unseen fillers in canonical pattern order.

    Raises:
        ValueError: ``k`` outside 1..number of candidates.
    """
    candidates = all_patterns(3, n, keep_centre=True)
    if not 1 <= k <= len(candidates):
        raise ValueError(
            f"pattern count K must lie in 1..{len(candidates)} (the 3x3 patterns with {n} "
            f"non-zeros that keep the centre); got {k}"
        )
    rank = {p: i for i, p in enumerate(candidates)}
    ordered = sorted(candidates, key=lambda p: (-counts.get(p, 0), rank[p]))
    return PatternSet(tuple(ordered[:k]))


def select_pattern_set(
    model: nn.Module, input_shape: tuple[int, ...], k: int = 8, *, n: int = 4
) -> PatternSet:
    """PatDNN's selection: the ``k`` most frequent natural patterns over the model's 3x3 convs.

    Depthwise 3x3 layers count too (their kernels are pruned to the same set).

    Raises:
        NoPatternLayersError: The model has no 3x3 conv.
        ValueError: ``k`` larger than the candidates or below 1.
    """
    layers = [c for c in conv_layers(model, input_shape) if c.is_3x3]
    if not layers:
        raise NoPatternLayersError(
            "the model has no 3x3 conv layer, so pattern pruning has nothing to prune; "
            "give a model with 3x3 convolutions"
        )
    counts = count_natural_patterns(c.module.weight.detach().cpu().numpy() for c in layers)
    return top_k_patterns(counts, k, n=n)


def parse_pattern_set(text: str) -> PatternSet:
    """A user-given pattern set: a JSON file (``PatternSet.to_json``) or tap lists.

    Tap lists name each pattern's kept taps (row-major 0..8) separated by ``/``,
    e.g. ``"1,3,4,5/1,4,5,7/3,4,5,7"``.

    Raises:
        UserInputError: The file is unreadable or the text names no valid 3x3 patterns.
    """
    path = Path(text)
    if text.endswith(".json"):
        try:
            return PatternSet.from_dict(json.loads(path.read_text()))
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise UserInputError(f"cannot read pattern set file {text}: {exc}") from None
    try:
        pats = tuple(
            Pattern(k=3, taps=tuple(sorted(int(t) for t in part.split(","))))
            for part in text.split("/")
        )
        return PatternSet(pats)
    except ValueError as exc:
        raise UserInputError(
            f"patterns must be a .json pattern-set file or tap lists like '1,3,4,5/1,4,5,7' "
            f"(taps 0..8, row-major); got {text!r}: {exc}"
        ) from None
