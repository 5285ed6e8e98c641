"""Alembic, configured in code: no ``alembic.ini`` to ship or to find.

Upgrades and downgrades hold a migration lock, so replicas that start at once
migrate one after the other (the later ones find the schema current and change
nothing): on PostgreSQL a session-level advisory lock on a separate connection,
held until the migration ended; on SQLite an exclusive ``fcntl`` lock on
``<database>.migrate.lock`` beside the database file. Both are released by the
operating system or the server when the process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from modelreg.db.session import prepare_sqlite_file

MIGRATIONS = Path(__file__).with_name("migrations")
# pg_advisory_lock's key for schema migrations: fixed, and above the 60-bit range of
# the per-digest artifact locks (modelreg.storage.blobs), so it never collides with one.
MIGRATION_LOCK_KEY = 0x6D6F64656C726567  # "modelreg"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation would mangle '%' in passwords.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _ensure_sqlite_dir(url: str) -> None:
    prepare_sqlite_file(url)


@contextlib.contextmanager
def migration_lock(url: str) -> Iterator[None]:
    """Hold the database's migration lock (waiting for it) for the block."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
        with _file_lock(Path(f"{parsed.database}.migrate.lock"), url):
            yield
    elif backend == "postgresql":
        with _advisory_lock(url):
            yield
    else:  # an in-memory SQLite database is private: nobody to wait for
        yield


@contextlib.contextmanager
def _file_lock(path: Path, url: str) -> Iterator[None]:
    # Beside the database, and like it the service's user's alone (empty, but tidy).
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _waiting(url)
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


@contextlib.contextmanager
def _advisory_lock(url: str) -> Iterator[None]:
    # A connection of its own, outside Alembic's transaction: the lock is the
    # session's until it is unlocked or the connection ends (also by a crash).
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            key = {"key": MIGRATION_LOCK_KEY}
            if not conn.execute(text("SELECT pg_try_advisory_lock(:key)"), key).scalar():
                _waiting(url)
                conn.execute(text("SELECT pg_advisory_lock(:key)"), key)
            yield
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), key)
    finally:
        engine.dispose()  # closing the connection releases the lock in any case


def _waiting(url: str) -> None:
    safe = make_url(url).render_as_string(hide_password=True)
    print(f"waiting for the migration lock of {safe} (another migration runs)", file=sys.stderr)


def upgrade(url: str, revision: str = "head") -> None:
    _ensure_sqlite_dir(url)
    with migration_lock(url):
        command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    with migration_lock(url):
        command.downgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_up_to_date(url: str) -> bool:
    _ensure_sqlite_dir(url)
    engine = create_engine(url)
    try:
        return current_revision(engine) == head_revision()
    finally:
        engine.dispose()
