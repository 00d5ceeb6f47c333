"""Cost-model versions as blobs, numbered 1, 2, 3 ... per device type.

A version number is taken by inserting ``max + 1``; when another process took
that number first (the unique constraint on (device type, version) refuses the
insert) the next one is tried, so versions are dense and never shared. The blob
is the model's own portable serialisation (no pickle). Thread-safe: each call
uses its own sessions.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from autotune.records._base import now
from autotune.records._schema import CostModelRow, DeviceTypeRow
from autotune.records.rows import RowsMixin


class CostModelsMixin(RowsMixin):
    """Store and load trained cost models (needs the device-type rows)."""

    def save_cost_model(
        self, *, device_type: str, kind: str, n_train: int, blob: bytes, metrics: dict[str, Any]
    ) -> int:
        """Store a new cost-model version for ``device_type``; return its version number."""
        dt = self.device_type(device_type)
        for _ in range(5):
            try:
                with self.session() as s:
                    last = s.execute(
                        sa.select(sa.func.max(CostModelRow.version)).where(
                            CostModelRow.device_type_id == dt
                        )
                    ).scalar()
                    version = int(last or 0) + 1
                    s.add(
                        CostModelRow(
                            device_type_id=dt,
                            version=version,
                            kind=kind,
                            n_train=n_train,
                            created=now(),
                            metrics=metrics,
                            blob=blob,
                        )
                    )
                return version
            except sa.exc.IntegrityError:
                continue  # another process took that version number; take the next
        raise RuntimeError("could not allocate a cost-model version after 5 tries")

    def latest_cost_model(self, device_type: str) -> tuple[int, str, bytes, dict[str, Any]] | None:
        """``(version, kind, blob, metrics)`` of the newest cost model, or None."""
        with self.session() as s:
            row = s.execute(
                sa.select(CostModelRow)
                .join(DeviceTypeRow, DeviceTypeRow.id == CostModelRow.device_type_id)
                .where(DeviceTypeRow.name == device_type)
                .order_by(CostModelRow.version.desc())
                .limit(1)
            ).scalar_one_or_none()
            return None if row is None else (row.version, row.kind, row.blob, row.metrics)
