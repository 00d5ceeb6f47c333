"""Checks and conversions of the API's keyword arguments, with the CLI's messages.

The API and the CLI share one set of rules, so a rule is stated once and a bad
argument gets the same message from ``pattune.tune(trials=0)`` as from
``pattune tune --trials 0``: the messages name the flag, which is also the
keyword (``--max-accuracy-drop`` is ``max_accuracy_drop=``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence

from pattune_common import UserInputError

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(value: float | str | None) -> float | None:
    """Seconds from ``"8h"``, ``"30m"``, ``"90s"``, ``"1h30m"``, plain seconds or a number.

    Raises:
        UserInputError: The text is none of those forms, or the number is negative.
    """
    if value is None:
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise UserInputError(f"--timeout must be a finite number of seconds; got {value}")
        if value < 0:
            raise UserInputError(f"--timeout must be >= 0 seconds; got {value}")
        return float(value)
    t = value.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", t)
    if not parts or "".join(n + u for n, u in parts) != t:
        raise UserInputError(
            f"--timeout must look like 8h, 30m, 90s, 1h30m or a number of seconds; got {value!r}"
        )
    return sum(float(n) * _UNITS[u] for n, u in parts)


def shape_text(shape: str | Sequence[int] | None) -> str | None:
    """``"1,3,224,224"`` from that text or from ``(1, 3, 224, 224)`` (None stays None).

    The study stores its options as JSON text, so the shape travels as the
    flag's text; its rules are checked where it is parsed.
    """
    if shape is None or isinstance(shape, str):
        return shape
    return ",".join(str(int(n)) for n in shape)


def path_text(path: str | os.PathLike[str] | None) -> str | None:
    """A path as text (None stays None), as the study stores it."""
    return None if path is None else os.fspath(path)


def in_range(flag: str, value: float | None, *, low: float | None = None,
             high: float | None = None, low_open: bool = False) -> None:
    """Raise unless ``value`` is None or a finite number within the limits.

    The message names the flag (which is also the keyword), e.g. ``--threads must be
    >= 1; got 0``. NaN and infinity are refused, not compared (``nan < 0`` is false).
    """
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserInputError(f"{flag} must be a finite number; got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise UserInputError(f"{flag} must be {'>' if low_open else '>='} {low:g}; got {value!r}")
    if high is not None and value > high:
        raise UserInputError(f"{flag} must be <= {high:g}; got {value!r}")


def one_of(flag: str, value: str, allowed: Sequence[str]) -> None:
    """Raise unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise UserInputError(f"{flag} must be one of {', '.join(allowed)}; got {value!r}")


__all__ = ["in_range", "one_of", "parse_duration", "path_text", "shape_text"]
