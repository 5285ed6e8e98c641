"""Structured logs: one JSON line per request (``access_log``), request ids, job ids, and
never a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from modelreg.app import create_app
from modelreg.config import load_settings
from modelreg.evaluation.sandbox import Outcome
from modelreg.evaluation.worker import Worker
from modelreg.runtime import logs
from tests.integration.conftest import (
    ADMIN_TOKEN,
    Api,
    bearer,
    create_model,
    create_run,
    create_version,
    put_environment,
    put_policy,
)


class Lines:
    """What the service's loggers wrote since :func:`logs.configure`, one dict per line."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def __call__(self, logger: str | None = None) -> list[dict[str, Any]]:
        found = [json.loads(line) for line in self.stream.getvalue().splitlines()]
        return [d for d in found if logger is None or d["logger"] == logger]


@pytest.fixture
def lines() -> Iterator[Lines]:
    captured = Lines()
    logs.configure(logging.INFO, captured.stream)
    try:
        yield captured
    finally:
        for name in logs.LOGGERS:
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True
            logger.setLevel(logging.NOTSET)


def _app(database_url: str, tmp_path: Path, **settings: Any) -> Flask:
    return create_app(
        load_settings(
            environ={},
            data_dir=str(tmp_path / "data"),
            database_url=database_url,
            artifact_root=str(tmp_path / "artifacts"),
            admin_token=ADMIN_TOKEN,
            **settings,
        )
    )


@pytest.fixture
def logged(database_url: str, tmp_path: Path) -> Iterator[Api]:
    """The API of an app with ``access_log`` on."""
    app = _app(database_url, tmp_path, access_log=True)
    yield Api(app.test_client())
    app.extensions["modelreg"].db.dispose()


def test_each_request_is_one_json_line_with_route_status_request_id_and_actor(
    logged: Api, lines: Lines
) -> None:
    create_model(logged, "AImodel")
    reader = bearer(logged, "dashboard", "reader")
    secret = reader["Authorization"].split()[1]
    got = logged.get("/models/AImodel?page_size=1", headers={**reader, "X-Request-ID": "trace-42"})
    assert got.status_code == 200
    assert got.headers["X-Request-ID"] == "trace-42"
    anonymous = logged.client.application.test_client()
    generated = anonymous.get("/metrics")  # no token, no request id: one is made up
    assert generated.status_code == 401

    access = lines("modelreg.access")
    assert [(d["method"], d["path"], d["status"]) for d in access] == [
        ("POST", "/api/v1/models", 201),
        ("POST", "/api/v1/tokens", 201),
        ("GET", "/api/v1/models/AImodel", 200),
        ("GET", "/metrics", 401),
    ]
    line = access[2]
    assert line["route"] == "/api/v1/models/<model>"
    assert line["request_id"] == "trace-42"
    assert line["actor"] == "dashboard"
    assert line["level"] == "INFO" and line["ts"].endswith("+00:00")
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert access[0]["actor"] == "admin-token"
    assert access[3]["actor"] is None
    assert access[3]["request_id"] == generated.headers["X-Request-ID"]
    assert len(access[3]["request_id"]) == 32

    text = json.dumps(lines())
    assert secret not in text and ADMIN_TOKEN not in text
    assert "page_size" not in text and "Authorization" not in text and "Bearer" not in text


def test_a_token_sent_in_the_query_string_is_refused_and_never_logged(
    logged: Api, lines: Lines
) -> None:
    reader = bearer(logged, "careless", "reader")
    secret = reader["Authorization"].split()[1]
    anonymous = logged.client.application.test_client()
    for parameter in ("token", "access_token", "api_key"):
        assert anonymous.get(f"/metrics?{parameter}={secret}").status_code == 400
        assert logged.get(f"/models?{parameter}={secret}", headers=reader).status_code == 400
    access = lines("modelreg.access")
    assert {d["path"] for d in access[1:]} == {"/metrics", "/api/v1/models"}
    assert secret not in json.dumps(lines())


def test_without_access_log_requests_write_no_line(
    database_url: str, tmp_path: Path, lines: Lines
) -> None:
    app = _app(database_url, tmp_path)
    try:
        api = Api(app.test_client())
        assert api.get("/models").status_code == 200
        assert lines("modelreg.access") == []
    finally:
        app.extensions["modelreg"].db.dispose()


def test_records_written_while_serving_a_request_carry_its_id(logged: Api, lines: Lines) -> None:
    app = logged.client.application

    @app.get("/boom-for-test")
    def boom() -> str:
        logging.getLogger("modelreg.test").warning("about to fail")
        raise RuntimeError("kaboom")

    response = logged.client.get("/boom-for-test", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    mine = [d for d in lines() if d.get("request_id") == "req-500"]
    by_logger = {d["logger"]: d for d in mine}
    assert by_logger["modelreg.test"]["message"] == "about to fail"
    assert by_logger["modelreg.access"]["status"] == 500
    traced = [d for d in mine if "exc" in d]
    assert traced and "kaboom" in traced[0]["exc"]
    # Outside a request: no request id at all.
    logging.getLogger("modelreg.test").info("idle")
    assert "request_id" not in lines("modelreg.test")[-1]


class _Fixed:
    """An executor that 'evaluates' without loading anything."""

    def run(self, spec: Any, workdir: Path, renew: Any) -> Outcome:
        return Outcome(ok=True, metrics={"accuracy": 1.0})


def test_the_workers_lines_carry_the_job_id(api: Api, app: Flask, lines: Lines) -> None:
    create_model(api, "AImodel")
    create_version(api, "AImodel", "1.0", "Staging")
    content = b"x,target\n" + b"".join(f"{i},{i % 2}\n".encode() for i in range(10))
    response = api.client.post(
        "/api/v1/datasets",
        data={
            "file": (io.BytesIO(content), "holdout.csv"),
            "metadata": json.dumps(
                {"name": "holdout", "target": "target", "task": "classification"}
            ),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    put_environment(api, "INT")
    assert put_policy(api, "INT", "AImodel", metric="accuracy").status_code == 201
    create_run(api, "AImodel", "1.0")
    c = app.extensions["modelreg"]
    worker = Worker(c.db, c.store, c.settings, executor=_Fixed(), name="log-worker")
    processed = worker.run_once()
    assert processed is not None and processed.state == "succeeded", processed
    done = [d for d in lines("modelreg.worker") if "succeeded" in d["message"]]
    assert len(done) == 1, lines()
    assert done[0]["job_id"] == processed.job_id
    assert done[0]["message"].startswith("worker log-worker: job ")
