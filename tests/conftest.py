"""Fixtures shared by every test depth.

``database_url`` is parametrized over SQLite and PostgreSQL. Each test gets a
database of its own: a copy of a migrated SQLite file, or a PostgreSQL database
created from a migrated template on 127.0.0.1:5432 (dropped afterwards). When
PostgreSQL is unreachable the PostgreSQL cases are skipped, except under CI
(``CI`` set), where they fail: CI must never pass on SQLite alone.
"""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from modelreg.db import migrate
from modelreg.db.models import Base

PG_ADMIN_URL = os.environ.get(
    "MODELREG_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
_RUN_ID = uuid.uuid4().hex[:8]
_counter = itertools.count()


def _pg_admin() -> Any:
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated PostgreSQL database that per-test databases are cloned from."""
    try:
        admin = _pg_admin()
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is unreachable at {PG_ADMIN_URL} and CI is set: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}")
    name = f"modelreg_tpl_{_RUN_ID}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield name
    finally:  # also when the migration itself fails: leave no stray database
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


def new_postgres_database(template: str) -> str:
    name = f"modelreg_test_{_RUN_ID}_{next(_counter)}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    admin.dispose()
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


_TABLES = [t.name for t in reversed(Base.metadata.sorted_tables)]


@pytest.fixture(scope="session")
def postgres_shared(postgres_template: str) -> Iterator[Any]:
    """One migrated PostgreSQL database per test process, emptied before each test."""
    url = new_postgres_database(postgres_template)
    engine = create_engine(url, poolclass=NullPool)
    yield url, engine
    engine.dispose()
    drop_postgres_database(url)


def _empty(engine: Any) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(_TABLES)} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Iterator[str]:
    """A migrated database with no rows: a fresh SQLite file, or the emptied shared
    PostgreSQL database (creating one per test costs ~0.4 s; emptying it ~10 ms)."""
    if request.param == "sqlite":
        path = tmp_path / "modelreg.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    url, engine = request.getfixturevalue("postgres_shared")
    _empty(engine)
    yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Iterator[str]:
    """A migrated database of the test's own, for tests that change the schema."""
    if request.param == "sqlite":
        path = tmp_path / "modelreg.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    url = new_postgres_database(request.getfixturevalue("postgres_template"))
    yield url
    drop_postgres_database(url)
