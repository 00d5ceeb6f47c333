"""Pattern projection and connectivity pruning of one layer's 3x3 kernels.

These are the exact Euclidean projections PatDNN's ADMM step needs:

* :func:`project_patterns` gives each kernel the pattern of the set that keeps
  the largest squared L2 norm (an exact argmax over the K patterns);
* :func:`connectivity_mask` then removes whole kernels, smallest kept norm first,
  so exactly ``kernels_to_keep(n, rate)`` survive.

Rates have two accepted forms (see :func:`parse_connectivity`): a *fraction
removed* in [0, 1) such as ``0.72``, or PatDNN's *ratio* form such as ``"3.6x"``
(keep 1/3.6 of the kernels). ``1`` / ``"1x"`` means no connectivity pruning.
"""

from __future__ import annotations

import math

import numpy as np

from search_spaces.layers import LayerSpec, PrunedLayer
from search_spaces.patterns import PatternSet


def parse_connectivity(value: float | str) -> float:
    """Return the fraction of kernels to remove for a rate in either accepted form.

    Args:
        value: ``"3.6x"`` or a number >= 1 (ratio: keep 1/value of the kernels),
            or a number in [0, 1) (fraction removed). ``1`` and ``"1x"`` remove none.

    Raises:
        ValueError: Negative numbers, ratios below 1, or text that is neither form.
    """
    text = str(value).strip().lower()
    try:
        if text.endswith("x"):
            ratio = float(text[:-1])
            if not math.isfinite(ratio) or ratio < 1.0:
                raise ValueError
            return 1.0 - 1.0 / ratio
        number = float(text)
    except ValueError:
        raise ValueError(
            f"connectivity rate must be a fraction removed in [0, 1) or a ratio >= 1 such as "
            f"'3.6x'; got {value!r}"
        ) from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(
            f"connectivity rate must be a fraction removed in [0, 1) or a ratio >= 1 such as "
            f"'3.6x'; got {value!r}"
        )
    return number if number < 1.0 else 1.0 - 1.0 / number


def kernels_to_keep(n_kernels: int, removed_fraction: float) -> int:
    """Kernels that survive removing ``removed_fraction`` of ``n_kernels`` (at least 1).

    The count removed is ``floor(n * f + 0.5)`` (round half up), so 3.6x on 64
    kernels keeps 18.
    """
    if not 0.0 <= removed_fraction < 1.0:
        raise ValueError(f"removed fraction must lie in [0, 1); got {removed_fraction}")
    removed = math.floor(n_kernels * removed_fraction + 0.5)
    return max(1, n_kernels - removed) if n_kernels else 0


def kept_energy(weights: np.ndarray, pattern_set: PatternSet) -> np.ndarray:
    """Squared L2 norm each kernel keeps under each pattern.

    Args:
        weights: float array (..., k, k).

    Returns:
        float64 array (..., K).
    """
    w2 = np.asarray(weights, dtype=np.float64) ** 2
    flat = w2.reshape(*w2.shape[:-2], -1)
    masks = pattern_set.masks().reshape(len(pattern_set), -1).astype(np.float64)
    return flat @ masks.T


def project_patterns(weights: np.ndarray, pattern_set: PatternSet) -> np.ndarray:
    """Index of the pattern keeping the most squared norm, per kernel (ties: lowest index).

    Args:
        weights: float array (cout, cin_per_group, k, k).

    Returns:
        int16 array (cout, cin_per_group).
    """
    if weights.shape[-2:] != (pattern_set.k, pattern_set.k):
        raise ValueError(
            f"kernels are {weights.shape[-2]}x{weights.shape[-1]} but the pattern set is "
            f"{pattern_set.k}x{pattern_set.k}"
        )
    return np.argmax(kept_energy(weights, pattern_set), axis=-1).astype(np.int16)


def connectivity_mask(
    weights: np.ndarray, pattern_ids: np.ndarray, pattern_set: PatternSet, removed_fraction: float
) -> np.ndarray:
    """Alive map that keeps the kernels with the largest pattern-kept norm.

    Exactly :func:`kernels_to_keep` kernels stay alive; ties are broken by
    position (earlier kernels first), so the result is deterministic.

    Returns:
        bool array (cout, cin_per_group).
    """
    energy = np.take_along_axis(
        kept_energy(weights, pattern_set), pattern_ids.astype(np.int64)[..., None], axis=-1
    )[..., 0]
    return keep_strongest(energy, removed_fraction)


def keep_strongest(energy: np.ndarray, removed_fraction: float) -> np.ndarray:
    """Alive map keeping the :func:`kernels_to_keep` largest entries of ``energy``.

    Ties are broken by position (earlier kernels first), so the result is deterministic.
    """
    keep = kernels_to_keep(energy.size, removed_fraction)
    alive = np.zeros(energy.size, dtype=bool)
    alive[np.argsort(-energy.ravel(), kind="stable")[:keep]] = True
    return alive.reshape(energy.shape)


def prune_weights(
    weights: np.ndarray, pattern_set: PatternSet, removed_fraction: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project onto the pattern set, then connectivity-prune.

    Returns:
        ``(pruned_weights float32, pattern_ids int16, alive bool)``.
    """
    ids = project_patterns(weights, pattern_set)
    alive = connectivity_mask(weights, ids, pattern_set, removed_fraction)
    mask = pattern_set.masks()[ids.astype(np.int64)] * alive[..., None, None]
    return (np.asarray(weights, dtype=np.float32) * mask).astype(np.float32), ids, alive


def prune_layer(
    spec: LayerSpec,
    weights: np.ndarray,
    pattern_set: PatternSet,
    *,
    connectivity: float | str = 0.0,
    bias: np.ndarray | None = None,
) -> PrunedLayer:
    """Pattern- and connectivity-prune one conv layer's weights into a :class:`PrunedLayer`.

    Args:
        spec: The layer's shape; ``weights`` must be (cout, cin_per_group, kh, kw).
        weights: Dense float weights.
        pattern_set: Patterns to project onto.
        connectivity: Rate in either form accepted by :func:`parse_connectivity`.
        bias: Optional (cout,) bias, carried unchanged.
    """
    w = np.asarray(weights, dtype=np.float32)
    expected = (spec.cout, spec.cin_per_group, spec.kh, spec.kw)
    if w.shape != expected:
        raise ValueError(f"layer {spec.name!r}: weights have shape {w.shape}, expected {expected}")
    pruned, ids, alive = prune_weights(w, pattern_set, parse_connectivity(connectivity))
    return PrunedLayer(
        spec=spec, pattern_set=pattern_set, pattern_ids=ids, alive=alive, weights=pruned, bias=bias
    )


def random_pruned_layer(
    spec: LayerSpec,
    pattern_set: PatternSet,
    *,
    connectivity: float | str = 0.0,
    seed: int = 0,
    bias: bool = True,
) -> PrunedLayer:
    """A layer with Kaiming-like random weights, pruned: latency work needs no training."""
    rng = np.random.default_rng(seed)
    fan_in = spec.cin_per_group * spec.kh * spec.kw
    w = rng.standard_normal((spec.cout, spec.cin_per_group, spec.kh, spec.kw)) * math.sqrt(
        2.0 / fan_in
    )
    b = rng.standard_normal(spec.cout).astype(np.float32) * 0.1 if bias else None
    return prune_layer(spec, w, pattern_set, connectivity=connectivity, bias=b)
