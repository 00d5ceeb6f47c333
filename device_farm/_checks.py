"""The rules every value from a user's file or a device must pass, stated once.

Names, ids and paths are matched with :func:`re.fullmatch`: ``re.match`` with a
trailing ``$`` accepts a final newline, which would reach a remote shell or a
file name. Numbers must be real numbers (``bool`` is not one, although Python
says it is an ``int``) and finite: JSON's ``1e999`` parses as infinity and
``NaN`` compares false with every limit, so a plain ``x > 0`` lets both through.

Every function raises ``ValueError`` whose message names the field, the rule and
the value; callers that read a file prefix the file and line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

__all__ = [
    "ENV_NAME",
    "check_env",
    "check_name",
    "check_number",
    "check_text",
    "check_texts",
    "device_int",
    "is_real",
]

#: Environment variable names: what POSIX shells accept in an assignment, so a key can
#: never be read as an option (``-S...`` of ``env``) or split into two words.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def is_real(value: Any) -> bool:
    """Whether ``value`` is an int or float and not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_number(field: str, value: Any, *, low: float | None = None,
                 high: float | None = None, low_open: bool = False,
                 integer: bool = False, unit: str = "") -> float:
    """Return ``value`` as a float after checking it is a finite number in range.

    Args:
        field: The name the message uses.
        value: What was given.
        low: Smallest allowed value (None: no lower bound).
        high: Largest allowed value (None: no upper bound).
        low_open: ``low`` itself is not allowed (``> low`` instead of ``>= low``).
        integer: Only whole numbers (``int``) are allowed.
        unit: Said after each limit in the message (``"seconds"``).

    Raises:
        ValueError: Not a number, not finite, or out of range.
    """
    kind = "an integer" if integer else "a number"
    if not is_real(value) or (integer and not isinstance(value, int)):
        raise ValueError(f"{field} must be {kind}; got {value!r}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float
        finite = False
    if not finite:
        raise ValueError(f"{field} must be a finite number; got {value!r:.40}")
    u = f" {unit}" if unit else ""
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{field} must be {'>' if low_open else '>='} {low:g}{u}; "
                         f"got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{field} must be <= {high:g}{u}; got {value!r}")
    return float(value)


def check_text(field: str, value: Any, *, allow_empty: bool = True) -> str:
    """Return ``value`` after checking it is a string without NUL characters.

    A NUL cannot cross ``exec`` (it ends a C string), so a value holding one would
    reach the program cut short.
    """
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string; got {value!r}")
    if "\x00" in value:
        raise ValueError(f"{field} must not contain NUL characters; got {value!r}")
    if not allow_empty and not value:
        raise ValueError(f"{field} must not be empty")
    return value


def check_texts(field: str, value: Any) -> tuple[str, ...]:
    """A list or tuple of strings (never a bare string, which would split into characters)."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"{field} must be a list of strings; got {value!r}")
    return tuple(check_text(f"{field}[{i}]", v) for i, v in enumerate(value))


def check_name(field: str, value: Any, pattern: re.Pattern[str], rule: str) -> str:
    """Return ``value`` after checking the whole string matches ``pattern``.

    Args:
        field: The name the message uses.
        value: What was given.
        pattern: The rule as a regular expression (matched with ``fullmatch``).
        rule: The rule in words, for the message.
    """
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"{field} must be {rule}; got {value!r}")
    return value


_SMALL_INT = re.compile(r"-?[0-9]{1,9}")


def device_int(text: str) -> int | None:
    """An integer a device printed (a core count, millidegrees), or None if it is not one.

    ``str.isdigit`` accepts "³" and 5000-digit numbers, on which ``int`` raises; a
    device's answer is taken only as plain ASCII digits of a sane length.
    """
    text = text.strip()
    return int(text) if _SMALL_INT.fullmatch(text) else None


def check_env(field: str, items: Any) -> tuple[tuple[str, str], ...]:
    """Environment pairs: names by :data:`ENV_NAME`, values strings without NUL.

    Accepts a mapping or a sequence of ``(name, value)`` pairs.
    """
    pairs = list(items.items()) if isinstance(items, dict) else items
    if isinstance(pairs, str) or not isinstance(pairs, Sequence):
        raise ValueError(f"{field} must be a table of names to strings; got {items!r}")
    out = []
    for pair in pairs:
        if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"{field} must hold [name, value] pairs; got {pair!r}")
        key, value = pair
        check_name(f"{field} name", key, ENV_NAME,
                   "a letter or '_' then letters, digits or '_' (at most 128)")
        out.append((key, check_text(f"{field} {key}", value)))
    return tuple(out)
