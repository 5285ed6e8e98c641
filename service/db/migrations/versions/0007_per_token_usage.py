"""Who registered each run, and indexes to count a token's usage.

``runs.registered_by`` is the name of the token that registered the run (``""`` for
runs registered before), so the bytes a token has stored are one indexed sum; jobs
already carry their ``actor``, and an index on ``(actor, state)`` makes a token's
pending jobs one indexed count (``max_stored_bytes_per_token``,
``max_pending_jobs_per_token``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(
            sa.Column("registered_by", sa.String(100), nullable=False, server_default="")
        )
    op.create_index("ix_runs_registered_by", "runs", ["registered_by"])
    op.create_index("ix_jobs_actor_state", "jobs", ["actor", "state"])


def downgrade() -> None:
    op.drop_index("ix_jobs_actor_state", table_name="jobs")
    op.drop_index("ix_runs_registered_by", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("registered_by")
