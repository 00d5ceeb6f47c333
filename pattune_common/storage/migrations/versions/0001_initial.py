"""Initial records schema.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "pt_workers",
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("host", sa.String(128), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("heartbeat", sa.Float, nullable=False),
        sa.Column("info", sa.JSON, nullable=False),
    )
    op.create_table(
        "pt_device_types",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("arch", sa.String(32), nullable=False),
        sa.Column("info", sa.JSON, nullable=False),
    )
    op.create_table(
        "pt_devices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column(
            "device_type_id", sa.Integer, sa.ForeignKey("pt_device_types.id"), nullable=False
        ),
        sa.Column("info", sa.JSON, nullable=False),
    )
    op.create_table(
        "pt_layers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("weights_hash", sa.String(32), nullable=False, unique=True),
        sa.Column("signature", sa.String(512), nullable=False, index=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("stats", sa.JSON, nullable=False),
    )
    op.create_table(
        "pt_kernel_configs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("config_hash", sa.String(32), nullable=False, unique=True),
        sa.Column("config", sa.JSON, nullable=False),
    )
    op.create_table(
        "pt_builds",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("build_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("layer_id", sa.Integer, sa.ForeignKey("pt_layers.id"), nullable=False),
        sa.Column("config_id", sa.Integer, sa.ForeignKey("pt_kernel_configs.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        _ts("created", nullable=False),
    )
    op.create_table(
        "pt_cost_models",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "device_type_id", sa.Integer, sa.ForeignKey("pt_device_types.id"), nullable=False
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("n_train", sa.Integer, nullable=False),
        _ts("created", nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("blob", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("device_type_id", "version"),
    )
    op.create_table(
        "pt_measurements",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "device_type_id",
            sa.Integer,
            sa.ForeignKey("pt_device_types.id"),
            nullable=False,
            index=True,
        ),
        sa.Column(
            "layer_id", sa.Integer, sa.ForeignKey("pt_layers.id"), nullable=False, index=True
        ),
        sa.Column("config_id", sa.Integer, sa.ForeignKey("pt_kernel_configs.id"), nullable=False),
        sa.Column("build_id", sa.Integer, sa.ForeignKey("pt_builds.id")),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("claim_expires", sa.Float),
        sa.Column("device_name", sa.String(128)),
        sa.Column("median_s", sa.Float),
        sa.Column("spread", sa.Float),
        sa.Column("raw_times_s", sa.JSON),
        sa.Column("error", sa.Text),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("predicted", sa.Float),
        sa.Column("cost_model_version", sa.Integer),
        _ts("started"),
        _ts("finished"),
        sa.UniqueConstraint("device_type_id", "layer_id", "config_id"),
    )


def downgrade() -> None:
    for name in (
        "pt_measurements",
        "pt_cost_models",
        "pt_builds",
        "pt_kernel_configs",
        "pt_layers",
        "pt_devices",
        "pt_device_types",
        "pt_workers",
    ):
        op.drop_table(name)
