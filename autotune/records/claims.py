"""The claim/finish protocol: each (device type, layer, config) is measured by one process, once.

A process *claims* a measurement before building anything: it inserts the row
as ``claimed`` with its owner name and an expiry (``claim_ttl_s`` seconds), and
the unique constraint on (device type, layer, config) decides between processes
that try together. The claim's holder then *finishes* it with a median (done)
or an error (failed), never both. A claim is taken over when it has expired or
its holder is dead (see :mod:`autotune.records.workers`); a clean stop
*releases* this process's unfinished claims.

Thread safety: each call uses its own sessions; the takeover is one conditional
UPDATE, so two processes cannot both take one claim over.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from autotune.records._base import insert, now, rowcount
from autotune.records._schema import MeasurementRow
from autotune.records.measurement import Claim, MeasureState, stored_in
from autotune.records.workers import WorkersMixin


class ClaimsMixin(WorkersMixin):
    """Claim, finish and release measurements (needs the workers' liveness rule)."""

    def claim(
        self,
        *,
        device_type_id: int,
        layer_id: int,
        config_id: int,
        predicted: float | None = None,
        cost_model_version: int | None = None,
    ) -> Claim:
        """Reserve the measurement of (device type, layer, config) for this process.

        Returns a :class:`Claim`: ``mine`` when the caller must now build and
        measure it and then call :meth:`finish`; ``existing`` when it was already
        measured; neither when another live process is measuring it right now.
        """
        started = time.time()
        with self.session() as s:
            s.execute(
                insert(s, MeasurementRow)
                .values(
                    device_type_id=device_type_id,
                    layer_id=layer_id,
                    config_id=config_id,
                    status=MeasureState.CLAIMED,
                    owner=self.owner,
                    claim_expires=started + self.claim_ttl_s,
                    detail={},
                    predicted=predicted,
                    cost_model_version=cost_model_version,
                    started=now(),
                )
                .on_conflict_do_nothing()
            )
            row = s.execute(
                sa.select(MeasurementRow).filter_by(
                    device_type_id=device_type_id, layer_id=layer_id, config_id=config_id
                )
            ).scalar_one()
            if row.status in MeasureState.FINAL:
                return Claim(row.id, False, stored_in(s, row))
            if row.owner == self.owner:
                return Claim(row.id, True, None)
            row_id, holder, expires = row.id, row.owner, row.claim_expires or 0.0
        # Another process holds it: take over only if its claim expired or it died.
        if expires >= started and self.is_alive(holder):
            return Claim(row_id, False, None)
        with self.session() as s:
            taken = rowcount(
                s.execute(
                    sa.update(MeasurementRow)
                    .where(
                        MeasurementRow.id == row_id,
                        MeasurementRow.status == MeasureState.CLAIMED,
                        MeasurementRow.owner == holder,
                    )
                    .values(
                        owner=self.owner,
                        claim_expires=started + self.claim_ttl_s,
                        predicted=predicted,
                        cost_model_version=cost_model_version,
                        started=now(),
                    )
                )
            )
            return Claim(row_id, bool(taken), None)

    def finish(
        self,
        measurement_id: int,
        *,
        median_s: float | None = None,
        spread: float | None = None,
        raw_times_s: Sequence[float] | None = None,
        error: str | None = None,
        device_name: str | None = None,
        build_id: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Close a claimed measurement with a median (done) or an error (failed), not both."""
        if (median_s is None) == (error is None):
            raise ValueError("finish() takes either median_s or error, exactly one of them")
        with self.session() as s:
            done = rowcount(
                s.execute(
                    sa.update(MeasurementRow)
                    .where(MeasurementRow.id == measurement_id, MeasurementRow.owner == self.owner)
                    .values(
                        status=MeasureState.DONE if error is None else MeasureState.FAILED,
                        median_s=median_s,
                        spread=spread,
                        raw_times_s=list(raw_times_s) if raw_times_s is not None else None,
                        error=error,
                        device_name=device_name,
                        build_id=build_id,
                        detail=detail or {},
                        claim_expires=None,
                        finished=now(),
                    )
                )
            )
        if not done:
            raise RuntimeError(f"measurement {measurement_id} is not claimed by {self.owner}")

    def release_claims(self) -> int:
        """Drop this process's unfinished claims (clean stop); return how many."""
        with self.session() as s:
            return rowcount(
                s.execute(
                    sa.delete(MeasurementRow).where(
                        MeasurementRow.owner == self.owner,
                        MeasurementRow.status == MeasureState.CLAIMED,
                    )
                )
            )
