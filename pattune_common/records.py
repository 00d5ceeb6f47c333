"""Stable JSON and hashes for the frozen records that cross package boundaries.

Every record (Pattern, LayerSpec, KernelConfig, Measurement, ...) is a frozen
dataclass with ``to_dict``/``from_dict``; saving, caching, exporting and replaying
all go through that one form. :func:`stable_hash` hashes the canonical JSON, so
two equal records hash equally across processes, hosts and Python versions
(unlike ``hash()``, which is salted per process).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from typing import Any, ClassVar, TypeVar

T = TypeVar("T", bound="Record")


def canonical_json(value: Any) -> str:
    """Return ``value`` as JSON with sorted keys and no whitespace.

    Args:
        value: JSON-compatible data (dicts, lists, str, int, float, bool, None).
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def stable_hash(value: Any, *, length: int = 16) -> str:
    """Return the first ``length`` hex digits of sha256 over ``canonical_json(value)``."""
    digest = hashlib.sha256(canonical_json(value).encode()).hexdigest()
    return digest[:length]


def _encode(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


class Record:
    """Mixin for frozen dataclasses made only of JSON-friendly fields.

    Subclasses with nested records, enums or arrays override ``from_dict`` (and
    ``to_dict`` where the default encoding does not fit). ``schema`` names the
    record kind in its JSON so a file can say what it holds.
    """

    schema: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the record's stable JSON-compatible form."""
        assert dataclasses.is_dataclass(self)
        return {f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Build the record from :meth:`to_dict`'s output."""
        assert dataclasses.is_dataclass(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)

    def to_json(self) -> str:
        """Return :meth:`to_dict` as canonical JSON."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_json(cls: type[T], text: str) -> T:
        """Parse :meth:`to_json`'s output."""
        return cls.from_dict(json.loads(text))

    def stable_hash(self) -> str:
        """Return a 16-hex-digit content hash, equal across processes and hosts."""
        return stable_hash(self.to_dict())
