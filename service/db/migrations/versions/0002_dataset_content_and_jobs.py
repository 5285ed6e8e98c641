"""Dataset content and evaluation jobs.

Dataset revisions may now carry their content (stored in the artifact store under its
sha256) with the target column, the task, the format and the shape; revisions that
existed before have none (``has_content`` false) and keep serving reported metrics.
``jobs`` holds background work (server-side evaluations) that workers claim with row
locks and leases.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 23:44:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('dataset_revision_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('trigger', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('available_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claim_token', sa.String(length=32), nullable=True),
    sa.Column('worker', sa.String(length=255), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_revision_id'], ['dataset_revisions.id'], name=op.f('fk_jobs_dataset_revision_id_dataset_revisions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_claim', ['state', 'available_at'], unique=False)
        batch_op.create_index('ix_jobs_run_revision', ['run_id', 'dataset_revision_id'], unique=False)

    with op.batch_alter_table('dataset_revisions', schema=None) as batch_op:
        # Existing revisions were registered by digest alone: no content.
        batch_op.add_column(sa.Column('has_content', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('target', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('task', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('content_format', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('size', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('row_count', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('columns', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('dataset_revisions', schema=None) as batch_op:
        batch_op.drop_column('columns')
        batch_op.drop_column('row_count')
        batch_op.drop_column('size')
        batch_op.drop_column('content_format')
        batch_op.drop_column('task')
        batch_op.drop_column('target')
        batch_op.drop_column('has_content')

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_run_revision')
        batch_op.drop_index('ix_jobs_claim')

    op.drop_table('jobs')
