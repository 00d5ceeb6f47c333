"""Tables of the records database (SQLAlchemy 2.0 ORM).

Every table carries the ``pt_`` prefix so the records can share one database
with Optuna's study tables and the device farm's ``farm_`` lease tables. These
classes describe the tables for queries; the tables themselves are created and
versioned only by the storage layer's migrations
(``pattune_common/storage/migrations``, version table ``pt_alembic_version``).
A change here needs a new revision there.

The uniqueness rules are the tuner's promises: a build is stored once per
source+flags hash, and a measurement once per (device type, layer, kernel
config), so nothing is built or measured twice across trials, studies,
processes and restarts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base holding the records' MetaData (separate from Optuna's and the farm's)."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class WorkerRow(Base):
    """A tuner process; its heartbeat tells others whether its claims and trials are alive."""

    __tablename__ = "pt_workers"

    owner: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(128))
    pid: Mapped[int] = mapped_column(Integer)
    heartbeat: Mapped[float] = mapped_column(Float)  # epoch seconds
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)


class DeviceTypeRow(Base):
    """A kind of device; devices of one type are interchangeable for measurement."""

    __tablename__ = "pt_device_types"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    arch: Mapped[str] = mapped_column(String(32), default="")
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)


class DeviceRow(Base):
    """One device that produced measurements (connection secrets are never stored)."""

    __tablename__ = "pt_devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    device_type_id: Mapped[int] = mapped_column(ForeignKey("pt_device_types.id"))
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)


class LayerRow(Base):
    """A pruned layer, keyed by its content hash; ``signature`` is its shape alone."""

    __tablename__ = "pt_layers"

    id: Mapped[int] = mapped_column(primary_key=True)
    weights_hash: Mapped[str] = mapped_column(String(32), unique=True)
    signature: Mapped[str] = mapped_column(String(512), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column()
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)


class KernelConfigRow(Base):
    """A KernelConfig in its stable JSON form, keyed by its stable hash."""

    __tablename__ = "pt_kernel_configs"

    id: Mapped[int] = mapped_column(primary_key=True)
    config_hash: Mapped[str] = mapped_column(String(32), unique=True)
    config: Mapped[dict[str, Any]] = mapped_column()


class BuildRow(Base):
    """One build, keyed by the hash of its source, flags and compiler."""

    __tablename__ = "pt_builds"

    id: Mapped[int] = mapped_column(primary_key=True)
    build_hash: Mapped[str] = mapped_column(String(64), unique=True)
    target: Mapped[str] = mapped_column(String(128))
    layer_id: Mapped[int] = mapped_column(ForeignKey("pt_layers.id"))
    config_id: Mapped[int] = mapped_column(ForeignKey("pt_kernel_configs.id"))
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CostModelRow(Base):
    """One trained cost-model version for a device type."""

    __tablename__ = "pt_cost_models"
    __table_args__ = (UniqueConstraint("device_type_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_type_id: Mapped[int] = mapped_column(ForeignKey("pt_device_types.id"))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(64))
    n_train: Mapped[int] = mapped_column(Integer)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    blob: Mapped[bytes] = mapped_column(LargeBinary)


class MeasurementRow(Base):
    """The one measurement of a (device type, layer, kernel config).

    A row is first inserted as ``claimed`` by the process that will measure it
    (the unique constraint arbitrates between processes); it ends ``done`` with
    a median, or ``failed`` with an error, never both. A claim whose holder died
    is taken over once ``claim_expires`` has passed.
    """

    __tablename__ = "pt_measurements"
    __table_args__ = (UniqueConstraint("device_type_id", "layer_id", "config_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_type_id: Mapped[int] = mapped_column(ForeignKey("pt_device_types.id"), index=True)
    layer_id: Mapped[int] = mapped_column(ForeignKey("pt_layers.id"), index=True)
    config_id: Mapped[int] = mapped_column(ForeignKey("pt_kernel_configs.id"))
    build_id: Mapped[int | None] = mapped_column(ForeignKey("pt_builds.id"), default=None)
    status: Mapped[str] = mapped_column(String(16), index=True)
    owner: Mapped[str] = mapped_column(String(128), default="")
    claim_expires: Mapped[float | None] = mapped_column(Float, default=None)  # epoch s
    device_name: Mapped[str | None] = mapped_column(String(128), default=None)
    median_s: Mapped[float | None] = mapped_column(Float, default=None)
    spread: Mapped[float | None] = mapped_column(Float, default=None)
    raw_times_s: Mapped[list[Any] | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    predicted: Mapped[float | None] = mapped_column(Float, default=None)
    cost_model_version: Mapped[int | None] = mapped_column(Integer, default=None)
    started: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class TrialDetailRow(Base):
    """The detail of one trial of a study: its candidate and its per-layer results.

    The Optuna trial keeps short scalars that read well in optuna-dashboard; this
    row keeps what the export needs (written by the outer study and the tuner).
    """

    __tablename__ = "pt_trial_details"
    __table_args__ = (UniqueConstraint("study", "trial_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study: Mapped[str] = mapped_column(String(512))
    trial_number: Mapped[int] = mapped_column(Integer)
    candidate: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    layers: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    updated: Mapped[float] = mapped_column(Float)
