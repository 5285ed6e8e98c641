"""Secrets never reach the server's log, with the access log (JSON lines) on."""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.e2e.conftest import ADMIN_TOKEN, StartServer, TimeoutSession

pytestmark = pytest.mark.e2e


def test_tokens_sent_in_the_url_or_the_header_never_appear_in_the_access_log(
    start_server: StartServer,
) -> None:
    server = start_server(env={"MODELREG_ACCESS_LOG": "true"})
    secret = server.token("log-reader", "reader")
    with TimeoutSession(token=None) as anonymous, TimeoutSession(token=secret) as reader:
        for parameter in ("token", "access_token"):
            for session in (anonymous, reader):
                got = session.get(server.api(f"/models?{parameter}={secret}"))
                assert got.status_code == 400, got.text
                assert secret not in got.text
            got = anonymous.post(server.api(f"/models?{parameter}={secret}"), json={"name": "n"})
            assert got.status_code == 400
        assert reader.get(server.api("/models")).status_code == 200
        assert reader.post(server.api("/models"), json={"name": "n"}).status_code == 403
        wrong = requests.get(
            server.api("/models"), headers={"Authorization": f"Bearer {secret}x"}, timeout=30
        )
        assert wrong.status_code == 401
        assert reader.get(server.api("/jobs")).status_code == 200

    # The access log is written as each request ends: wait for the last one.
    deadline = time.monotonic() + 10
    while '"path": "/api/v1/jobs"' not in server.log(tail=100_000) and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.log(tail=100_000)
    access = [
        json.loads(line)
        for line in log.splitlines()
        if line.startswith("{") and '"modelreg.access"' in line
    ]
    seen = {(d["method"], d["path"], d["status"]) for d in access}
    assert ("GET", "/api/v1/models", 400) in seen, log[-3000:]
    assert ("GET", "/api/v1/models", 200) in seen
    assert ("GET", "/api/v1/models", 401) in seen
    assert secret not in log
    assert secret[len("mr_") :] not in log
    assert ADMIN_TOKEN not in log
    assert "token=" not in log and "access_token" not in log
    assert server.expect(server.session.get(server.api("/models/n")), 404) is not None
