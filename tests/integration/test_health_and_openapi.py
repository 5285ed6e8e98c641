"""Probes for liveness and readiness, and the OpenAPI document."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from modelreg.app import create_app
from modelreg.config import load_settings
from tests.integration.conftest import ADMIN_TOKEN, Api, assert_error, authorized

DESIGN_PATHS = {
    "/api/v1/models": {"get", "post"},
    "/api/v1/models/{model}": {"get"},
    "/api/v1/models/{model}/versions": {"get", "post"},
    "/api/v1/models/{model}/versions/{version}/transitions": {"post"},
    "/api/v1/models/{model}/versions/{version}/runs": {"post"},
    "/api/v1/runs/{run_id}": {"get"},
    "/api/v1/runs/{run_id}/artifact": {"get"},
    "/api/v1/runs/{run_id}/evaluations": {"post"},
    "/api/v1/datasets": {"post"},
    "/api/v1/datasets/{name}": {"get"},
    "/api/v1/environments": {"get"},
    "/api/v1/environments/{env}": {"put"},
    "/api/v1/environments/{env}/policies/{model}": {"get", "put"},
    "/api/v1/environments/{env}/policies/{model}/plan": {"post"},
    "/api/v1/environments/{env}/models/{model}": {"get"},
    "/api/v1/environments/{env}/models/{model}/explain": {"get"},
    "/api/v1/environments/{env}/models/{model}/history": {"get"},
    "/api/v1/environments/{env}/models/{model}/pin": {"put", "delete"},
    "/api/v1/models/{model}/champions": {"get"},
    # issue 3: server-side evaluation
    "/api/v1/datasets/{name}/revisions/{rev}": {"get"},
    "/api/v1/datasets/{name}/revisions/{rev}/content": {"get"},
    "/api/v1/runs/{run_id}/evaluate": {"post"},
    "/api/v1/jobs": {"get"},
    "/api/v1/jobs/{job_id}": {"get"},
}


def test_healthz_and_readyz_answer_200_when_the_database_is_reachable(api: Api) -> None:
    response = api.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    response = api.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ready"


def test_readyz_names_the_isolation_level_and_whether_serve_s_own_worker_runs(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelreg.runtime import serving_state

    # No embedded worker (this is no serve): the configured level, no worker to wait for.
    assert api.get("/readyz").get_json()["evaluation"] == {
        "isolation": "strict",
        "embedded_worker": None,
    }
    state = tmp_path / "embedded-worker.json"
    monkeypatch.setenv(serving_state.STATE_ENV, str(state))
    serving_state.write(state, state="starting", restarts=0)
    assert_error(api.get("/readyz"), 503, "unavailable")
    serving_state.write(state, state="ready", pid=os.getpid(), isolation="process", restarts=1)
    assert api.get("/readyz").get_json()["evaluation"] == {
        "isolation": "process",
        "embedded_worker": "ready",
    }
    # "ready" from a worker that is gone is not believed.
    gone = subprocess.Popen(["true"])
    gone.wait()
    serving_state.write(state, state="ready", pid=gone.pid, isolation="strict", restarts=1)
    response = api.get("/readyz")
    assert_error(response, 503, "unavailable")
    assert response.get_json()["error"]["details"]["embedded_worker"] == "down"


def test_the_openapi_document_is_json_listing_every_path_of_the_design(api: Api) -> None:
    response = api.get("/openapi.json")
    assert response.status_code == 200
    document = json.loads(response.get_data(as_text=True))
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "modelreg"
    paths = document["paths"]
    for path, methods in DESIGN_PATHS.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, sorted(paths[path]))
    schemas = document["components"]["schemas"]
    error_schemas = [s for s in schemas.values() if "error" in s.get("properties", {})]
    assert error_schemas, sorted(schemas)


def test_an_unreachable_database_is_503_unavailable_not_a_traceback(tmp_path: Path) -> None:
    settings = load_settings(
        environ={},
        data_dir=str(tmp_path / "data"),
        database_url="postgresql+psycopg2://postgres@127.0.0.1:1/none?connect_timeout=2",
        artifact_root=str(tmp_path / "artifacts"),
        admin_token=ADMIN_TOKEN,
    )
    app = create_app(settings)
    try:
        client = authorized(app.test_client())
        assert client.get("/healthz").status_code == 200
        assert_error(client.get("/readyz"), 503, "unavailable")
        for response in (
            client.get("/api/v1/models"),
            client.post("/api/v1/models", json={"name": "m"}),
            client.get("/api/v1/environments/PROD/models/m"),
        ):
            assert_error(response, 503, "unavailable")
            assert "Traceback" not in response.get_data(as_text=True)
    finally:
        app.extensions["modelreg"].db.dispose()


def test_every_documented_error_response_has_the_contract_error_shape(api: Api) -> None:
    doc = api.get("/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    refs = {
        content["schema"]["$ref"].rsplit("/", 1)[-1]
        for response in doc["components"].get("responses", {}).values()
        for content in response.get("content", {}).values()
    }
    for path in doc["paths"].values():
        for operation in (op for op in path.values() if isinstance(op, dict)):
            for status, response in operation.get("responses", {}).items():
                if status.startswith(("4", "5")) and "content" in response:
                    refs.add(
                        response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
                    )

    assert refs, "the document must declare error responses"
    for name in refs:
        assert set(schemas[name]["properties"]) == {"error"}, name
        body = schemas[name]["properties"]["error"]["$ref"].rsplit("/", 1)[-1]
        assert set(schemas[body]["properties"]) == {"code", "message", "details"}
