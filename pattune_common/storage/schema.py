"""The database's one schema history: Alembic migrations to head, serialised between processes.

One migration history (``migrations/versions``) creates every table pattune
owns in a storage database: the records' ``pt_*`` tables and the device farm's
``farm_*`` tables. Its version lives in ``pt_alembic_version``, because
Optuna's RDB storage owns ``alembic_version`` in the same database and
migrates its own tables itself.

Processes on one or many hosts may open a database together: the upgrade runs
under the database's own lock (a PostgreSQL advisory lock, SQLite's write lock
taken by ``BEGIN IMMEDIATE``), re-reads the version inside it and does nothing
when another process has already upgraded. An up-to-date database is checked
without taking any lock. Every function is thread-safe (each uses its own
connection).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from pattune_common.errors import UserInputError

if TYPE_CHECKING:
    from alembic.config import Config

#: The newest revision of the migrations; every open brings a database here.
SCHEMA_VERSION = "0003"
#: Alembic's version table for pattune's tables (Optuna's is ``alembic_version``).
VERSION_TABLE = "pt_alembic_version"
MIGRATIONS = Path(__file__).with_name("migrations")

# Key of the PostgreSQL advisory lock that serialises schema changes: the
# records' migrations and Optuna's first table creation.
_LOCK_KEY = 727274


def _config(connection: sa.Connection) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _current(connection: sa.Connection) -> str | None:
    # Plain SQL rather than Alembic's MigrationContext: opening an up-to-date
    # database (every LeaseStore, every tuner) then never imports Alembic.
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    # One row: the history is linear, so Alembic keeps a single head there.
    found = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    return None if found is None else str(found)


def schema_version(engine: sa.Engine) -> str | None:
    """The revision the database is at; None for a database pattune never opened."""
    with engine.connect() as conn:
        return _current(conn)


def upgrade(engine: sa.Engine, *, revision: str = "head") -> None:
    """Bring the database's schema to ``revision`` (normally head).

    Safe when several processes call it at once on one database. Rows already
    stored are kept: every revision only adds.

    Raises:
        UserInputError: When the database is at a revision these migrations do
            not know (written by a newer pattune).
        sqlalchemy.exc.OperationalError: When the database cannot be reached.
    """
    if revision == "head":
        with engine.connect() as conn:
            if _current(conn) == SCHEMA_VERSION:
                return  # the common case, without a lock
    from alembic import command
    from alembic.script import ScriptDirectory

    with engine.begin() as conn:
        _lock_transaction(conn)
        current = _current(conn)
        script = ScriptDirectory.from_config(_config(conn))
        known = {s.revision for s in script.walk_revisions()}
        if current is not None and current not in known:
            shown = engine.url.render_as_string(hide_password=True)
            raise UserInputError(
                f"database {shown} is at schema revision {current}, which this pattune does "
                f"not know (newest: {SCHEMA_VERSION}); open it with the pattune version that "
                "wrote it or a newer one"
            )
        target = script.get_current_head() if revision == "head" else revision
        if current != target:
            command.upgrade(_config(conn), revision)


def _lock_transaction(conn: sa.Connection) -> None:
    """Hold the schema lock until ``conn``'s transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})"))
    elif conn.dialect.name == "sqlite":
        # pysqlite opens its transaction lazily, at the first write; taking the
        # write lock first makes a second process wait here, then see the new
        # version, instead of failing on "table already exists".
        conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def schema_lock(engine: sa.Engine) -> Iterator[None]:
    """Hold the schema lock while the block creates tables through another engine.

    For Optuna's RDB storage, which creates its tables on first use without a
    lock. On PostgreSQL this is the advisory lock the migrations take; on
    SQLite nothing is held (each DDL statement takes the file's write lock, and
    callers retry a collision).
    """
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.execute(sa.text(f"SELECT pg_advisory_lock({_LOCK_KEY})"))
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sa.text(f"SELECT pg_advisory_unlock({_LOCK_KEY})"))
            conn.commit()
