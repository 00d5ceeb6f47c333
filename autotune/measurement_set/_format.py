"""The measurement-set file: recorded (layer, KernelConfig) -> latency, with its provenance.

One gzip-compressed JSON document (``*.json.gz``; plain ``*.json`` is read too)::

    {"format": "pattune-measurement-set", "version": 1,
     "metadata": {"device": ..., "cpu": ..., "compiler": ..., "flags": [...],
                  "target": {...}, "pruning": {...}, "protocol": {...},
                  "created": "2026-11-29T05:40:00Z", "complete": false, ...},
     "layers": [{"name": "features.7", "spec": {LayerSpec}, "stats": {...},
                 "weights_hash": "...", "space": {"choices": {...}, "pins": {...},
                 "min_accumulators": 1}, "space_size": 288, "coverage": "exhaustive",
                 "entries": [{"config": {KernelConfig}, "median_s": 0.0123,
                              "error": null, "cv": 0.01, "times_s": [...],
                              "passes": 2}]}]}

An entry carries either ``median_s`` (seconds) or ``error``, never both.
``coverage`` is ``exhaustive`` when every valid config of the layer's space
has an entry, ``random`` when the entries are a uniform random sample of it.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codegen import KernelConfig
from pattune_common import UserInputError

FORMAT = "pattune-measurement-set"
VERSION = 1
STATISTICS = ("median", "min")


@dataclass(frozen=True)
class Entry:
    """One recorded config: a median latency in seconds, or an error.

    Attributes:
        config: The KernelConfig.
        median_s: Median latency in seconds (None when it failed).
        error: Why it failed (``build: ...``, ``verify: ...``), None when measured.
        cv: Coefficient of variation of the timed repeats.
        times_s: Raw timed repeats in seconds, of every recording pass.
        passes: Recording passes merged into this entry (each measured it afresh).
    """

    config: KernelConfig
    median_s: float | None = None
    error: str | None = None
    cv: float | None = None
    times_s: tuple[float, ...] = ()
    passes: int = 1

    def __post_init__(self) -> None:
        if (self.median_s is None) == (self.error is None):
            raise ValueError("an Entry has either median_s or error, never both or neither")

    def latency(self, statistic: str = "median") -> float | None:
        """Seconds by ``statistic``: ``median`` (the protocol's) or ``min`` of the raw repeats.

        ``min`` is the estimate least disturbed by other load on the machine: other
        processes only ever slow a run down.

        Raises:
            ValueError: Unknown statistic.
        """
        if statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}; got {statistic!r}")
        if self.median_s is None or statistic == "median" or not self.times_s:
            return self.median_s
        return min(self.times_s)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "config": self.config.to_dict(),
            "median_s": self.median_s,
            "error": self.error,
            "cv": self.cv,
            "times_s": [float(f"{t:.6g}") for t in self.times_s],
            "passes": self.passes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        """Inverse of :meth:`to_dict`."""
        return cls(
            config=KernelConfig.from_dict(data["config"]),
            median_s=data.get("median_s"),
            error=data.get("error"),
            cv=data.get("cv"),
            times_s=tuple(data.get("times_s") or ()),
            passes=int(data.get("passes", 1)),
        )


@dataclass
class LayerRecord:
    """The recorded configs of one pruned layer.

    Attributes:
        name: Layer name (``features.7``); unique within a set.
        spec: ``LayerSpec.to_dict()``.
        stats: Pruning statistics (``search_spaces.layer_stats``).
        weights_hash: The pruned layer's weights hash (the cost-model group).
        space: ``{"choices": field -> values, "pins": field -> values, "min_accumulators"}``.
        space_size: Valid configs in the space.
        coverage: ``exhaustive`` or ``random``.
        entries: Recorded configs, in recording order.
    """

    name: str
    spec: dict[str, Any]
    stats: dict[str, Any]
    weights_hash: str
    space: dict[str, Any]
    space_size: int
    coverage: str = "random"
    entries: list[Entry] = field(default_factory=list)

    def measured(self) -> list[Entry]:
        """Entries with a latency."""
        return [e for e in self.entries if e.median_s is not None]

    def best_s(self, statistic: str = "median") -> float:
        """The fastest recorded latency in seconds (see :meth:`Entry.latency`).

        Raises:
            ValueError: The layer has no measured entry.
        """
        lats = [e.latency(statistic) for e in self.measured()]
        if not lats:
            raise ValueError(f"layer {self.name!r} has no measured entry in the set")
        return min(t for t in lats if t is not None)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "name": self.name,
            "spec": self.spec,
            "stats": self.stats,
            "weights_hash": self.weights_hash,
            "space": self.space,
            "space_size": self.space_size,
            "coverage": self.coverage,
            "entries": [e.to_dict() for e in self.entries],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerRecord:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=data["name"],
            spec=data["spec"],
            stats=data["stats"],
            weights_hash=data["weights_hash"],
            space=data["space"],
            space_size=int(data["space_size"]),
            coverage=data.get("coverage", "random"),
            entries=[Entry.from_dict(e) for e in data["entries"]],
        )


@dataclass
class MeasurementSet:
    """Recorded layers with the metadata that says where and how they were measured.

    Attributes:
        metadata: Device, CPU, compiler, flags, pruning, protocol, date, completeness.
        layers: One record per layer.
    """

    metadata: dict[str, Any]
    layers: list[LayerRecord]

    def layer(self, name: str) -> LayerRecord:
        """The layer called ``name``.

        Raises:
            ValueError: No such layer (the message lists the set's layers).
        """
        for rec in self.layers:
            if rec.name == name:
                return rec
        raise ValueError(
            f"layer must be one of {', '.join(r.name for r in self.layers)}; got {name!r}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form, with the format name and version."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "metadata": self.metadata,
            "layers": [r.to_dict() for r in self.layers],
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "measurement set") -> MeasurementSet:
        """Inverse of :meth:`to_dict`.

        Raises:
            UserInputError: Not a measurement set, or a version this code cannot read.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserInputError(
                f'{source} is not a pattune measurement set (no "format": "{FORMAT}"); '
                "give a file written by `pattune record`"
            )
        if data.get("version") != VERSION:
            raise UserInputError(
                f"{source} has measurement-set version {data.get('version')!r}; this pattune "
                f"reads version {VERSION}: re-record it with this version's `pattune record`"
            )
        try:
            return cls(
                metadata=dict(data["metadata"]),
                layers=[LayerRecord.from_dict(r) for r in data["layers"]],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UserInputError(
                f"{source} is a damaged measurement set ({type(exc).__name__}: {exc}); "
                "re-record it with `pattune record`"
            ) from exc


def save(mset: MeasurementSet, path: str | Path) -> Path:
    """Write ``mset`` atomically (gzip when the name ends in ``.gz``); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(mset.to_dict(), sort_keys=True, separators=(",", ":")).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if path.name.endswith(".gz"):
        # No name, mtime=0: the same set gives the same bytes.
        with (
            open(tmp, "wb") as raw,
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz,
        ):
            gz.write(text)
    else:
        tmp.write_bytes(text)
    tmp.replace(path)
    return path


def load(path: str | Path) -> MeasurementSet:
    """Read a measurement set.

    Raises:
        UserInputError: Missing, unreadable, not a measurement set, or another version.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(
            f"measurement set {path} does not exist; give a file from `pattune record`"
        )
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        data = json.loads(raw)
    except (OSError, EOFError, ValueError) as exc:
        raise UserInputError(
            f"measurement set {path} is not readable gzip/JSON ({type(exc).__name__}); "
            "give a file written by `pattune record`"
        ) from exc
    return MeasurementSet.from_dict(data, source=f"measurement set {path}")
