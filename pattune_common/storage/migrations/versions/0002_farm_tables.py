"""The device farm's lease and health tables join the migrations.

Until this revision ``device_farm.lease`` created ``farm_leases`` and
``farm_device_health`` itself (SQLAlchemy ``create_all``), so a database
written by that version may already hold them, with live leases and health
records: each table is created only where it is missing, and an existing one
is kept as it is (its columns are the ones below).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "farm_leases" not in existing:
        op.create_table(
            "farm_leases",
            sa.Column("device", sa.String(128), primary_key=True),
            sa.Column("holder", sa.String(255), nullable=False),
            sa.Column("token", sa.String(64), nullable=False),
            sa.Column("acquired_at", sa.Float, nullable=False),  # database-clock Unix seconds
            sa.Column("expires_at", sa.Float, nullable=False),
        )
    if "farm_device_health" not in existing:
        op.create_table(
            "farm_device_health",
            sa.Column("device", sa.String(128), primary_key=True),
            sa.Column("failures", sa.Integer, nullable=False),
            sa.Column("quarantined_until", sa.Float, nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False),
        )


def downgrade() -> None:
    # Back to 0001, when the farm made its own tables: drop them (and their rows).
    op.drop_table("farm_device_health")
    op.drop_table("farm_leases")
