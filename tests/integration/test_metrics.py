"""``GET /metrics`` on SQLite and PostgreSQL: access, format, and what each metric counts.

The test process has one default registry for all its apps (no multiprocess
directory), so counters and histograms carry what earlier tests did: every
check compares a scrape after the action with one before it.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import Any

from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from modelreg.changes import champions
from modelreg.db.models import ChampionChange, Job, ModelVersion, RegisteredModel
from tests.integration.conftest import (
    Api,
    assert_error,
    bearer,
    champion,
    create_model,
    create_run,
    create_version,
    evaluate,
    history,
    move_to,
    put_environment,
    put_policy,
    register_dataset,
)

CHAMPION_ROUTE = "/api/v1/environments/<env>/models/<model>"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(api: Api, headers: dict[str, str] | None = None) -> Samples:
    """Every sample of a scrape, by (name, labels)."""
    response = api.client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    samples: Samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def changes_by_environment(samples: Samples, model: str) -> Counter[str]:
    found: Counter[str] = Counter()
    for (name, labels), v in samples.items():
        label = dict(labels)
        if name == "modelreg_champion_changes_total" and label["model"] == model:
            found[label["environment"]] += int(v)
    return found


def delta(after: Counter[str], before: Counter[str]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in set(after) | set(before) if after[k] != before[k]}


def champion_setup(api: Api, model: str = "AImodel") -> dict[str, Any]:
    create_model(api, model)
    create_version(api, model, "1.0", "Production")
    register_dataset(api, "holdout")
    for env in ("INT", "PROD"):
        put_environment(api, env)
        assert put_policy(api, env, model, stages=["Production"]).status_code == 201
    return create_run(api, model, "1.0", metrics={"f1": 0.5})


# -- access and format -----------------------------------------------------------------


def test_metrics_need_a_token_and_a_reader_may_scrape_them(api: Api, app: Flask) -> None:
    anonymous = app.test_client()
    response = anonymous.get("/metrics")
    assert_error(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert b"modelreg_" not in response.get_data()
    assert_error(
        anonymous.get("/metrics", headers={"Authorization": "Bearer nope"}), 401, "unauthenticated"
    )

    reader = bearer(api, "prometheus", "reader")
    response = api.client.get("/metrics", headers=reader)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["X-Request-ID"]
    text = response.get_data(as_text=True)
    for name, kind in [
        ("modelreg_http_request_duration_seconds", "histogram"),
        ("modelreg_champion_changes_total", "counter"),
        ("modelreg_evaluation_jobs", "gauge"),
    ]:
        assert f"# TYPE {name} {kind}" in text, text[:2000]
    # Prometheus' own parser reads all of it.
    assert list(text_string_to_metric_families(text))


def test_openmetrics_is_served_to_a_scraper_that_asks_for_it(api: Api) -> None:
    response = api.client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.status_code == 200
    assert response.mimetype == "application/openmetrics-text"
    assert response.get_data(as_text=True).rstrip().endswith("# EOF")


# -- request latency -------------------------------------------------------------------


def test_the_latency_histogram_labels_requests_by_route_template_never_raw_path(api: Api) -> None:
    champion_setup(api)
    before = scrape(api)
    for _ in range(3):
        assert champion(api, "PROD", "AImodel") is not None
    etag = api.get("/environments/PROD/models/AImodel").headers["ETag"]
    assert (
        api.get("/environments/PROD/models/AImodel", headers={"If-None-Match": etag}).status_code
        == 304
    )
    assert api.get("/environments/PROD/models/nothing").status_code == 404
    assert api.get("/no/such/path/PROD-secret-looking").status_code == 404
    after = scrape(api)

    def count(route: str, status: str) -> float:
        name = "modelreg_http_request_duration_seconds_count"
        labels = {"route": route, "method": "GET", "status": status}
        return value(after, name, **labels) - value(before, name, **labels)

    assert count(CHAMPION_ROUTE, "200") == 4  # three lookups and the one that read the ETag
    assert count(CHAMPION_ROUTE, "304") == 1
    assert count(CHAMPION_ROUTE, "404") == 1
    assert count("unmatched", "404") == 1
    bucket = value(
        after,
        "modelreg_http_request_duration_seconds_bucket",
        route=CHAMPION_ROUTE,
        method="GET",
        status="200",
        le="+Inf",
    )
    assert bucket == value(
        after,
        "modelreg_http_request_duration_seconds_count",
        route=CHAMPION_ROUTE,
        method="GET",
        status="200",
    )
    routes = {
        dict(labels)["route"]
        for name, labels in after
        if name.startswith("modelreg_http_request_duration_seconds")
    }
    assert CHAMPION_ROUTE in routes
    assert not [r for r in routes if "PROD" in r or "AImodel" in r], routes
    assert all(r == "unmatched" or r.startswith("/") for r in routes), routes


# -- champion changes ------------------------------------------------------------------


def test_champion_changes_count_exactly_the_history_rows_committed(api: Api) -> None:
    before = changes_by_environment(scrape(api), "AImodel")
    run1 = champion_setup(api)  # INT and PROD get run 1: one change each
    run2 = create_run(api, "AImodel", "1.0")
    assert evaluate(api, run2["id"], {"f1": 0.9}).status_code == 201  # both move to run 2
    create_version(api, "AImodel", "2.0", "Staging")
    create_run(api, "AImodel", "2.0", metrics={"f1": 0.99})  # Staging: nobody takes it
    assert put_policy(api, "INT", "AImodel", stages=["Staging", "Production"]).status_code == 200
    pin = api.put("/environments/PROD/models/AImodel/pin", {"run_id": run1["id"], "reason": "t"})
    assert pin.status_code == 200, pin.get_json()

    rows = {env: len(history(api, env, "AImodel")) for env in ("INT", "PROD")}
    assert rows == {"INT": 3, "PROD": 3}
    assert delta(changes_by_environment(scrape(api), "AImodel"), before) == rows


def test_a_refused_change_counts_nothing(api: Api) -> None:
    champion_setup(api)
    before = changes_by_environment(scrape(api), "AImodel")
    rows = {env: len(history(api, env, "AImodel")) for env in ("INT", "PROD")}
    # Archiving the only Production version would leave both environments with nothing.
    refused = move_to(api, "AImodel", "1.0", "Archived")
    assert_error(refused, 409, "would_leave_no_model")
    assert {env: len(history(api, env, "AImodel")) for env in ("INT", "PROD")} == rows
    assert delta(changes_by_environment(scrape(api), "AImodel"), before) == {}

    assert move_to(api, "AImodel", "1.0", "Archived", force=True).status_code == 200
    assert delta(changes_by_environment(scrape(api), "AImodel"), before) == {"INT": 1, "PROD": 1}


def test_a_change_rolled_back_after_its_history_row_was_written_counts_nothing(
    api: Api, app: Flask
) -> None:
    champion_setup(api)
    db = app.extensions["modelreg"].db
    before = changes_by_environment(scrape(api), "AImodel")

    def archive_and_recompute(commit: bool) -> int:
        with db.unit_of_work() as session:
            model = session.scalar(select(RegisteredModel).where(RegisteredModel.name == "AImodel"))
            assert model is not None
            session.execute(
                update(ModelVersion)
                .where(ModelVersion.model_id == model.id)
                .values(stage="Archived")
            )
            outcomes = champions.recompute(session, model, trigger="test", actor="test")
            session.flush()
            written = len(session.scalars(select(ChampionChange)).all())
            if commit:
                session.commit()
            assert [o.changed for o in outcomes] == [True, True]
            return written

    assert archive_and_recompute(commit=False) == 4  # two rows each, flushed ...
    assert {env: len(history(api, env, "AImodel")) for env in ("INT", "PROD")} == {
        "INT": 1,
        "PROD": 1,
    }  # ... and rolled back
    assert delta(changes_by_environment(scrape(api), "AImodel"), before) == {}
    archive_and_recompute(commit=True)
    assert delta(changes_by_environment(scrape(api), "AImodel"), before) == {"INT": 1, "PROD": 1}


# -- evaluation jobs -------------------------------------------------------------------


def _upload_dataset(api: Api, name: str) -> None:
    content = b"x,target\n" + b"".join(f"{i},{i % 2}\n".encode() for i in range(10))
    response = api.client.post(
        "/api/v1/datasets",
        data={
            "file": (io.BytesIO(content), f"{name}.csv"),
            "metadata": json.dumps({"name": name, "target": "target", "task": "classification"}),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()


def test_the_jobs_gauge_is_the_databases_count_of_jobs_by_state(api: Api, app: Flask) -> None:
    def gauge() -> dict[str, float]:
        samples = scrape(api)
        return {
            dict(labels)["state"]: v
            for (name, labels), v in samples.items()
            if name == "modelreg_evaluation_jobs"
        }

    def listed() -> Counter[str]:
        response = api.get("/jobs?page_size=500")
        assert response.status_code == 200
        return Counter(job["state"] for job in response.get_json()["items"])

    assert gauge() == dict.fromkeys(["pending", "running", "succeeded", "failed", "cancelled"], 0)
    create_model(api, "AImodel")
    create_version(api, "AImodel", "1.0", "Staging")
    _upload_dataset(api, "holdout")
    put_environment(api, "INT")
    assert put_policy(api, "INT", "AImodel").status_code == 201
    for _ in range(5):
        create_run(api, "AImodel", "1.0")  # one job each, on the policy's dataset
    assert gauge() == {"pending": 5, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0}

    with app.extensions["modelreg"].db.unit_of_work() as session:
        for job_id, state in [(1, "running"), (2, "succeeded"), (3, "succeeded"), (4, "failed")]:
            session.execute(update(Job).where(Job.id == job_id).values(state=state))
        session.commit()
    expected = {"pending": 1, "running": 1, "succeeded": 2, "failed": 1, "cancelled": 0}
    assert gauge() == expected
    assert {k: v for k, v in expected.items() if v} == dict(listed())
