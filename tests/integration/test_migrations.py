"""Alembic migrations on both backends: upgrade, downgrade to base, upgrade again."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from service.app import create_app
from service.config import load_settings
from service.db import migrate
from service.db.models import Base
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
