"""The isolation level an evaluation job ran at.

``jobs.isolation``: ``strict`` (the bubblewrap sandbox) or ``process`` (a forked
child with rlimits only), written when the job finishes; empty for jobs that
finished before this column existed, or that never ran a model.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("isolation", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("isolation")
