"""Device leases and device health in a database shared by every tuner process.

A device runs one measurement at a time even with several tuner processes on
several hosts: before measuring, a process takes the device's row in
``farm_leases``; the row expires ``ttl_s`` seconds after its last renewal, so a
crashed holder frees its device. Times come from the database's own clock, so
hosts with skewed clocks still agree. ``farm_device_health`` counts consecutive
device faults and quarantines a device that keeps failing, for every process.

SQLite (``sqlite:///pattune.db``, the default) serves one host; PostgreSQL
(``postgresql+psycopg://...``) serves many. Tables live in this module's own
``MetaData`` with a ``farm_`` prefix; creating them is idempotent, so the tuner
can keep its own tables in the same database.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, ProgrammingError

from pattune_common import DEFAULT_STORAGE, UserInputError

__all__ = ["DEFAULT_DB_URL", "Lease", "LeaseStore", "metadata"]

DEFAULT_DB_URL = DEFAULT_STORAGE

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


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        eng = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(eng, "connect")
        def _wal(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # WAL lets readers run while one process writes a lease; synchronous=NORMAL
            # skips the fsync per commit (a lease lost to a power cut expires anyway).
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")

        return eng
    return create_engine(url, pool_pre_ping=True)


def _dead_on_this_host(holder: str) -> bool:
    """Whether a ``host:pid:random`` holder names a process of this host that no longer exists."""
    parts = holder.split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LeaseStore:
    """Leases and health records for devices, by name.

    Thread-safe: every method opens its own short transaction.

    Args:
        url: SQLAlchemy URL of the database (default ``sqlite:///pattune.db``).
        ttl_s: A lease expires this many seconds after it was taken or renewed.
        holder: Who holds leases taken through this store (default ``host:pid:random``).
    """

    def __init__(self, url: str = DEFAULT_DB_URL, *, ttl_s: float = 60.0,
                 holder: str | None = None) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0 seconds; got {ttl_s}")
        self.url = url
        self.ttl_s = ttl_s
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        try:
            self.engine = _engine(url)
        except (ArgumentError, ImportError) as exc:
            shown = re.sub(r"://[^@/]*@", "://***@", url)  # never print a password
            raise UserInputError(
                f"database URL {shown!r} is not usable ({exc}); use e.g. sqlite:///pattune.db "
                "or postgresql+psycopg://user@host/dbname") from None
        try:
            self.create_tables(self.engine)
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            # the URL's repr masks any password
            raise UserInputError(f"cannot open the lease database {self.engine.url!r}: "
                                 f"{reason}") from None

    @staticmethod
    def create_tables(engine: Engine) -> None:
        """Create the ``farm_`` tables if missing; safe when processes race to do it."""
        for attempt in range(3):
            try:
                metadata.create_all(engine, checkfirst=True)
                return
            except (IntegrityError, ProgrammingError, OperationalError):
                if attempt == 2:
                    raise
                time.sleep(0.1 * (attempt + 1))

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
            if holder and holder != self.holder and _dead_on_this_host(holder):
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
