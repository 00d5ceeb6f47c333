"""The records database: every layer, config, build, measurement and cost model.

One :class:`RecordsDB` per process, on the study's storage URL (SQLite by
default, PostgreSQL when several hosts share a study). Its promise is the
tuner's: the same (device type, layer, pruned-weights hash, KernelConfig) is
never built or measured twice, across trials, studies, processes and restarts.
Processes arbitrate through the database alone: a measurement row is *claimed*
before anything is built, and the unique constraint decides who measures.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from autotune.records._schema import (
    BuildRow,
    CostModelRow,
    DeviceRow,
    DeviceTypeRow,
    KernelConfigRow,
    LayerRow,
    MeasurementRow,
    WorkerRow,
)
from pattune_common import stable_hash
from pattune_common.storage import (
    new_owner,
    normalize_url,
    open_storage,
    process_gone,
    schema_lock,
    schema_version,
    this_host,
)
from search_spaces.layers import layer_stats


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


def _now() -> datetime:
    return datetime.now(UTC)


class RecordsDB:
    """Records database on one SQLAlchemy URL.

    Thread safety: each method opens its own short session, so one instance may
    be shared by threads. Units: seconds for every time.

    Args:
        url: Storage URL (``sqlite:///pattune.db``, ``postgresql+psycopg://…``;
            a plain ``postgresql://`` is read as psycopg 3), opened through the
            storage layer (:mod:`pattune_common.storage`), which brings its
            schema to head.
        owner: Name written on claims; defaults to ``host:pid:random``.
        claim_ttl_s: A claim older than this is considered abandoned and may be
            taken over by another process.
    """

    def __init__(
        self,
        url: str,
        *,
        owner: str | None = None,
        claim_ttl_s: float = 1800.0,
        worker_ttl_s: float = 60.0,
    ) -> None:
        self.url = normalize_url(url)
        self.owner = owner or new_owner()
        self.claim_ttl_s = claim_ttl_s
        self.worker_ttl_s = worker_ttl_s
        self._beat_stop: threading.Event | None = None
        # Rows of these tables are never changed or deleted, so their ids can be cached.
        self._layer_ids: dict[str, int] = {}
        self._config_ids: dict[str, int] = {}
        self.engine = open_storage(
            self.url, fix="check the --storage URL and that the database server is running"
        )
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    # -- schema -------------------------------------------------------------

    def optuna_storage(self) -> Any:
        """Optuna's RDB storage on the same URL, created safely by concurrent processes.

        Optuna creates its tables on first use without a lock, so two tuners
        starting together on a new PostgreSQL database collide; the first start
        is serialised with the storage layer's schema lock (and retried on
        SQLite, where the file lock already serialises DDL).
        """
        import optuna

        for attempt in range(5):
            try:
                with schema_lock(self.engine):
                    return optuna.storages.RDBStorage(self.url)
            except (sa.exc.IntegrityError, sa.exc.OperationalError):
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def schema_version(self) -> str | None:
        """The Alembic revision the database is at (``SCHEMA_VERSION`` after open)."""
        return schema_version(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success, rolled back on error."""
        with self._sessions.begin() as s:
            yield s

    # -- workers ------------------------------------------------------------

    def heartbeat(self, info: dict[str, Any] | None = None) -> None:
        """Record that this process is alive (creates its worker row on first call)."""
        values = {"heartbeat": time.time()}
        with self.session() as s:
            row = s.get(WorkerRow, self.owner)
            if row is None:
                s.add(
                    WorkerRow(
                        owner=self.owner,
                        host=this_host(),
                        pid=os.getpid(),
                        info=info or {},
                        **values,
                    )
                )
            else:
                row.heartbeat = values["heartbeat"]
                if info is not None:
                    row.info = info

    def start_heartbeat(self, interval_s: float = 10.0) -> None:
        """Beat from a daemon thread every ``interval_s`` until :meth:`stop_heartbeat`."""
        self.heartbeat()
        if self._beat_stop is not None:
            return
        stop = self._beat_stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval_s):
                try:
                    self.heartbeat()
                except sa.exc.SQLAlchemyError:  # a blip must not kill the tuner; next beat retries
                    continue

        threading.Thread(target=beat, name="pattune-heartbeat", daemon=True).start()

    def stop_heartbeat(self) -> None:
        """Stop the heartbeat thread and remove this worker's row."""
        if self._beat_stop is not None:
            self._beat_stop.set()
            self._beat_stop = None
        with self.session() as s:
            s.execute(sa.delete(WorkerRow).where(WorkerRow.owner == self.owner))

    def is_alive(self, owner: str) -> bool:
        """Whether ``owner`` (another worker) is still alive.

        Dead when its heartbeat is older than ``worker_ttl_s`` or, on this host,
        when its process no longer exists. A worker that never beat counts as
        alive (its claims still expire after ``claim_ttl_s``).
        """
        if owner == self.owner:
            return True
        with self.session() as s:
            row = s.get(WorkerRow, owner)
            if row is None:
                return True  # never beat: only its claim's expiry can free its work
            if time.time() - row.heartbeat > self.worker_ttl_s:
                return False
            return not process_gone(row.host, row.pid)

    # -- get-or-create ------------------------------------------------------

    def _get_or_create(
        self, s: Session, model: type[Any], key: dict[str, Any], values: dict[str, Any]
    ) -> int:
        s.execute(_insert(s, model).values(**key, **values).on_conflict_do_nothing())
        return int(s.execute(sa.select(model.id).filter_by(**key)).scalar_one())

    def device_type(self, name: str, *, arch: str = "", info: dict[str, Any] | None = None) -> int:
        """Id of device type ``name``, created on first use."""
        with self.session() as s:
            return self._get_or_create(
                s, DeviceTypeRow, {"name": name}, {"arch": arch, "info": info or {}}
            )

    def device(self, name: str, *, device_type: str, info: dict[str, Any] | None = None) -> int:
        """Id of device ``name`` (of ``device_type``), created on first use."""
        dt = self.device_type(device_type)
        with self.session() as s:
            return self._get_or_create(
                s, DeviceRow, {"name": name}, {"device_type_id": dt, "info": info or {}}
            )

    def layer(self, layer: Any) -> int:
        """Id of a PrunedLayer (by ``weights_hash``), created on first use."""
        cached = self._layer_ids.get(layer.weights_hash)
        if cached is not None:
            return cached
        stats = layer_stats(layer)
        with self.session() as s:
            lid = self._get_or_create(
                s,
                LayerRow,
                {"weights_hash": layer.weights_hash},
                {"signature": layer.spec.signature(), "spec": layer.spec.to_dict(), "stats": stats},
            )
        self._layer_ids[layer.weights_hash] = lid
        return lid

    def kernel_config(self, config: dict[str, Any]) -> tuple[int, str]:
        """``(id, hash)`` of a KernelConfig given in its ``to_dict()`` form."""
        h = stable_hash(config)
        cached = self._config_ids.get(h)
        if cached is None:
            with self.session() as s:
                cached = self._get_or_create(
                    s, KernelConfigRow, {"config_hash": h}, {"config": config}
                )
            self._config_ids[h] = cached
        return cached, h

    # -- builds -------------------------------------------------------------

    def record_build(
        self,
        *,
        build_hash: str,
        target: str,
        layer_id: int,
        config_id: int,
        error: str | None = None,
    ) -> int:
        """Record a build once per ``build_hash``; return its id."""
        with self.session() as s:
            return self._get_or_create(
                s,
                BuildRow,
                {"build_hash": build_hash},
                {
                    "target": target,
                    "layer_id": layer_id,
                    "config_id": config_id,
                    "status": "failed" if error else "done",
                    "error": error,
                    "created": _now(),
                },
            )

    # -- measurements -------------------------------------------------------

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
        now = time.time()
        with self.session() as s:
            s.execute(
                _insert(s, MeasurementRow)
                .values(
                    device_type_id=device_type_id,
                    layer_id=layer_id,
                    config_id=config_id,
                    status=MeasureState.CLAIMED,
                    owner=self.owner,
                    claim_expires=now + self.claim_ttl_s,
                    detail={},
                    predicted=predicted,
                    cost_model_version=cost_model_version,
                    started=_now(),
                )
                .on_conflict_do_nothing()
            )
            row = s.execute(
                sa.select(MeasurementRow).filter_by(
                    device_type_id=device_type_id, layer_id=layer_id, config_id=config_id
                )
            ).scalar_one()
            if row.status in MeasureState.FINAL:
                return Claim(row.id, False, self._stored(s, row))
            if row.owner == self.owner:
                return Claim(row.id, True, None)
            row_id, holder, expires = row.id, row.owner, row.claim_expires or 0.0
        # Another process holds it: take over only if its claim expired or it died.
        if expires >= now and self.is_alive(holder):
            return Claim(row_id, False, None)
        with self.session() as s:
            taken = _rowcount(
                s.execute(
                    sa.update(MeasurementRow)
                    .where(
                        MeasurementRow.id == row_id,
                        MeasurementRow.status == MeasureState.CLAIMED,
                        MeasurementRow.owner == holder,
                    )
                    .values(
                        owner=self.owner,
                        claim_expires=now + self.claim_ttl_s,
                        predicted=predicted,
                        cost_model_version=cost_model_version,
                        started=_now(),
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
            done = _rowcount(
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
                        finished=_now(),
                    )
                )
            )
        if not done:
            raise RuntimeError(f"measurement {measurement_id} is not claimed by {self.owner}")

    def release_claims(self) -> int:
        """Drop this process's unfinished claims (clean stop); return how many."""
        with self.session() as s:
            return _rowcount(
                s.execute(
                    sa.delete(MeasurementRow).where(
                        MeasurementRow.owner == self.owner,
                        MeasurementRow.status == MeasureState.CLAIMED,
                    )
                )
            )

    def _stored(self, s: Session, row: MeasurementRow) -> StoredMeasurement:
        dt = s.get(DeviceTypeRow, row.device_type_id)
        layer = s.get(LayerRow, row.layer_id)
        cfg = s.get(KernelConfigRow, row.config_id)
        assert dt is not None and layer is not None and cfg is not None
        return _stored(row, dt.name, layer.weights_hash, cfg)

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
                _stored(row, device_type, lhash, cfg) for row, lhash, cfg in s.execute(stmt).all()
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

    # -- cost models --------------------------------------------------------

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
                            created=_now(),
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

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()


def _stored(
    row: MeasurementRow, device_type: str, layer_hash: str, cfg: KernelConfigRow
) -> StoredMeasurement:
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


def _insert(s: Session, model: type[Any]) -> Any:
    """A dialect INSERT that supports ``on_conflict_do_nothing`` (SQLite and PostgreSQL)."""
    bind = s.get_bind()
    return (postgresql.insert if bind.dialect.name == "postgresql" else sqlite.insert)(model)


def _rowcount(result: sa.Result[Any]) -> int:
    return int(getattr(result, "rowcount", 0))


__all__ = [
    "Claim",
    "MeasureState",
    "RecordsDB",
    "StoredMeasurement",
]
