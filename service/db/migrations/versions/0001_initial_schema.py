"""Initial schema.

Models and PEP 440 versions (unique on the canonical version per model), runs
(unique run number per version), datasets and their revisions, evaluations (one per
run, dataset revision, metric and origin), environments, policies, pins, the stored
champions (unique per environment and model, and on the lookup keys) and their history.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-26 19:16:26.339698
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('datasets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('name_key', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_datasets')),
    sa.UniqueConstraint('name_key', name=op.f('uq_datasets_name_key'))
    )
    op.create_table('environments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('name_key', sa.String(length=100), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_environments')),
    sa.UniqueConstraint('name_key', name=op.f('uq_environments_name_key'))
    )
    op.create_table('registered_models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('name_key', sa.String(length=100), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_registered_models')),
    sa.UniqueConstraint('name_key', name=op.f('uq_registered_models_name_key'))
    )
    op.create_table('champion_history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('environment_id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('from_run_id', sa.Integer(), nullable=True),
    sa.Column('to_run_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('trigger', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('policy_revision', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], name=op.f('fk_champion_history_environment_id_environments')),
    sa.ForeignKeyConstraint(['model_id'], ['registered_models.id'], name=op.f('fk_champion_history_model_id_registered_models')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_champion_history'))
    )
    with op.batch_alter_table('champion_history', schema=None) as batch_op:
        batch_op.create_index('ix_champion_history_lookup', ['environment_id', 'model_id', 'id'], unique=False)

    op.create_table('dataset_revisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_dataset_revisions_dataset_id_datasets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_revisions')),
    sa.UniqueConstraint('dataset_id', 'revision', name=op.f('uq_dataset_revisions_dataset_id_revision')),
    sa.UniqueConstraint('dataset_id', 'sha256', name=op.f('uq_dataset_revisions_dataset_id_sha256'))
    )
    op.create_table('model_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.String(length=128), nullable=False),
    sa.Column('canonical_version', sa.String(length=128), nullable=False),
    sa.Column('is_prerelease', sa.Boolean(), nullable=False),
    sa.Column('stage', sa.String(length=16), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('next_run_number', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('stage_changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['registered_models.id'], name=op.f('fk_model_versions_model_id_registered_models')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_versions')),
    sa.UniqueConstraint('model_id', 'canonical_version', name=op.f('uq_model_versions_model_id_canonical_version'))
    )
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_versions_model_id'), ['model_id'], unique=False)

    op.create_table('policies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('environment_id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('versions', sa.String(length=512), nullable=False),
    sa.Column('stages', sa.JSON(), nullable=False),
    sa.Column('metric', sa.String(length=100), nullable=False),
    sa.Column('dataset_revision_id', sa.Integer(), nullable=False),
    sa.Column('direction', sa.String(length=3), nullable=False),
    sa.Column('min_value', sa.Float(), nullable=True),
    sa.Column('min_improvement', sa.Float(), nullable=False),
    sa.Column('allow_prereleases', sa.Boolean(), nullable=False),
    sa.Column('require_verified', sa.Boolean(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('updated_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_revision_id'], ['dataset_revisions.id'], name=op.f('fk_policies_dataset_revision_id_dataset_revisions')),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], name=op.f('fk_policies_environment_id_environments')),
    sa.ForeignKeyConstraint(['model_id'], ['registered_models.id'], name=op.f('fk_policies_model_id_registered_models')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_policies')),
    sa.UniqueConstraint('environment_id', 'model_id', name=op.f('uq_policies_environment_id_model_id'))
    )
    with op.batch_alter_table('policies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_policies_model_id'), ['model_id'], unique=False)

    op.create_table('runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('artifact_sha256', sa.String(length=64), nullable=False),
    sa.Column('artifact_size', sa.BigInteger(), nullable=False),
    sa.Column('artifact_format', sa.String(length=32), nullable=False),
    sa.Column('artifact_filename', sa.String(length=255), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('source', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'], name=op.f('fk_runs_version_id_model_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runs')),
    sa.UniqueConstraint('version_id', 'number', name=op.f('uq_runs_version_id_number')),
    sqlite_autoincrement=True,
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_runs_artifact_sha256'), ['artifact_sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_runs_version_id'), ['version_id'], unique=False)

    op.create_table('champions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('environment_id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('environment_key', sa.String(length=100), nullable=False),
    sa.Column('model_key', sa.String(length=100), nullable=False),
    sa.Column('environment', sa.String(length=100), nullable=False),
    sa.Column('model', sa.String(length=100), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('version', sa.String(length=128), nullable=True),
    sa.Column('stage', sa.String(length=16), nullable=True),
    sa.Column('run_number', sa.Integer(), nullable=True),
    sa.Column('metric', sa.String(length=100), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('dataset', sa.String(length=112), nullable=False),
    sa.Column('artifact_sha256', sa.String(length=64), nullable=True),
    sa.Column('artifact_size', sa.BigInteger(), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('policy_revision', sa.Integer(), nullable=False),
    sa.Column('selected_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], name=op.f('fk_champions_environment_id_environments')),
    sa.ForeignKeyConstraint(['model_id'], ['registered_models.id'], name=op.f('fk_champions_model_id_registered_models')),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_champions_run_id_runs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_champions')),
    sa.UniqueConstraint('environment_id', 'model_id', name=op.f('uq_champions_environment_id_model_id')),
    sa.UniqueConstraint('environment_key', 'model_key', name='uq_champions_lookup')
    )
    with op.batch_alter_table('champions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_champions_model_id'), ['model_id'], unique=False)

    op.create_table('evaluations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('dataset_revision_id', sa.Integer(), nullable=False),
    sa.Column('metric', sa.String(length=100), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_revision_id'], ['dataset_revisions.id'], name=op.f('fk_evaluations_dataset_revision_id_dataset_revisions')),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_evaluations_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_evaluations')),
    sa.UniqueConstraint('run_id', 'dataset_revision_id', 'metric', 'source', name=op.f('uq_evaluations_run_id_dataset_revision_id_metric_source'))
    )
    with op.batch_alter_table('evaluations', schema=None) as batch_op:
        batch_op.create_index('ix_evaluations_revision_metric', ['dataset_revision_id', 'metric'], unique=False)

    op.create_table('pins',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('environment_id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], name=op.f('fk_pins_environment_id_environments')),
    sa.ForeignKeyConstraint(['model_id'], ['registered_models.id'], name=op.f('fk_pins_model_id_registered_models')),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_pins_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pins')),
    sa.UniqueConstraint('environment_id', 'model_id', name=op.f('uq_pins_environment_id_model_id'))
    )


def downgrade() -> None:
    op.drop_table('pins')
    with op.batch_alter_table('evaluations', schema=None) as batch_op:
        batch_op.drop_index('ix_evaluations_revision_metric')

    op.drop_table('evaluations')
    with op.batch_alter_table('champions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_champions_model_id'))

    op.drop_table('champions')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_runs_version_id'))
        batch_op.drop_index(batch_op.f('ix_runs_artifact_sha256'))

    op.drop_table('runs')
    with op.batch_alter_table('policies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_policies_model_id'))

    op.drop_table('policies')
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_model_versions_model_id'))

    op.drop_table('model_versions')
    op.drop_table('dataset_revisions')
    with op.batch_alter_table('champion_history', schema=None) as batch_op:
        batch_op.drop_index('ix_champion_history_lookup')

    op.drop_table('champion_history')
    op.drop_table('registered_models')
    op.drop_table('environments')
    op.drop_table('datasets')
