"""Notify listeners of every change to ``api_tokens`` (PostgreSQL).

A statement-level trigger sends ``NOTIFY modelreg_tokens`` after any insert, update,
delete or truncate of ``api_tokens``, whoever issues it. Processes that remember
verified tokens (``modelreg.web.token_cache``) listen and forget them. The notification is
delivered when the transaction commits, and not at all if it rolls back. SQLite has
no notifications and no cache: nothing to do there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 04:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION modelreg_tokens_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('modelreg_tokens', TG_OP);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER api_tokens_changed
        AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_tokens
        FOR EACH STATEMENT EXECUTE FUNCTION modelreg_tokens_changed()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS api_tokens_changed ON api_tokens")
    op.execute("DROP FUNCTION IF EXISTS modelreg_tokens_changed()")
