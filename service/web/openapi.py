"""The OpenAPI document: flask-smorest's, completed with what every route shares.

flask-smorest documents each operation from its marshmallow schemas and the statuses
its view declares (409, 412, 428, 304 …). What the middleware answers on *every* route
is added here, from the same tables the middleware reads, so the document cannot drift
from it:

- the bearer-token scheme, required globally; ``security: []`` on the open probes;
- 401 and 503 wherever a token is checked (the lookup reads the database), 403 where the
  route needs more than ``reader`` (``modelreg.web.route_roles``), 400 everywhere (control
  characters in the URL, a token in the query string, unparsable JSON, a foreign
  ``page_token``), 404 where the path names something, 413 and 415 wherever a body is
  read, 422 wherever a parameter or body is validated;
- the routes outside flask-smorest: ``/healthz``, ``/readyz``, the document itself
  (and ``/metrics`` when the application has it).

Every error response is the error schema; there is no catch-all ``default`` response,
so an undocumented status is a contract violation (``tests/e2e/test_schemathesis.py``).
Response schemas list every property as required: the service always sends each one
(``null`` where the schema allows it).

The committed snapshot ``docs/openapi.json`` is this document, from
``python -m modelreg.web.openapi > docs/openapi.json``.
"""

from __future__ import annotations

import copy
import http
import json
import re
from typing import Any

from flask import Flask, Response, current_app

from modelreg.names import NAME_PATTERN
from modelreg.roles import ROLES
from modelreg.web.route_roles import OPEN_ENDPOINTS, required_role

SECURITY_SCHEME = "bearerAuth"
ERROR_SCHEMA_REF = "#/components/schemas/ApiError"
BODY_METHODS = frozenset({"post", "put", "patch", "delete"})
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

# Path parameters that hold a name: the pattern every name follows. A path with a
# name outside it names nothing (404).
_NAME_PARAMETERS = {"model", "env", "name"}
_VERSION_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 128}

DESCRIPTION = """\
Model registry and promotion service.

Every operation needs `Authorization: Bearer <token>` (`/healthz` and `/readyz` aside);
tokens have a role (reader < ci < release < admin) and each operation names the least
role it needs in `x-required-role`. Every failure is
`{"error": {"code", "message", "details"}}` (the `ApiError` schema) with one of the
statuses the operation lists; an unexpected failure would be 500 `internal_error`, a
bug by definition. `HEAD` is answered wherever `GET` is. Each response echoes
`X-Request-ID` (the caller's, when it is 1-64 characters of `A-Za-z0-9._:-`).
"""

_ERRORS: dict[str, str] = {
    "400": "`bad_request`: the request is malformed: unparsable JSON, control characters "
    "in the URL, a token in the query string, a `page_token` this service did not issue",
    "401": "`unauthenticated`: no token, or a malformed, unknown, expired or revoked one",
    "403": "`forbidden`: the token's role is below `{role}`",
    "404": "`not_found`: the path names nothing",
    "413": "`payload_too_large`: the body is larger than the configured limit",
    "415": "`unsupported_media_type`: the body is not of a media type this operation takes",
    "422": "`validation_error`: a parameter or body field is invalid; `details` names each",
    "503": "`unavailable`: the database is unreachable; retry later",
}

# What a status means where the operation did not say more.
_STATUS_CODES: dict[str, str] = {
    "409": "a conflict with the current state: `already_exists`, `invalid_transition` or "
    "`would_leave_no_model`",
    "412": "`precondition_failed`: If-Match names a revision that is no longer current",
    "416": "the Range lies outside the content",
    "428": "`precondition_required`: the operation needs If-Match",
    "429": "`too_many_requests`: the token is at a per-token limit "
    "(`max_pending_jobs_per_token`, `max_stored_bytes_per_token`); `details` names the "
    "setting, the limit and the usage",
}

_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": 'Bearer realm="modelreg"',
        "schema": {"type": "string"},
    }
}

_STATUS_SCHEMA = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string"}},
    "additionalProperties": False,
}

_READY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "evaluation"],
    "properties": {
        "status": {"type": "string"},
        "evaluation": {
            "type": "object",
            "required": ["isolation", "embedded_worker"],
            "properties": {
                "isolation": {
                    "type": "string",
                    "description": "strict or process: the level serve's evaluation worker runs "
                    "at, or (without one) the configured evaluation_isolation",
                },
                "embedded_worker": {
                    "type": ["string", "null"],
                    "description": "ready while serve's own evaluation worker runs; null "
                    "when serve runs none (workers are separate processes)",
                },
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}

# Routes that flask-smorest does not document, by endpoint (or by path: ``/metrics``
# belongs to whichever blueprint serves it).
_EXTRA: dict[str, dict[str, Any]] = {
    "health.healthz": {
        "summary": "Liveness: the process answers",
        "tags": ["health"],
        "responses": {
            "200": {
                "description": "alive",
                "content": {"application/json": {"schema": {**_STATUS_SCHEMA}}},
            }
        },
    },
    "health.readyz": {
        "summary": "Readiness: the database is reachable (and serve's evaluation worker runs)",
        "tags": ["health"],
        "responses": {
            "200": {
                "description": "ready",
                "content": {"application/json": {"schema": _READY_SCHEMA}},
            },
            "503": {"description": _ERRORS["503"]},
        },
    },
    "api-docs.openapi_json": {
        "summary": "This OpenAPI document",
        "tags": ["health"],
        "responses": {
            "200": {
                "description": "OpenAPI 3.1 document",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    },
    "/metrics": {
        "summary": "Metrics in the Prometheus text format",
        "tags": ["health"],
        "responses": {
            "200": {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": ERROR_SCHEMA_REF}}},
    }


def openapi_path(rule: str) -> str:
    """``/runs/<int(min=1):run_id>`` → ``/runs/{run_id}``.

    >>> openapi_path("/api/v1/runs/<int(min=1, max=9):run_id>/artifact")
    '/api/v1/runs/{run_id}/artifact'
    """
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _add_extra_routes(doc: dict[str, Any], app: Flask) -> None:
    paths = doc.setdefault("paths", {})
    for rule in app.url_map.iter_rules():
        extra = _EXTRA.get(rule.endpoint) or _EXTRA.get(rule.rule)
        path = openapi_path(rule.rule)
        if extra is None or "get" in paths.get(path, {}):
            continue
        paths.setdefault(path, {})["get"] = copy.deepcopy(extra)
        if rule.endpoint in OPEN_ENDPOINTS:
            paths[path]["get"]["security"] = []


def _endpoints(app: Flask) -> dict[tuple[str, str], str]:
    """(OpenAPI path, method) → Flask endpoint."""
    found: dict[tuple[str, str], str] = {}
    for rule in app.url_map.iter_rules():
        for method in rule.methods or ():
            found[(openapi_path(rule.rule), method.lower())] = rule.endpoint
    return found


def _parameters(path_item: dict[str, Any], operation: dict[str, Any]) -> list[dict[str, Any]]:
    return [*path_item.get("parameters", []), *operation.get("parameters", [])]


def _complete_parameters(path_item: dict[str, Any]) -> None:
    for parameter in path_item.get("parameters", []):
        if parameter.get("in") != "path":
            continue
        if parameter["name"] in _NAME_PARAMETERS:
            parameter["schema"] = {"type": "string", "pattern": NAME_PATTERN}
        elif parameter["name"] == "version":
            parameter["schema"] = dict(_VERSION_SCHEMA)
            parameter.setdefault(
                "description", "a PEP 440 version; equal spellings (1.0, 1.0.0) find the same"
            )


def _error_statuses(
    endpoint: str, method: str, path_item: dict[str, Any], operation: dict[str, Any]
) -> dict[str, str]:
    """The statuses the middleware and the argument parsing may answer, with their
    descriptions."""
    statuses = {"400": _ERRORS["400"]}
    parameters = _parameters(path_item, operation)
    if endpoint not in OPEN_ENDPOINTS:
        statuses["401"] = _ERRORS["401"]
        statuses["503"] = _ERRORS["503"]
        role = required_role(endpoint, method.upper())
        if role is not None and ROLES.index(role) > 0:
            statuses["403"] = _ERRORS["403"].format(role=role)
    if any(p.get("in") == "path" for p in parameters):
        statuses["404"] = _ERRORS["404"]
    if method in BODY_METHODS:
        statuses["413"] = _ERRORS["413"]
        statuses["415"] = _ERRORS["415"]
    validated = "requestBody" in operation or any(
        p.get("in") in ("query", "header")
        or (p.get("in") == "path" and p.get("schema", {}).get("type") != "integer")
        for p in parameters
    )
    if validated:
        statuses["422"] = _ERRORS["422"]
    return statuses


def _is_generic(response: dict[str, Any], status: str) -> bool:
    """A response flask-smorest made up (a reference, or the bare HTTP phrase)."""
    if "$ref" in response:
        return True
    phrase = http.HTTPStatus(int(status)).phrase if status.isdigit() else ""
    return bool(response.get("description") in (phrase, "", None))


def _complete_operation(
    endpoint: str, method: str, path_item: dict[str, Any], operation: dict[str, Any]
) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    responses.pop("default", None)
    for status, description in _error_statuses(endpoint, method, path_item, operation).items():
        if status not in responses or _is_generic(responses[status], status):
            responses[status] = _error(description)
    for status, response in list(responses.items()):
        if not status.startswith(("4", "5")):
            continue
        description = response.get("description", "")
        if _is_generic(response, status):
            description = _STATUS_CODES.get(status) or http.HTTPStatus(int(status)).phrase
        responses[status] = {**response, **_error(description)}
        responses[status].pop("$ref", None)
    if "401" in responses:
        responses["401"]["headers"] = copy.deepcopy(_WWW_AUTHENTICATE)
    if endpoint in OPEN_ENDPOINTS:
        operation["security"] = []
    else:
        role = required_role(endpoint, method.upper())
        if role is not None:
            operation["x-required-role"] = role


def _response_schema_names(doc: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Component schemas reachable from responses, and from requests/parameters."""
    schemas = doc.get("components", {}).get("schemas", {})

    def refs(node: Any, into: set[str]) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[-1]
                if name not in into:
                    into.add(name)
                    refs(schemas.get(name), into)
            for value in node.values():
                refs(value, into)
        elif isinstance(node, list):
            for value in node:
                refs(value, into)

    outgoing: set[str] = set()
    incoming: set[str] = set()
    for path_item in doc.get("paths", {}).values():
        refs(path_item.get("parameters", []), incoming)
        for method in HTTP_METHODS:
            operation = path_item.get(method)
            if operation is None:
                continue
            refs(operation.get("requestBody"), incoming)
            refs(operation.get("parameters", []), incoming)
            refs(operation.get("responses"), outgoing)
    return outgoing, incoming


def _require_response_properties(doc: dict[str, Any]) -> None:
    """Every property of a response-only schema is always sent: mark it required."""
    schemas = doc.get("components", {}).get("schemas", {})
    outgoing, incoming = _response_schema_names(doc)
    for name in sorted(outgoing - incoming - {"ApiError", "ApiErrorBody"}):
        schema = schemas.get(name, {})
        if schema.get("properties"):
            schema["required"] = sorted(schema["properties"])


def complete(spec: dict[str, Any], app: Flask) -> dict[str, Any]:
    """flask-smorest's document of ``app``, completed (a new dict)."""
    doc = copy.deepcopy(spec)
    doc.setdefault("info", {})["description"] = DESCRIPTION
    components = doc.setdefault("components", {})
    components["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "an API token: `modelreg token create`, `POST /api/v1/tokens`, "
            "or `MODELREG_ADMIN_TOKEN`",
        }
    }
    doc["security"] = [{SECURITY_SCHEME: []}]
    _add_extra_routes(doc, app)
    if not any(tag.get("name") == "health" for tag in doc.get("tags", [])):
        doc.setdefault("tags", []).append(
            {"name": "health", "description": "Probes and this document"}
        )
    endpoints = _endpoints(app)
    for path, path_item in doc["paths"].items():
        _complete_parameters(path_item)
        for method in HTTP_METHODS:
            operation = path_item.get(method)
            if operation is not None:
                endpoint = endpoints.get((path, method), "")
                _complete_operation(endpoint, method, path_item, operation)
    # Every reference to flask-smorest's shared responses was replaced above.
    components.pop("responses", None)
    _require_response_properties(doc)
    return doc


def document(app: Flask) -> dict[str, Any]:
    """The application's OpenAPI document (computed once: routes are fixed by then)."""
    cached: dict[str, Any] | None = app.extensions.get("modelreg.openapi")
    if cached is None:
        api = app.extensions["flask-smorest"]["apis"][""]["ext_obj"]
        cached = complete(api.spec.to_dict(), app)
        app.extensions["modelreg.openapi"] = cached
    return cached


def json_response() -> Response:
    """``GET /api/v1/openapi.json``."""
    return current_app.response_class(
        json.dumps(document(current_app), indent=2, sort_keys=True),
        mimetype="application/json",
    )


def dumps(doc: dict[str, Any]) -> str:
    """The snapshot's form: sorted keys, two-space indent, a final newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
