"""Device leases and device health in a database shared by every tuner process.

A device runs one measurement at a time even with several tuner processes on
several hosts: before measuring, a process takes the device's row in
``farm_leases``; the row expires ``ttl_s`` seconds after its last renewal, so a
crashed holder frees its device (and a holder on this host whose process is
gone frees it at once). Times come from the database's own clock (Unix
seconds), so hosts with skewed clocks still agree. ``farm_device_health``
counts consecutive device faults and quarantines a device that keeps failing,
for every process.

SQLite (``sqlite:///pattune.db``, the default) serves one host; PostgreSQL
(``postgresql://...``) serves many. The tables below only describe
``farm_leases`` and ``farm_device_health`` for queries: the storage layer's
migrations (:mod:`pattune_common.storage`) create them, with the records'
tables, when a :class:`LeaseStore` opens the database.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from pattune_common import DEFAULT_STORAGE
from pattune_common.storage import new_owner, normalize_url, open_storage, owner_is_dead

__all__ = ["DEFAULT_DB_URL", "Lease", "LeaseStore", "metadata"]

DEFAULT_DB_URL = DEFAULT_STORAGE

# Descriptions for queries; the migrations (revision 0002) create the tables.
metadata = MetaData()
farm_leases = Table(
    "farm_leases", metadata,
    Column("device", String(128), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("token", String(64), nullable=False),
    Column("acquired_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)
farm_device_health = Table(
    "farm_device_health", metadata,
    Column("device", String(128), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("quarantined_until", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)


@dataclass(frozen=True)
class Lease:
    """A held lease: who holds which device until when (database-clock Unix seconds)."""

    device: str
    holder: str
    token: str
    expires_at: float


class LeaseStore:
    """Leases and health records for devices, by name.

    Thread-safe: every method opens its own short transaction. Times are
    seconds on the database's clock.

    Args:
        url: Storage URL of the database (default ``sqlite:///pattune.db``); it
            is brought to the schema's head on open.
        ttl_s: A lease expires this many seconds after it was taken or renewed.
        holder: Who holds leases taken through this store (default ``host:pid:random``).

    Raises:
        UserInputError: When the URL is unusable or the database cannot be
            opened (one line, password hidden, with the fix).
    """

    def __init__(self, url: str = DEFAULT_DB_URL, *, ttl_s: float = 60.0,
                 holder: str | None = None) -> None:
        if not (isinstance(ttl_s, int | float) and math.isfinite(ttl_s) and ttl_s > 0):
            raise ValueError(f"ttl_s must be a finite number > 0 of seconds; got {ttl_s}")
        self.url = normalize_url(url)
        self.ttl_s = ttl_s
        self.holder = holder or new_owner()
        self.engine = open_storage(self.url, name="the lease database")

    def _now(self, conn: Connection) -> float:
        if self.engine.dialect.name == "postgresql":
            q = "SELECT EXTRACT(EPOCH FROM clock_timestamp())"
        elif self.engine.dialect.name == "sqlite":
            q = "SELECT (julianday('now') - 2440587.5) * 86400.0"
        else:
            return time.time()
        return float(conn.execute(text(q)).scalar_one())

    # -- leases -----------------------------------------------------------------------
    def try_acquire(self, device: str) -> Lease | None:
        """Take the device's lease if it is free or expired; None when someone holds it."""
        token = uuid.uuid4().hex
        try:
            with self.engine.begin() as conn:
                now = self._now(conn)
                conn.execute(insert(farm_leases).values(
                    device=device, holder=self.holder, token=token, acquired_at=now,
                    expires_at=now + self.ttl_s))
                return Lease(device, self.holder, token, now + self.ttl_s)
        except IntegrityError:
            pass
        with self.engine.begin() as conn:
            now = self._now(conn)
            res = conn.execute(
                update(farm_leases)
                .where(farm_leases.c.device == device, farm_leases.c.expires_at < now)
                .values(holder=self.holder, token=token, acquired_at=now,
                        expires_at=now + self.ttl_s))
            if res.rowcount == 1:
                return Lease(device, self.holder, token, now + self.ttl_s)
            # A holder on this host whose process is gone (a killed tuner) cannot renew:
            # take its lease now instead of waiting for the TTL.
            holder = conn.execute(
                select(farm_leases.c.holder).where(farm_leases.c.device == device)
            ).scalar()
            if holder and holder != self.holder and owner_is_dead(holder):
                res = conn.execute(
                    update(farm_leases)
                    .where(farm_leases.c.device == device, farm_leases.c.holder == holder)
                    .values(holder=self.holder, token=token, acquired_at=now,
                            expires_at=now + self.ttl_s))
                if res.rowcount == 1:
                    return Lease(device, self.holder, token, now + self.ttl_s)
        return None

    def acquire(self, device: str, *, timeout_s: float, poll_s: float = 0.2) -> Lease | None:
        """Wait up to ``timeout_s`` seconds for the device's lease."""
        deadline = time.monotonic() + timeout_s
        while True:
            lease = self.try_acquire(device)
            if lease is not None or time.monotonic() >= deadline:
                return lease
            time.sleep(poll_s)

    def renew(self, lease: Lease) -> bool:
        """Extend a held lease by ``ttl_s``; False when it was lost (expired and taken)."""
        with self.engine.begin() as conn:
            now = self._now(conn)
            res = conn.execute(
                update(farm_leases)
                .where(farm_leases.c.device == lease.device, farm_leases.c.token == lease.token)
                .values(expires_at=now + self.ttl_s))
            return res.rowcount == 1

    def release(self, lease: Lease) -> None:
        """Give the lease back (nothing happens when it was already lost)."""
        with self.engine.begin() as conn:
            conn.execute(delete(farm_leases).where(
                farm_leases.c.device == lease.device, farm_leases.c.token == lease.token))

    def holder_of(self, device: str) -> str | None:
        """Who holds an unexpired lease on the device, or None."""
        with self.engine.begin() as conn:
            now = self._now(conn)
            row = conn.execute(select(farm_leases.c.holder).where(
                farm_leases.c.device == device, farm_leases.c.expires_at >= now)).first()
            return None if row is None else str(row[0])

    @contextlib.contextmanager
    def held(self, lease: Lease, *, every_s: float | None = None) -> Iterator[threading.Event]:
        """Renew ``lease`` in a background thread while the block runs, then release it.

        Yields an Event that is set if a renewal found the lease lost.
        """
        lost, stop = threading.Event(), threading.Event()
        period = every_s or self.ttl_s / 3

        def beat() -> None:
            while not stop.wait(period):
                try:
                    if not self.renew(lease):
                        lost.set()
                        return
                except OperationalError:
                    continue  # the database blinked; the next beat retries before expiry

        thread = threading.Thread(target=beat, name=f"lease-{lease.device}", daemon=True)
        thread.start()
        try:
            yield lost
        finally:
            stop.set()
            thread.join()
            self.release(lease)

    # -- health -----------------------------------------------------------------------
    def record_failure(self, device: str, reason: str, *, threshold: int,
                       quarantine_s: float) -> bool:
        """Count one more consecutive fault; return True when the device is now quarantined."""
        for _ in range(3):
            try:
                return self._count_failure(device, reason, threshold, quarantine_s)
            except IntegrityError:
                continue  # another process inserted the row first; count again on it
        return False

    def _count_failure(self, device: str, reason: str, threshold: int,
                       quarantine_s: float) -> bool:
        with self.engine.begin() as conn:
            now = self._now(conn)
            row = conn.execute(select(farm_device_health.c.failures).where(
                farm_device_health.c.device == device)).first()
            failures = (row[0] if row else 0) + 1
            until = now + quarantine_s if failures >= threshold else 0.0
            values = {"failures": failures, "quarantined_until": until,
                      "reason": reason[:2000], "updated_at": now}
            if row is None:
                conn.execute(insert(farm_device_health).values(device=device, **values))
            else:
                conn.execute(update(farm_device_health)
                             .where(farm_device_health.c.device == device).values(**values))
            return until > 0

    def record_success(self, device: str) -> None:
        """Reset the device's consecutive-fault count and lift any quarantine."""
        with self.engine.begin() as conn:
            conn.execute(update(farm_device_health).where(farm_device_health.c.device == device)
                         .values(failures=0, quarantined_until=0.0, reason=""))

    def quarantine(self, device: str) -> str | None:
        """The reason the device is quarantined now, or None when it is not."""
        with self.engine.begin() as conn:
            now = self._now(conn)
            row = conn.execute(select(farm_device_health.c.reason).where(
                farm_device_health.c.device == device,
                farm_device_health.c.quarantined_until > now)).first()
            return None if row is None else str(row[0])

    def close(self) -> None:
        """Dispose of the engine's connections."""
        self.engine.dispose()
