"""The records database: layers, kernel configs, builds, measurements, cost models."""

from __future__ import annotations

from autotune.records.database import (
    SCHEMA_VERSION,
    Claim,
    MeasureState,
    RecordsDB,
    StoredMeasurement,
    normalize_url,
    redact_url,
)

__all__ = [
    "SCHEMA_VERSION",
    "Claim",
    "MeasureState",
    "RecordsDB",
    "StoredMeasurement",
    "normalize_url",
    "redact_url",
]
