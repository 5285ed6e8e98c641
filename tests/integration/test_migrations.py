"""Alembic migrations on both backends: upgrade, downgrade to base, upgrade again;
concurrent upgrades of a fresh database (the migration lock)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from modelreg.app import create_app
from modelreg.config import load_settings
from modelreg.db import migrate
from modelreg.db.models import Base
from tests.conftest import PG_ADMIN_URL, drop_postgres_database
from tests.integration.conftest import ADMIN_TOKEN, authorized


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        return migrate.current_revision(engine)
    finally:
        engine.dispose()


def test_a_migrated_database_is_at_the_head_revision(fresh_database_url: str) -> None:
    assert migrate.head_revision() is not None
    assert _revision(fresh_database_url) == migrate.head_revision()
    assert migrate.is_up_to_date(fresh_database_url)
    assert set(Base.metadata.tables) <= _tables(fresh_database_url)


def test_the_migrated_schema_matches_the_models(fresh_database_url: str) -> None:
    engine = create_engine(fresh_database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_downgrade_to_base_removes_every_table_and_upgrade_restores_them(
    fresh_database_url: str, tmp_path: Path
) -> None:
    migrate.downgrade(fresh_database_url, "base")
    assert _revision(fresh_database_url) is None
    assert not migrate.is_up_to_date(fresh_database_url)
    assert not set(Base.metadata.tables) & _tables(fresh_database_url)

    migrate.upgrade(fresh_database_url)
    assert _revision(fresh_database_url) == migrate.head_revision()
    assert set(Base.metadata.tables) <= _tables(fresh_database_url)

    # The re-created schema serves requests.
    app = create_app(
        load_settings(
            environ={},
            data_dir=str(tmp_path / "data"),
            database_url=fresh_database_url,
            artifact_root=str(tmp_path / "artifacts"),
            admin_token=ADMIN_TOKEN,
        )
    )
    try:
        client = authorized(app.test_client())
        assert client.post("/api/v1/models", json={"name": "m"}).status_code == 201
        assert client.get("/api/v1/models/m").get_json()["name"] == "m"
    finally:
        app.extensions["modelreg"].db.dispose()


def test_upgrading_an_up_to_date_database_changes_nothing(fresh_database_url: str) -> None:
    before = _tables(fresh_database_url)
    migrate.upgrade(fresh_database_url)
    assert _tables(fresh_database_url) == before
    assert _revision(fresh_database_url) == migrate.head_revision()


def test_an_empty_sqlite_file_is_migrated_from_scratch(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'fresh.db'}"
    assert not migrate.is_up_to_date(url)
    migrate.upgrade(url)
    assert migrate.is_up_to_date(url)
    assert set(Base.metadata.tables) <= _tables(url)


# -- the migration lock: replicas that start at once -------------------------------------

UPGRADERS = 4
LOCK_WAIT_S = 60.0


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all (not even ``alembic_version``)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    request.getfixturevalue("postgres_template")  # skips (or fails under CI) without PostgreSQL
    name = f"modelreg_test_empty_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        drop_postgres_database(url)


def test_concurrent_upgrades_of_a_fresh_database_all_succeed_and_migrate_once(
    empty_database_url: str, tmp_path: Path
) -> None:
    url = empty_database_url
    modelreg = Path(sys.executable).with_name("modelreg")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
    env["MODELREG_DATABASE_URL"] = url
    logs = [tmp_path / f"upgrade-{i}.log" for i in range(UPGRADERS)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # The test holds the lock until every replica waits for it, so the four
        # upgrades start at the same moment, on a database none of them created.
        with migrate.migration_lock(url):
            for log in logs:
                with log.open("wb") as out:
                    procs.append(
                        subprocess.Popen(
                            [str(modelreg), "db", "upgrade"],
                            env=env,
                            cwd=tmp_path,
                            stdin=subprocess.DEVNULL,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                        )
                    )
            deadline = time.monotonic() + LOCK_WAIT_S
            while not all("waiting for the migration lock" in log.read_text() for log in logs):
                assert time.monotonic() < deadline, [log.read_text() for log in logs]
                assert all(p.poll() is None for p in procs), [log.read_text() for log in logs]
                time.sleep(0.05)
            assert _tables(url) == set(), "nothing may migrate while the lock is held"
        codes = [p.wait(timeout=LOCK_WAIT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    assert codes == [0] * UPGRADERS, [log.read_text() for log in logs]
    assert _revision(url) == migrate.head_revision()
    assert set(Base.metadata.tables) <= _tables(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
            assert list(versions) == [migrate.head_revision()]
    finally:
        engine.dispose()
