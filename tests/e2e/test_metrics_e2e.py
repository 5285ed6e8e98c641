"""``/metrics`` of a real ``modelreg serve`` with two worker processes: whichever worker
answers a scrape, it reports what every worker served (prometheus-client's multiprocess
mode); and the access log's JSON lines carry the request ids clients send."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import REQUEST_TIMEOUT_S, Server, StartServer

pytestmark = pytest.mark.e2e

CHAMPION_ROUTE = "/api/v1/environments/<env>/models/<model>"
REQUESTS = 60
SCRAPES = 20


def _champion(server: Server) -> None:
    s = server.session
    server.expect(s.post(server.api("/models"), json={"name": "AImodel"}), 201)
    server.expect(s.post(server.api("/models/AImodel/versions"), json={"version": "1.0"}), 201)
    moved = s.post(
        server.api("/models/AImodel/versions/1.0/transitions"),
        json={"stage": "Staging", "reason": "e2e"},
    )
    server.expect(moved, 200)
    digest = "0" * 64
    server.expect(s.post(server.api("/datasets"), json={"name": "holdout", "sha256": digest}), 201)
    server.expect(s.put(server.api("/environments/PROD"), json={}), 201)
    policy = {"versions": "", "stages": ["Staging"], "metric": "f1", "dataset": "holdout"}
    server.expect(
        s.put(server.api("/environments/PROD/policies/AImodel"), json={**policy, "reason": "e2e"}),
        201,
    )
    metadata = {"evaluations": [{"dataset": "holdout", "metrics": {"f1": 0.9}}]}
    server.expect(server.register_run("AImodel", "1.0", b"model", metadata), 201)


def _scrape(server: Server, token: str, request_id: str) -> dict[tuple[str, frozenset[Any]], float]:
    # A connection of its own each time, so that scrapes land on either worker.
    response = requests.get(
        f"{server.url}/metrics",
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": request_id},
        timeout=REQUEST_TIMEOUT_S,
    )
    assert response.status_code == 200, response.text[:500]
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def _access_lines(server: Server) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in server.log(tail=100_000).splitlines()
        if line.startswith("{") and '"modelreg.access"' in line
    ]


def test_any_worker_reports_every_workers_requests_and_logs_carry_request_ids(
    start_server: StartServer,
) -> None:
    server = start_server(workers=2, env={"MODELREG_ACCESS_LOG": "true"})
    _champion(server)
    reader = server.token("prometheus", "reader")
    assert requests.get(f"{server.url}/metrics", timeout=REQUEST_TIMEOUT_S).status_code == 401

    tag = uuid.uuid4().hex[:8]

    def lookup(i: int) -> int:
        # New connection per request (no session): both workers get some of them.
        response = requests.get(
            server.api("/environments/PROD/models/AImodel"),
            headers={"Authorization": f"Bearer {reader}", "X-Request-ID": f"e2e-{tag}-{i}"},
            timeout=REQUEST_TIMEOUT_S,
        )
        assert response.headers["X-Request-ID"] == f"e2e-{tag}-{i}"
        return response.status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert list(pool.map(lookup, range(REQUESTS))) == [200] * REQUESTS

    count = (
        "modelreg_http_request_duration_seconds_count",
        frozenset({"route": CHAMPION_ROUTE, "method": "GET", "status": "200"}.items()),
    )
    changes = (
        "modelreg_champion_changes_total",
        frozenset({"environment": "PROD", "model": "AImodel"}.items()),
    )
    for i in range(SCRAPES):
        samples = _scrape(server, reader, f"scrape-{tag}-{i}")
        assert samples.get(count) == REQUESTS, sorted(k for k in samples if k[0] == count[0])
        assert samples.get(changes) == 1
        assert samples[("modelreg_evaluation_jobs", frozenset({("state", "pending")}))] == 0

    # The access log is written as each request ends: wait for the last scrape's line.
    deadline = time.monotonic() + 10
    while (
        f"scrape-{tag}-{SCRAPES - 1}" not in server.log(tail=100_000)
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    lines = _access_lines(server)
    served = {d["request_id"]: d for d in lines if d["request_id"].startswith(f"e2e-{tag}-")}
    assert len(served) == REQUESTS, lines[-5:]
    line = served[f"e2e-{tag}-0"]
    assert line["route"] == CHAMPION_ROUTE
    assert line["path"] == "/api/v1/environments/PROD/models/AImodel"
    assert (line["method"], line["status"], line["actor"]) == ("GET", 200, "prometheus")
    assert line["duration_ms"] > 0
    scrapes = [d for d in lines if d["request_id"].startswith(f"scrape-{tag}-")]
    assert len(scrapes) == SCRAPES
    # Both workers served lookups, and every scrape (whichever worker answered it: the
    # kernel decides, so it may be the same one each time) counted all of them: the
    # numbers are merged across processes, not one worker's own.
    assert len({d["pid"] for d in served.values()}) == 2, {d["pid"] for d in served.values()}
