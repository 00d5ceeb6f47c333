"""How a :class:`~search_spaces.space.JointSpace` point is written as Optuna parameters.

The encoding is versioned per study (the study's ``pattune:param_encoding`` attribute),
because Optuna refuses a parameter whose distribution changes within a study:

* **1** (pattune up to 1201580): ``k`` categorical in the space file's order,
  ``rate:LAYER`` (or ``rate``) categorical strings such as ``"3.6x"``. Studies
  written then keep it, so they resume.
* **2** (new studies): ``k`` an integer (``IntDistribution`` with a step when the
  choices are evenly spaced, as the default 4, 6, ..., 12; else categorical integers in
  ascending order), ``keep:LAYER`` (or ``keep``) the fraction of kernels kept, a
  number in (0, 1] (categorical numbers in ascending order, since the rate choices
  are seldom evenly spaced). optuna-dashboard then draws K and the rates on numeric
  axes. ``pattern_set`` (explicit sets) is a categorical index in both.

Whatever the encoding, the :class:`Candidate` holds the rate strings of the space
file, so records, hashes and exports do not depend on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import gcd
from typing import Any

from search_spaces.projection import parse_connectivity

#: The encoding new studies get.
PARAM_ENCODING = 2
ENCODINGS = (1, 2)


def keep_fraction(rate: str) -> float:
    """The fraction of kernels a rate keeps, to 4 decimals (``"2x"`` -> 0.5)."""
    return round(1.0 - parse_connectivity(rate), 4)


def suggest_k(trial: Any, choices: Sequence[int], encoding: int) -> int:
    """K, as the encoding writes it."""
    if encoding == 1:
        return int(trial.suggest_categorical("k", list(choices)))
    ks = sorted(set(int(k) for k in choices))
    if len(ks) == 1:
        return int(trial.suggest_int("k", ks[0], ks[0]))
    step = 0
    for a, b in zip(ks, ks[1:], strict=False):
        step = gcd(step, b - a)
    if ks == list(range(ks[0], ks[-1] + 1, step)):
        return int(trial.suggest_int("k", ks[0], ks[-1], step=step))
    return int(trial.suggest_categorical("k", ks))


def suggest_rate(trial: Any, name: str, choices: Sequence[str], encoding: int) -> str:
    """One connectivity rate (a string of ``choices``), as the encoding writes it.

    ``name`` is ``"rate"`` (one shared rate) or ``"rate:LAYER"``; encoding 2 writes
    ``keep`` / ``keep:LAYER``.
    """
    if encoding == 1:
        return str(trial.suggest_categorical(name, list(choices)))
    by_keep: dict[float, str] = {}
    for rate in choices:
        by_keep.setdefault(keep_fraction(rate), rate)
    keep = trial.suggest_categorical("keep" + name[len("rate"):], sorted(by_keep))
    return by_keep[float(keep)]


__all__ = ["ENCODINGS", "PARAM_ENCODING", "keep_fraction", "suggest_k", "suggest_rate"]
