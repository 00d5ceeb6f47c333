"""The records database: layers, kernel configs, builds, measurements, cost models.

URLs, engines, owner names and the schema's migrations belong to the storage
layer shared with the device farm (:mod:`pattune_common.storage`).
"""

from __future__ import annotations

from autotune.records.database import RecordsDB
from autotune.records.measurement import Claim, MeasureState, StoredMeasurement

__all__ = [
    "Claim",
    "MeasureState",
    "RecordsDB",
    "StoredMeasurement",
]
