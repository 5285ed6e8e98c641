"""Remembered tokens (service/web/token_cache.py): fewer reads, and still refused at once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, event, text
from sqlalchemy.pool import NullPool

from tests.integration.conftest import Api

MODELS = "/api/v1/models"


def _token(api: Api, role: str = "reader") -> dict[str, str]:
    made = api.post("/tokens", {"name": f"poller-{time.monotonic_ns()}", "role": role})
    assert made.status_code == 201, made.get_json()
    return {"Authorization": f"Bearer {made.get_json()['secret']}", "id": made.get_json()["id"]}


def _token_reads(app: Flask) -> Iterator[list[str]]:
    """The statements that read api_tokens on the lookup engine, as they happen."""
    seen: list[str] = []
    engine = app.extensions["modelreg"].db.lookup_engine

    def record(*args: Any) -> None:
        statement = args[2]
        if "api_tokens" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _listening(app: Flask) -> bool:
    return bool(app.extensions["modelreg"].token_cache.listening)


def _remembered(
    app: Flask, api: Api, database_url: str, role: str = "reader"
) -> tuple[dict[str, str], dict[str, str], FlaskClient]:
    """A token used once with the listener up (PostgreSQL): ``(token, headers, client)``."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the cache and its notifications are PostgreSQL's")
    token = _token(api, role=role)
    headers = {"Authorization": token["Authorization"]}
    client = app.test_client()
    assert client.get(MODELS, headers=headers).status_code == 200
    assert _until(lambda: _listening(app))
    return token, headers, client


def test_a_polling_token_is_read_once_then_remembered_on_postgresql_only(
    app: Flask, api: Api, database_url: str
) -> None:
    token = _token(api)
    headers = {"Authorization": token["Authorization"]}
    client = app.test_client()
    assert client.get(MODELS, headers=headers).status_code == 200  # starts the listener
    on_postgresql = database_url.startswith("postgresql")
    if on_postgresql:
        assert _until(lambda: _listening(app))

    for reads in _token_reads(app):
        for _ in range(20):
            assert client.get(MODELS, headers=headers).status_code == 200
        # SQLite: every request reads its token (cheap in-process, and nothing to
        # notify other processes); PostgreSQL: the first after the listener connected.
        assert len(reads) == (1 if on_postgresql else 20)


def test_a_token_revoked_through_the_api_is_refused_on_the_very_next_request(
    app: Flask, api: Api
) -> None:
    token = _token(api)
    headers = {"Authorization": token["Authorization"]}
    client = app.test_client()
    for _ in range(3):
        assert client.get(MODELS, headers=headers).status_code == 200

    assert api.delete(f"/tokens/{token['id']}").status_code == 200

    assert client.get(MODELS, headers=headers).status_code == 401


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE api_tokens SET revoked_at = now()",
        "UPDATE api_tokens SET expires_at = now() - interval '1 second'",
        "UPDATE api_tokens SET role = 'reader'",
        "DELETE FROM api_tokens",
    ],
)
def test_a_token_changed_by_hand_in_sql_is_no_longer_trusted_right_after_the_commit(
    app: Flask, api: Api, database_url: str, change: str
) -> None:
    token, headers, client = _remembered(app, api, database_url, role="release")
    assert client.put("/api/v1/environments/B", json={}, headers=headers).status_code == 201

    engine = create_engine(database_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text(f"{change} WHERE id = :id"), {"id": token["id"]})
    engine.dispose()

    # The notification is delivered at the commit; the listener thread acts on it as
    # soon as it gets the interpreter (milliseconds): 0.1 s is a generous bound.
    time.sleep(0.1)
    got = client.put("/api/v1/environments/C", json={}, headers=headers)

    assert got.status_code in (401, 403), got.get_json()
    assert api.get("/environments/C").status_code == 404


def test_a_change_that_rolls_back_notifies_nobody_and_the_token_keeps_working(
    app: Flask, api: Api, database_url: str
) -> None:
    token, headers, client = _remembered(app, api, database_url)

    engine = create_engine(database_url, poolclass=NullPool)
    with engine.connect() as conn:
        conn.execute(text("UPDATE api_tokens SET revoked_at = now() WHERE id = :id"), token)
        conn.rollback()
    engine.dispose()

    time.sleep(0.2)
    assert client.get(MODELS, headers=headers).status_code == 200


def test_disposing_the_app_stops_its_listener_and_closes_its_connection(
    app: Flask, api: Api, database_url: str
) -> None:
    _remembered(app, api, database_url)
    engine = create_engine(database_url, poolclass=NullPool)

    def listeners() -> int:
        with engine.connect() as conn:
            query = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%%'"
            return int(conn.execute(text(query)).scalar_one())

    assert listeners() == 1
    app.extensions["modelreg"].db.dispose()

    assert not _listening(app)
    assert _until(lambda: listeners() == 0)
    engine.dispose()
