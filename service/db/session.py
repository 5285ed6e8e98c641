"""Engines and the unit of work.

SQLite: WAL journal, foreign keys on, and write transactions that start with
``BEGIN IMMEDIATE`` so two writers queue on the database lock instead of failing
when a read lock would have to be upgraded. Reads use a second engine whose
transactions start deferred, so readers never wait behind writers.

PostgreSQL: one engine; writers serialize on row locks (``FOR UPDATE``) taken by
the service layer. A database that is down or unreachable fails a request within
seconds (connect timeout, TCP keepalives, a bounded wait for a pooled connection)
instead of hanging it: the API answers 503 and the pools recover by themselves.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Row, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Executable

SQLITE_BUSY_TIMEOUT_MS = 30_000

# libpq settings of every PostgreSQL connection, unless the URL sets them itself.
# connect_timeout bounds a new connection (libpq's minimum is 2 s); the keepalives
# and tcp_user_timeout drop a connection whose peer vanished (a host gone, a network
# partition) instead of waiting on it for the kernel's default of hours.
PG_CONNECT_DEFAULTS: dict[str, int] = {
    "connect_timeout": 2,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 3,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,  # milliseconds
}
# How long a request waits for a pooled connection before it gets a 503.
POOL_TIMEOUT_S = 5


def prepare_sqlite_file(url: str) -> None:
    """The embedded database is the service's user's alone: its directory is created
    0700, and the database file 0600 before SQLite opens it (SQLite gives its -wal and
    -shm files the database file's mode). An existing file readable by others is
    tightened to 0600; an existing directory is left as it is."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    path = Path(parsed.database)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError, PermissionError):
                target = path.with_name(path.name + suffix)
                if target.stat().st_mode & 0o077:
                    target.chmod(0o600)
    finally:
        os.close(fd)


def _sqlite_engine(url: str, *, begin: str | None) -> Engine:
    prepare_sqlite_file(url)
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()

    if begin is not None:

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

    return engine


def _pg_connect_args(url: str) -> dict[str, Any]:
    """libpq's defaults above, for the libpq drivers; the URL's own settings win.

    >>> args = _pg_connect_args("postgresql+psycopg2://u@h/db?connect_timeout=10")
    >>> "connect_timeout" in args, args["keepalives_idle"]
    (False, 10)
    >>> _pg_connect_args("postgresql+pg8000://u@h/db")
    {}
    """
    parsed = make_url(url)
    if parsed.get_driver_name() not in ("psycopg2", "psycopg"):
        return {}
    return {key: value for key, value in PG_CONNECT_DEFAULTS.items() if key not in parsed.query}


class Database:
    """The engines of one process and a factory for units of work."""

    def __init__(self, url: str, *, settle_seconds: float | None = None) -> None:
        self.url = url
        # How long a change of champion may wait for evaluations still to come
        # (``modelreg.changes.champions.Settling``); every session carries it.
        self.settle_seconds = settle_seconds
        self.is_sqlite = make_url(url).get_backend_name() == "sqlite"
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, begin="BEGIN IMMEDIATE")
            self.read_engine = _sqlite_engine(url, begin="BEGIN")
            # A lone SELECT is consistent by itself: no BEGIN/ROLLBACK around it.
            self.lookup_engine = _sqlite_engine(url, begin=None)
        else:
            connect_args = _pg_connect_args(url)
            self.engine = create_engine(
                url,
                pool_pre_ping=True,
                pool_size=10,
                max_overflow=20,
                pool_timeout=POOL_TIMEOUT_S,
                connect_args=connect_args,
            )
            self.read_engine = self.engine
            # The serving layers' hot path: autocommit (no BEGIN/ROLLBACK round trips)
            # and no ping per checkout; a connection found dead is retried once.
            self.lookup_engine = create_engine(
                url,
                isolation_level="AUTOCOMMIT",
                pool_size=10,
                max_overflow=20,
                pool_recycle=3600,
                pool_timeout=POOL_TIMEOUT_S,
                connect_args=connect_args,
            )
        self._on_dispose: list[Callable[[], None]] = []
        self._writer = sessionmaker(self.engine, expire_on_commit=False, autoflush=True)
        self._reader = sessionmaker(self.read_engine, expire_on_commit=False)

    def session(self, *, write: bool = True) -> Session:
        session = (self._writer if write else self._reader)()
        if self.settle_seconds is not None:
            session.info["settle_seconds"] = self.settle_seconds
        return session

    @contextmanager
    def unit_of_work(self, *, write: bool = True) -> Iterator[Session]:
        """A session in one transaction; it commits only when the caller does.

        Leaving the block without ``session.commit()`` (or by an exception)
        rolls everything back.
        """
        session = self.session(write=write)
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    def lookup(self, statement: Executable, params: dict[str, Any]) -> Row[Any] | None:
        """Run one single-row SELECT on the lookup engine."""
        try:
            return self._lookup_once(statement, params)
        except DBAPIError as exc:
            # A dead pooled connection (the database restarted) invalidates the
            # pool; one fresh connection decides.
            if not exc.connection_invalidated:
                raise
        return self._lookup_once(statement, params)

    def _lookup_once(self, statement: Executable, params: dict[str, Any]) -> Row[Any] | None:
        with self.lookup_engine.connect() as conn:
            return conn.execute(statement, params).one_or_none()

    def ping(self) -> None:
        with self.read_engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def on_dispose(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` first when the engines are disposed (a listener's thread)."""
        self._on_dispose.append(callback)

    def dispose(self) -> None:
        for callback in self._on_dispose:
            callback()
        for engine in {self.engine, self.read_engine, self.lookup_engine}:
            engine.dispose()
