"""The records database's core: opening the storage, sessions, the schema version, Optuna.

:class:`RecordsBase` holds the state every concern of
:class:`~autotune.records.RecordsDB` shares (URL, owner name, TTLs, engine,
session factory, id caches); the concerns themselves (workers, rows, claims,
queries, cost models) are mixins over it, one module each. Opening goes through
the storage layer (:mod:`pattune_common.storage`), which brings the schema of
the whole database, records and farm tables alike, to head.

Thread safety: every method opens its own short session, so one instance may be
shared by threads. Units: seconds for every time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from pattune_common.storage import (
    new_owner,
    normalize_url,
    open_storage,
    schema_lock,
    schema_version,
)


class RecordsBase:
    """Records database on one storage URL: the shared state and sessions.

    Args:
        url: Storage URL (``sqlite:///pattune.db``, ``postgresql+psycopg://…``;
            a plain ``postgresql://`` is read as psycopg 3).
        owner: Name written on claims; defaults to ``host:pid:random``.
        claim_ttl_s: A claim older than this is considered abandoned and may be
            taken over by another process.
        worker_ttl_s: A worker whose heartbeat is older than this is dead.

    Raises:
        UserInputError: When the URL is unusable or the database cannot be
            opened (one line, password hidden, with the fix).
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
        self.engine = open_storage(
            self.url, fix="check the --storage URL and that the database server is running"
        )
        self.owner = owner or new_owner()
        self.claim_ttl_s = claim_ttl_s
        self.worker_ttl_s = worker_ttl_s
        self._beat_stop: threading.Event | None = None
        # Rows of these tables are never changed or deleted, so their ids can be cached.
        self._layer_ids: dict[str, int] = {}
        self._config_ids: dict[str, int] = {}
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

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

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    def _get_or_create(
        self, s: Session, model: type[Any], key: dict[str, Any], values: dict[str, Any]
    ) -> int:
        """Id of the row of ``model`` with ``key``, inserted with ``values`` if missing.

        Race-free between processes: the insert does nothing when another
        process inserted the same key first, and the select then finds its row.
        """
        s.execute(insert(s, model).values(**key, **values).on_conflict_do_nothing())
        return int(s.execute(sa.select(model.id).filter_by(**key)).scalar_one())


def now() -> datetime:
    """The current time, timezone-aware (UTC), for the records' timestamp columns."""
    return datetime.now(UTC)


def insert(s: Session, model: type[Any]) -> Any:
    """A dialect INSERT that supports ``on_conflict_do_nothing`` (SQLite and PostgreSQL)."""
    bind = s.get_bind()
    return (postgresql.insert if bind.dialect.name == "postgresql" else sqlite.insert)(model)


def rowcount(result: sa.Result[Any]) -> int:
    """Rows an UPDATE or DELETE touched."""
    return int(getattr(result, "rowcount", 0))
