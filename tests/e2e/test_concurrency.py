"""Many clients at the same moment against a multi-process server.

Registrations of one version must number runs 1..N without gap or twin, and
recomputations of one (environment, model) must be serialized so the stored
champion and its history never lose an update. PostgreSQL is the backend where
writers really run in parallel (``--workers 4``); SQLite serializes writers and
must still answer every request.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.e2e.conftest import Server, StartServer

pytestmark = pytest.mark.e2e

CLIENTS = 32
BARRIER_TIMEOUT_S = 60.0
MODEL = "Concurrent"
DATASET = "holdout"
DATASET_SHA = "ab" * 32


def run_together(
    server: Server, action: Callable[[requests.Session, int], requests.Response]
) -> list[requests.Response]:
    """Run ``action(session, i)`` for i in 0..CLIENTS-1, all released by one barrier.

    Each client has a session (connection) of its own, opened before the barrier
    so the requests leave as close together as possible.
    """
    sessions = [server.new_session() for _ in range(CLIENTS)]
    for s in sessions:  # warm every connection so the barrier releases requests, not handshakes
        server.expect(s.get(f"{server.url}/healthz"), 200)
    barrier = threading.Barrier(CLIENTS, timeout=BARRIER_TIMEOUT_S)

    def client(i: int) -> requests.Response:
        barrier.wait()
        return action(sessions[i], i)

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        futures = [pool.submit(client, i) for i in range(CLIENTS)]
        return [f.result(timeout=BARRIER_TIMEOUT_S + 120) for f in futures]


def describe_failures(server: Server, responses: list[requests.Response], status: int) -> str:
    bad = [
        f"{r.request.method} {r.url} -> {r.status_code}: {r.text[:300]}"
        for r in responses
        if r.status_code != status
    ]
    return (
        f"{len(bad)} of {len(responses)} not {status}:\n"
        + "\n".join(bad[:10])
        + (f"\n--- server log ---\n{server.log(120)}")
    )


def setup_model(server: Server, *, stage: str | None = None) -> None:
    s = server.session
    server.expect(s.post(server.api("/models"), json={"name": MODEL}), 201)
    server.expect(s.post(server.api(f"/models/{MODEL}/versions"), json={"version": "1.0"}), 201)
    if stage == "Production":
        for step in ("Staging", "Production"):
            server.expect(
                s.post(
                    server.api(f"/models/{MODEL}/versions/1.0/transitions"),
                    json={"stage": step, "reason": "e2e"},
                ),
                200,
            )


def registration_race(server: Server) -> None:
    setup_model(server)

    def register(session: requests.Session, i: int) -> requests.Response:
        return server.register_run(
            MODEL,
            "1.0",
            f"artifact of client {i}".encode(),
            {"params": {"client": i}},
            filename=f"client-{i}.joblib",
            session=session,
        )

    responses = run_together(server, register)
    assert all(r.status_code == 201 for r in responses), describe_failures(server, responses, 201)
    bodies = [r.json() for r in responses]
    assert sorted(b["number"] for b in bodies) == list(range(1, CLIENTS + 1))
    assert len({b["id"] for b in bodies}) == CLIENTS
    # What each client got back is what the registry keeps.
    listed = server.expect(
        server.session.get(server.api(f"/models/{MODEL}/versions/1.0/runs?page_size=100")), 200
    )
    assert {r["id"]: (r["number"], r["params"]["client"]) for r in listed["items"]} == {
        b["id"]: (b["number"], b["params"]["client"]) for b in bodies
    }


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_thirty_two_simultaneous_registrations_on_postgresql_get_run_numbers_one_to_thirty_two(
    start_server: StartServer,
) -> None:
    registration_race(start_server(workers=4))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_thirty_two_simultaneous_registrations_on_sqlite_all_succeed_numbered_one_to_thirty_two(
    start_server: StartServer,
) -> None:
    registration_race(start_server(workers=2))


def history_chain(server: Server, env: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(100):  # bounded paging
        params: dict[str, Any] = {"page_size": 10}
        if token:
            params["page_token"] = token
        page = server.expect(
            server.session.get(
                server.api(f"/environments/{env}/models/{MODEL}/history"), params=params
            ),
            200,
        )
        items.extend(page["items"])
        token = page["next_page_token"]
        if not token:
            return items
    pytest.fail("history paging did not end within 100 pages")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_simultaneous_evaluations_leave_the_best_run_as_champion_with_an_unbroken_history(
    start_server: StartServer,
) -> None:
    server = start_server(workers=4)
    s = server.session
    setup_model(server, stage="Production")
    server.expect(
        s.post(server.api("/datasets"), json={"name": DATASET, "sha256": DATASET_SHA}), 201
    )
    run_ids = [
        server.expect(server.register_run(MODEL, "1.0", f"model {i}".encode(), {}), 201)["id"]
        for i in range(CLIENTS)
    ]
    server.expect(s.put(server.api("/environments/PROD"), json={}), 201)
    server.expect(
        s.put(
            server.api(f"/environments/PROD/policies/{MODEL}"),
            json={
                "versions": "",
                "stages": ["Production"],
                "metric": "f1",
                "dataset": DATASET,
                "reason": "e2e",
            },
        ),
        201,
    )
    # Distinct values in a shuffled order, so the best arrives at a random moment.
    values = [round(0.5 + i / 100, 2) for i in range(CLIENTS)]
    random.Random(20240601).shuffle(values)
    value_of = dict(zip(run_ids, values, strict=True))

    def evaluate(session: requests.Session, i: int) -> requests.Response:
        return session.post(
            server.api(f"/runs/{run_ids[i]}/evaluations"),
            json={"dataset": DATASET, "metrics": {"f1": values[i]}},
        )

    responses = run_together(server, evaluate)
    assert all(r.status_code == 201 for r in responses), describe_failures(server, responses, 201)

    best_run = max(run_ids, key=lambda r: value_of[r])
    doc = server.expect(s.get(server.api(f"/environments/PROD/models/{MODEL}")), 200)
    assert doc["run_id"] == best_run
    assert doc["metric"]["value"] == value_of[best_run]

    explain = server.expect(s.get(server.api(f"/environments/PROD/models/{MODEL}/explain")), 200)
    assert explain["champion"] == best_run
    assert sum(c["eligible"] for c in explain["candidates"]) == CLIENTS

    chain = history_chain(server, "PROD")
    assert chain, "the champion changed at least once"
    assert chain[0]["to_run_id"] == best_run
    assert chain[-1]["from_run_id"] is None
    for newer, older in itertools.pairwise(chain):
        assert newer["from_run_id"] == older["to_run_id"], chain
    # Serialized recomputations only ever replace a champion by a strictly better one.
    chosen = [value_of[h["to_run_id"]] for h in reversed(chain)]
    assert chosen == sorted(set(chosen)), chain
    assert all(h["reason"] == "best" for h in chain)
