"""The per-layer detail of each trial moves from Optuna's trial attributes to a table.

A trial used to carry its candidate (the pattern set, a rate per layer) and its
per-layer results (config, latency, default latency, ... per layer: kilobytes of
JSON) as user attributes, which optuna-dashboard shows as one long string. From
this revision the trial keeps short scalars (latency, accuracy, K, sums, counts)
and this table keeps the detail, one row per (study, trial number). Trials
written before keep their attributes; the readers take either.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pt_trial_details",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study", sa.String(512), nullable=False),
        sa.Column("trial_number", sa.Integer, nullable=False),
        sa.Column("candidate", sa.JSON, nullable=True),
        sa.Column("layers", sa.JSON, nullable=True),
        sa.Column("updated", sa.Float, nullable=False),  # epoch seconds
        sa.UniqueConstraint("study", "trial_number"),
    )


def downgrade() -> None:
    op.drop_table("pt_trial_details")
