"""A revoked token, over HTTP, against several workers that may remember it."""

from __future__ import annotations

import time

import pytest
import requests

from tests.e2e.conftest import StartServer

pytestmark = pytest.mark.e2e


def _poll(url: str, secret: str) -> int:
    # A new connection each time: gunicorn's workers take turns accepting them.
    response = requests.get(
        url, headers={"Authorization": f"Bearer {secret}", "Connection": "close"}, timeout=10
    )
    return response.status_code


def test_a_token_revoked_through_the_api_is_refused_by_every_worker_right_after(
    start_server: StartServer,
) -> None:
    server = start_server(workers=4, threads=2, args=["--no-evaluation-worker"])
    secret = server.token("serving-prod", "reader")
    url = server.api("/models")
    # Every worker verifies it, and on PostgreSQL remembers it, once its listener is up.
    assert {_poll(url, secret) for _ in range(40)} == {200}
    time.sleep(0.5)
    assert {_poll(url, secret) for _ in range(40)} == {200}
    tokens = server.expect(server.session.get(server.api("/tokens")), 200)["items"]
    (token_id,) = [t["id"] for t in tokens if t["name"] == "serving-prod"]

    server.expect(server.session.delete(server.api(f"/tokens/{token_id}")), 200)
    time.sleep(0.1)

    assert [_poll(url, secret) for _ in range(40)] == [401] * 40
