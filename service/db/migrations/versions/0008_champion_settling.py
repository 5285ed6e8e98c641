"""Champions remember the head of their ranking and whether a change is held back.

``best_run_id``/``best_known``: the best eligible run when the full ranking was last
computed, so that a new evaluation of one run is decided against it and the
incumbent alone. ``pending_evaluations``/``held_since``: evaluations still to come
for runs the policy admits, and since when a change of champion waits for them.
Existing rows start with ``best_known`` false: their next upkeep ranks in full.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("champions") as batch:
        batch.add_column(sa.Column("best_run_id", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("best_known", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("pending_evaluations", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("held_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("champions") as batch:
        batch.drop_column("held_since")
        batch.drop_column("pending_evaluations")
        batch.drop_column("best_known")
        batch.drop_column("best_run_id")
