"""The OpenAPI document is the contract: complete, and committed.

Every route of ``app.url_map`` is documented with each of its methods (``HEAD`` and
``OPTIONS`` are Flask's own); every operation lists the error statuses the middleware
can answer, each with the error schema, and no catch-all ``default``; the bearer-token
scheme is required everywhere but on the open probes. ``docs/openapi.json`` is the
document, byte for byte: a contract change shows in review as a change of that file.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from modelreg.app import create_app, openapi_snapshot
from modelreg.config import load_settings
from modelreg.roles import ROLES
from modelreg.web import openapi
from modelreg.web.route_roles import OPEN_ENDPOINTS, required_role
from tests.integration.conftest import ADMIN_TOKEN, authorized

SNAPSHOT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
REGENERATE = ".venv/bin/modelreg openapi > docs/openapi.json"
ERROR_REF = "#/components/schemas/ApiError"
METHODS = ("get", "put", "post", "delete", "patch")
BODY_METHODS = {"post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """An application that is never sent a request needing the database."""
    data = tmp_path_factory.mktemp("contract")
    app = create_app(load_settings(environ={}, data_dir=str(data), admin_token=ADMIN_TOKEN))
    yield app
    app.extensions["modelreg"].db.dispose()


@pytest.fixture(scope="module")
def doc(app: Flask) -> dict[str, Any]:
    return openapi.document(app)


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item, item[method]


def routed(app: Flask) -> dict[tuple[str, str], str]:
    """(OpenAPI path, method) → endpoint, for every route but HEAD and OPTIONS."""
    found = {}
    for rule in app.url_map.iter_rules():
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            found[(openapi.openapi_path(rule.rule), method.lower())] = rule.endpoint
    return found


def test_every_route_and_method_is_documented_and_nothing_else(
    app: Flask, doc: dict[str, Any]
) -> None:
    routes = routed(app)
    documented = {(path, method) for path, method, _, _ in operations(doc)}
    assert not set(routes) - documented, (
        f"routes missing from the document: {sorted(set(routes) - documented)}"
    )
    assert not documented - set(routes), (
        f"documented but not routed: {sorted(documented - set(routes))}"
    )
    for path in ("/healthz", "/readyz", "/api/v1/openapi.json"):
        assert "get" in doc["paths"][path], path


def test_the_bearer_scheme_is_required_everywhere_but_on_the_open_probes(
    app: Flask, doc: dict[str, Any]
) -> None:
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        **doc["components"]["securitySchemes"]["bearerAuth"],
        "type": "http",
        "scheme": "bearer",
    }
    assert doc["security"] == [{"bearerAuth": []}]
    routes = routed(app)
    for path, method, _, operation in operations(doc):
        endpoint = routes[(path, method)]
        if endpoint in OPEN_ENDPOINTS:
            assert operation.get("security") == [], (method, path)
        else:
            assert "security" not in operation, (method, path)  # the global requirement
            assert operation["x-required-role"] == required_role(endpoint, method.upper())


def _is_error(response: dict[str, Any]) -> bool:
    content = response.get("content", {})
    return set(content) == {"application/json"} and content["application/json"]["schema"] == {
        "$ref": ERROR_REF
    }


def test_every_operation_lists_the_errors_it_can_answer_with_the_error_schema(
    app: Flask, doc: dict[str, Any]
) -> None:
    routes = routed(app)
    for path, method, item, operation in operations(doc):
        where = f"{method.upper()} {path}"
        endpoint = routes[(path, method)]
        responses = operation["responses"]
        assert "default" not in responses, where
        expected = {"400"}
        if endpoint not in OPEN_ENDPOINTS:
            expected |= {"401", "503"}
            if ROLES.index(required_role(endpoint, method.upper()) or "reader") > 0:
                expected.add("403")
            assert "WWW-Authenticate" in responses["401"]["headers"], where
        parameters = [*item.get("parameters", []), *operation.get("parameters", [])]
        if any(p["in"] == "path" for p in parameters):
            expected.add("404")
        if method in BODY_METHODS:
            expected |= {"413", "415"}
        if "requestBody" in operation or any(p["in"] in ("query", "header") for p in parameters):
            expected.add("422")
        assert expected <= set(responses), (where, sorted(expected - set(responses)))
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                assert _is_error(response), (where, status, response)
                assert response["description"], (where, status)
        if endpoint in OPEN_ENDPOINTS:
            assert not {"401", "403"} & set(responses), where


def test_every_parameter_body_and_success_response_has_a_schema(doc: dict[str, Any]) -> None:
    for path, method, item, operation in operations(doc):
        where = f"{method.upper()} {path}"
        for parameter in [*item.get("parameters", []), *operation.get("parameters", [])]:
            assert parameter.get("schema", {}).get("type"), (where, parameter)
        for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
            assert content.get("schema"), (where, media_type)
        if method in ("put", "post", "patch"):
            assert "requestBody" in operation, where
        for status, response in operation["responses"].items():
            if status.startswith("2") and status != "204":
                assert response.get("content"), (where, status)
                for media_type, content in response["content"].items():
                    assert content.get("schema"), (where, status, media_type)


def test_the_uploads_document_their_multipart_parts(doc: dict[str, Any]) -> None:
    runs = doc["paths"]["/api/v1/models/{model}/versions/{version}/runs"]["post"]
    datasets = doc["paths"]["/api/v1/datasets"]["post"]
    for operation, file_part in ((runs, "artifact"), (datasets, "file")):
        multipart = operation["requestBody"]["content"]["multipart/form-data"]
        properties = multipart["schema"]["properties"]
        assert properties[file_part] == {**properties[file_part], "format": "binary"}
        assert "$ref" in properties["metadata"], properties["metadata"]
        assert multipart["encoding"]["metadata"]["contentType"] == "application/json"
    assert "application/json" in datasets["requestBody"]["content"]


def test_downloads_document_their_media_types_ranges_and_conditions(doc: dict[str, Any]) -> None:
    downloads = {
        "/api/v1/runs/{run_id}/artifact": {"application/octet-stream"},
        "/api/v1/datasets/{name}/revisions/{rev}/content": {"text/csv", "application/gzip"},
    }
    for path, media_types in downloads.items():
        operation = doc["paths"][path]["get"]
        assert set(operation["responses"]["200"]["content"]) == media_types, path
        assert "ETag" in operation["responses"]["200"]["headers"], path
        assert {"200", "206", "304", "416"} <= set(operation["responses"]), path
        assert {p["name"] for p in operation["parameters"]} >= {"If-None-Match", "Range"}


def _property_schemas(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from schema.get("properties", {}).items()


def test_every_schema_property_is_typed(doc: dict[str, Any]) -> None:
    """No property of unknown shape (marshmallow's computed fields need a declared type)."""
    for name, schema in doc["components"]["schemas"].items():
        for prop, definition in _property_schemas(schema):
            assert {"type", "$ref", "anyOf", "allOf", "oneOf"} & set(definition), (name, prop)


def test_the_served_document_is_the_committed_snapshot(app: Flask) -> None:
    served = authorized(app.test_client()).get("/api/v1/openapi.json")
    assert served.status_code == 200, served.get_data(as_text=True)
    assert served.mimetype == "application/json"
    assert served.get_json() == json.loads(openapi_snapshot())


def test_the_committed_snapshot_is_up_to_date() -> None:
    """``docs/openapi.json`` shows every contract change in review."""
    current = openapi_snapshot()
    committed = SNAPSHOT.read_text(encoding="utf-8") if SNAPSHOT.exists() else ""
    if current != committed:
        diff = "".join(
            list(
                difflib.unified_diff(
                    committed.splitlines(keepends=True),
                    current.splitlines(keepends=True),
                    "docs/openapi.json (committed)",
                    "the application's document",
                    n=2,
                )
            )[:80]
        )
        pytest.fail(
            "docs/openapi.json is not the application's OpenAPI document. If the contract "
            f"change is intended, regenerate it and commit it:\n\n    {REGENERATE}\n\n{diff}"
        )


def test_the_snapshot_is_deterministic() -> None:
    assert openapi_snapshot() == openapi_snapshot()
