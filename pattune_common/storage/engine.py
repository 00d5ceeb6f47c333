"""Engines for the storage database, set up for several processes, and opening it at head.

SQLite serves the processes of one host: WAL lets readers run while one process
writes, ``synchronous=NORMAL`` skips the fsync per commit (WAL still survives a
crashed process; only a power cut may lose the last commits, which claims and
leases then redo or let expire), a busy timeout of :data:`SQLITE_BUSY_TIMEOUT_S`
seconds waits out another process's write instead of failing (and the switch
to WAL, which SQLite makes without its busy handler, is retried as long), and
foreign keys are enforced. PostgreSQL serves many hosts: connections are pinged before use
(a restarted server does not fail the next query) and a connection attempt gives
up after :data:`PG_CONNECT_TIMEOUT_S` seconds.

An engine is thread-safe (SQLAlchemy's pool); so is :func:`open_storage`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

import sqlalchemy as sa

from pattune_common.errors import UserInputError
from pattune_common.redaction import redact_text
from pattune_common.storage.schema import upgrade
from pattune_common.storage.urls import normalize_url, redact_url, unusable_url

SQLITE_BUSY_TIMEOUT_S = 60.0
PG_CONNECT_TIMEOUT_S = 10


def make_engine(url: str) -> sa.Engine:
    """An engine on a storage URL, set up for its backend; connects lazily.

    Raises:
        UserInputError: When the URL is not a usable SQLite or PostgreSQL URL or
            its driver is missing; the message names the URL (password hidden)
            and the fix.
    """
    url = normalize_url(url)
    try:
        if url.startswith("sqlite"):
            engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
            sa.event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return sa.create_engine(
            url, pool_pre_ping=True, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S}
        )
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise unusable_url(url, str(exc)) from None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    _switch_to_wal(cur)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _switch_to_wal(cur: Any) -> None:
    """``PRAGMA journal_mode=WAL``, waiting out other connections that open a fresh file.

    Switching a file to WAL takes its exclusive lock without SQLite's busy
    handler, so when several processes open a new database at once all but one
    fail at once with "database is locked"; the switch happens once per file,
    so a short wait finds it done.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def require_existing(url: str, *, flag: str = "--storage") -> None:
    """Raise unless the database of ``url`` exists (for commands that only read it).

    Opening an SQLite URL creates the file; a command that only reads (``status``,
    ``export``) must not leave an empty database behind a typo. A PostgreSQL
    database is never created by connecting, so only SQLite files are checked.

    Raises:
        UserInputError: The SQLite file does not exist (or is not a file).
    """
    parsed = sa.engine.make_url(normalize_url(url))
    path = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or path in ("", ":memory:") or (
            path.startswith("file:")):
        return
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "does not exist"
        raise UserInputError(f"{flag} {redact_url(url)}: the database file {path} {what}; "
                             "check the URL (this command only reads a study)")


def open_storage(url: str, *, name: str = "storage", fix: str = "") -> sa.Engine:
    """An engine on ``url`` whose schema is at head (migrated now if it was older or empty).

    Args:
        url: Storage URL (see :func:`normalize_url`).
        name: What the database is to the caller, for the error message
            (``"storage"``, ``"the lease database"``).
        fix: What the user should check when the database cannot be opened;
            appended in parentheses.

    Raises:
        UserInputError: One line naming the URL (password hidden) and the
            problem: an unusable URL, a database that cannot be reached or
            created, or a schema newer than this pattune.
    """
    engine = make_engine(url)
    try:
        upgrade(engine)
    except sa.exc.DBAPIError as exc:  # unreachable, refused, not a database, permissions
        engine.dispose()
        reason = redact_text(str(exc.orig or exc)).strip().splitlines()[0]
        hint = f" ({fix})" if fix else ""
        raise UserInputError(
            f"cannot open {name} {redact_url(str(engine.url))}: {reason}{hint}"
        ) from None
    except UserInputError:
        engine.dispose()
        raise
    return engine
