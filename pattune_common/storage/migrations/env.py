"""Alembic environment of pattune's storage database, run programmatically (never from an ini file).

:func:`pattune_common.storage.upgrade` passes an open connection, inside the
transaction that holds the schema lock, in ``config.attributes["connection"]``.
Revisions are written by hand; the tables' ORM descriptions live in the
packages that query them (``autotune.records._schema``, ``device_farm.lease``),
above this one, so a developer who autogenerates a revision passes their
MetaData in ``config.attributes["target_metadata"]``. Only ``pt_*`` and
``farm_*`` tables are ours: Optuna's tables in the same database are left alone.
"""

from __future__ import annotations

from alembic import context

from pattune_common.storage.schema import VERSION_TABLE


def _ours(name: str | None, type_: str, _parent: object) -> bool:
    return type_ != "table" or str(name).startswith(("pt_", "farm_"))


connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=context.config.attributes.get("target_metadata"),
    version_table=VERSION_TABLE,
    render_as_batch=True,
    include_name=_ours,
)
with context.begin_transaction():
    context.run_migrations()
