"""Allowed artifact formats: per policy, and on the stored champion for serving layers.

``policies.formats`` lists the artifact formats a run may have to be chosen (empty:
any). The champion row repeats its run's ``artifact_format`` and its policy's
formats, so that the champion lookup stays one indexed read and a serving layer can
refuse a format before it downloads anything. Existing champions take their run's
format; existing policies allow any format, as before.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("policies") as batch_op:
        batch_op.add_column(
            sa.Column("formats", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
    with op.batch_alter_table("champions") as batch_op:
        batch_op.add_column(sa.Column("artifact_format", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("allowed_formats", sa.JSON(), nullable=True))
    op.execute(
        "UPDATE champions SET artifact_format = "
        "(SELECT runs.artifact_format FROM runs WHERE runs.id = champions.run_id)"
    )
    op.execute("UPDATE champions SET allowed_formats = '[]'")


def downgrade() -> None:
    with op.batch_alter_table("champions") as batch_op:
        batch_op.drop_column("allowed_formats")
        batch_op.drop_column("artifact_format")
    with op.batch_alter_table("policies") as batch_op:
        batch_op.drop_column("formats")
