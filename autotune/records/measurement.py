"""What the records database hands out about measurements: states, stored rows, claims.

Frozen values, safe to share between threads. Times are seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from autotune.records._schema import DeviceTypeRow, KernelConfigRow, LayerRow, MeasurementRow


class MeasureState:
    """Values of ``pt_measurements.status``."""

    CLAIMED = "claimed"
    DONE = "done"
    FAILED = "failed"

    FINAL = frozenset({DONE, FAILED})


@dataclass(frozen=True)
class StoredMeasurement:
    """One row of ``pt_measurements`` as the tuner sees it.

    ``median_s`` is set when ``status == "done"``, ``error`` when ``"failed"``.
    """

    id: int
    device_type: str
    layer_hash: str
    config_hash: str
    config: dict[str, Any]
    status: str
    median_s: float | None
    spread: float | None
    error: str | None
    predicted: float | None
    cost_model_version: int | None
    device_name: str | None


@dataclass(frozen=True)
class Claim:
    """The outcome of :meth:`RecordsDB.claim`.

    Attributes:
        measurement_id: The row's id.
        mine: True when this process now owns the measurement and must finish it.
        existing: The final measurement when one was already recorded, else None.
    """

    measurement_id: int
    mine: bool
    existing: StoredMeasurement | None


def stored(
    row: MeasurementRow, device_type: str, layer_hash: str, cfg: KernelConfigRow
) -> StoredMeasurement:
    """A measurement row with the names its foreign keys point to."""
    return StoredMeasurement(
        id=row.id,
        device_type=device_type,
        layer_hash=layer_hash,
        config_hash=cfg.config_hash,
        config=cfg.config,
        status=row.status,
        median_s=row.median_s,
        spread=row.spread,
        error=row.error,
        predicted=row.predicted,
        cost_model_version=row.cost_model_version,
        device_name=row.device_name,
    )


def stored_in(s: Session, row: MeasurementRow) -> StoredMeasurement:
    """:func:`stored` for a lone row, looking up its device type, layer and config in ``s``."""
    dt = s.get(DeviceTypeRow, row.device_type_id)
    layer = s.get(LayerRow, row.layer_id)
    cfg = s.get(KernelConfigRow, row.config_id)
    assert dt is not None and layer is not None and cfg is not None  # foreign keys
    return stored(row, dt.name, layer.weights_hash, cfg)
