"""The one storage layer under the records database and the device leases.

Everything pattune keeps between processes lives in one database, named by a
storage URL (SQLite by default, PostgreSQL when several hosts share a study):
the records (``pt_*``), the device farm's leases and health (``farm_*``) and
Optuna's study tables. This package is what they share:

- :mod:`~pattune_common.storage.urls`: which URLs are accepted, their normal
  form (``postgresql://`` means psycopg 3) and :func:`redact_url`;
- :mod:`~pattune_common.storage.engine`: engines set up for several processes
  (SQLite WAL, busy timeout; PostgreSQL pre-ping, connect timeout) and
  :func:`open_storage`, which also brings the schema to head;
- :mod:`~pattune_common.storage.owners`: owner names (``host:pid:random``) and
  the liveness rule (a holder on this host whose process is gone is dead);
- :mod:`~pattune_common.storage.schema`: the one Alembic history of the
  ``pt_*`` and ``farm_*`` tables, upgraded under a lock.

Times are seconds. Every function is thread-safe. Bad URLs and unreachable
databases raise :class:`~pattune_common.errors.UserInputError` with one line
that hides the password and says the fix. This package imports nothing of
pattune's except :mod:`pattune_common`; the tables' ORM descriptions stay with
the packages that query them.
"""

from __future__ import annotations

from pattune_common.storage.engine import make_engine, open_storage, require_existing
from pattune_common.storage.owners import new_owner, owner_is_dead, process_gone, this_host
from pattune_common.storage.schema import (
    SCHEMA_VERSION,
    VERSION_TABLE,
    schema_lock,
    schema_version,
    upgrade,
)
from pattune_common.storage.urls import normalize_url, redact_url

__all__ = [
    "SCHEMA_VERSION",
    "VERSION_TABLE",
    "make_engine",
    "new_owner",
    "normalize_url",
    "open_storage",
    "owner_is_dead",
    "process_gone",
    "redact_url",
    "require_existing",
    "schema_lock",
    "schema_version",
    "this_host",
    "upgrade",
]
