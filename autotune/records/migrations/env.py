"""Alembic environment for pattune's records (run programmatically, never from an ini file)."""

from __future__ import annotations

from alembic import context

from autotune.records._schema import Base

VERSION_TABLE = "pt_alembic_version"

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,
    include_name=lambda name, type_, _parent: type_ != "table" or str(name).startswith("pt_"),
)
with context.begin_transaction():
    context.run_migrations()
