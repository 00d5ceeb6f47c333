"""Read-only queries over the measurements: lists, the best, counts, the layers measured.

Each method is one short read (a join, never a query per row), safe from any
thread. Times are seconds; lists are oldest first (by row id).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from autotune.records._base import RecordsBase
from autotune.records._schema import DeviceTypeRow, KernelConfigRow, LayerRow, MeasurementRow
from autotune.records.measurement import MeasureState, StoredMeasurement, stored


class QueriesMixin(RecordsBase):
    """What has been measured, per device type and layer."""

    def measurements(
        self,
        *,
        device_type: str,
        layer_hash: str | None = None,
        status: str | None = MeasureState.DONE,
    ) -> list[StoredMeasurement]:
        """Measurements of a device type (optionally one layer), oldest first (one query)."""
        with self.session() as s:
            stmt = (
                sa.select(MeasurementRow, LayerRow.weights_hash, KernelConfigRow)
                .join(DeviceTypeRow, DeviceTypeRow.id == MeasurementRow.device_type_id)
                .join(LayerRow, LayerRow.id == MeasurementRow.layer_id)
                .join(KernelConfigRow, KernelConfigRow.id == MeasurementRow.config_id)
                .where(DeviceTypeRow.name == device_type)
                .order_by(MeasurementRow.id)
            )
            if layer_hash is not None:
                stmt = stmt.where(LayerRow.weights_hash == layer_hash)
            if status is not None:
                stmt = stmt.where(MeasurementRow.status == status)
            return [
                stored(row, device_type, lhash, cfg) for row, lhash, cfg in s.execute(stmt).all()
            ]

    def count_done(self, device_type: str) -> int:
        """Finished measurements with a value on a device type (a cheap COUNT)."""
        with self.session() as s:
            return int(
                s.execute(
                    sa.select(sa.func.count())
                    .select_from(MeasurementRow)
                    .join(DeviceTypeRow, DeviceTypeRow.id == MeasurementRow.device_type_id)
                    .where(
                        DeviceTypeRow.name == device_type,
                        MeasurementRow.status == MeasureState.DONE,
                    )
                ).scalar_one()
            )

    def layer_specs(self, device_type: str) -> dict[str, dict[str, Any]]:
        """``weights_hash -> {"spec": ..., "stats": ...}`` for layers measured on a device type."""
        with self.session() as s:
            measured = (
                sa.select(MeasurementRow.layer_id)
                .join(DeviceTypeRow, DeviceTypeRow.id == MeasurementRow.device_type_id)
                .where(DeviceTypeRow.name == device_type)
                .distinct()
            )
            rows = s.execute(sa.select(LayerRow).where(LayerRow.id.in_(measured))).scalars()
            return {r.weights_hash: {"spec": r.spec, "stats": r.stats} for r in rows}

    def best(self, *, device_type: str, layer_hash: str) -> StoredMeasurement | None:
        """The fastest finished measurement of a layer on a device type."""
        done = self.measurements(device_type=device_type, layer_hash=layer_hash)
        return min(done, key=lambda m: m.median_s or float("inf"), default=None)

    def counts(self) -> dict[str, int]:
        """Row counts per measurement status (for ``pattune status``)."""
        with self.session() as s:
            rows = s.execute(
                sa.select(MeasurementRow.status, sa.func.count()).group_by(MeasurementRow.status)
            ).all()
            return {str(k): int(v) for k, v in rows}
