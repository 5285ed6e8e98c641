"""What a page in a browser on another origin can make the API do: send only JSON (an
HTML form cannot), read nothing unless its origin is configured, and never a body that
is too large to parse."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask

from modelreg.app import UPLOAD_ROUTES, create_app
from modelreg.config import load_settings
from tests.integration.conftest import ADMIN_TOKEN, Api, assert_error, sha
from tests.integration.routes import calls, fingerprint, world

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
UI = "https://ui.example.com"


@contextmanager
def _app(database_url: str, tmp_path: Path, **settings: Any) -> Iterator[Flask]:
    app = create_app(
        load_settings(
            environ={},
            data_dir=str(tmp_path / "data"),
            database_url=database_url,
            artifact_root=str(tmp_path / "artifacts"),
            admin_token=ADMIN_TOKEN,
            **settings,
        )
    )
    try:
        yield app
    finally:
        app.extensions["modelreg"].db.dispose()


# -- media types ---------------------------------------------------------------------------

# What an HTML form (or a "simple" cross-origin fetch) can send without a preflight.
FORM_BODIES = {
    "text/plain": lambda: {"data": '{"name": "n"}'},
    "application/x-www-form-urlencoded": lambda: {"data": "name=n"},
    "multipart/form-data": lambda: {"data": {"name": "n", "file": (io.BytesIO(b"x"), "f.bin")}},
}


def test_state_changing_routes_refuse_form_and_text_bodies_with_415(app: Flask, api: Api) -> None:
    values = world(api)
    client = app.test_client()
    before = fingerprint(app)
    checked = 0
    for call in calls(app, values):
        if not call.writes:
            continue
        for content_type, body in FORM_BODIES.items():
            if content_type == "multipart/form-data" and (call.method, call.endpoint) in (
                UPLOAD_ROUTES
            ):
                continue
            got = client.open(
                call.path, method=call.method, content_type=content_type, headers=ADMIN, **body()
            )
            error = assert_error(got, 415, "unsupported_media_type")
            assert "application/json" in error["details"]["accepted"], (str(call), error)
            checked += 1
    assert checked > 30
    assert fingerprint(app) == before


def test_multipart_is_accepted_only_by_the_two_upload_routes(app: Flask, api: Api) -> None:
    values = world(api)
    routes = {(c.method, c.endpoint) for c in calls(app, values) if c.writes}
    assert {("POST", "runs.Runs"), ("POST", "datasets.Datasets")} == UPLOAD_ROUTES
    assert routes >= UPLOAD_ROUTES

    run = api.upload_run("AImodel", "1.0", b"another artifact", {"params": {"a": 1}})
    assert run.status_code == 201, run.get_json()
    dataset = api.client.post(
        "/api/v1/datasets",
        data={
            "file": (io.BytesIO(b"a,b,label\n1,2,0\n3,4,1\n5,6,0\n"), "holdout.csv"),
            "metadata": json.dumps(
                {"name": "uploaded", "target": "label", "task": "classification"}
            ),
        },
        content_type="multipart/form-data",
    )
    assert dataset.status_code == 201, dataset.get_json()
    # Uploads still refuse the bodies a form sends without files.
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        for path in ("/api/v1/datasets", "/api/v1/models/AImodel/versions/1.0/runs"):
            got = api.client.post(path, data="name=x", content_type=content_type)
            assert_error(got, 415, "unsupported_media_type")


def test_json_with_parameters_is_json_and_a_body_less_write_needs_no_content_type(
    api: Api,
) -> None:
    values = world(api)
    got = api.client.post(
        "/api/v1/models",
        data=json.dumps({"name": "charset"}),
        content_type="application/json; charset=utf-8",
    )
    assert got.status_code == 201, got.get_json()

    # No body, no content type: never a 415 (the route answers as it would to "{}").
    assert api.client.delete(f"/api/v1/tokens/{values['token_id']}").status_code == 200
    for method, path in (
        ("DELETE", "/api/v1/environments/E/models/AImodel/pin"),
        ("DELETE", f"/api/v1/runs/{values['run_id']}"),
        ("POST", "/api/v1/models/AImodel/versions/1.0/transitions"),
    ):
        got = api.client.open(path, method=method)
        assert got.status_code != 415 and got.status_code < 500, (path, got.get_json())
    assert_error(api.client.post("/api/v1/models"), 422, "validation_error", "name")
    got = api.client.post(f"/api/v1/runs/{values['run_id']}/evaluate")
    assert_error(got, 422, "validation_error", "dataset")


# -- CORS -------------------------------------------------------------------------------------


def _cors_headers(response: Any) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def _preflight(client: Any, origin: str, method: str = "PUT", path: str = "/api/v1/models") -> Any:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def test_by_default_no_origin_gets_any_cors_grant(app: Flask) -> None:
    client = app.test_client()
    for origin in (UI, "https://evil.example", "null", "http://localhost:3000"):
        preflight = _preflight(client, origin)
        assert_error(preflight, 401, "unauthenticated")
        assert _cors_headers(preflight) == {}
        for headers in ({"Origin": origin}, {"Origin": origin, **ADMIN}):
            got = client.get("/api/v1/models", headers=headers)
            assert _cors_headers(got) == {}, (origin, got.status_code)


def test_a_configured_origin_is_granted_and_no_other(database_url: str, tmp_path: Path) -> None:
    with _app(database_url, tmp_path, cors_origins=f"{UI}, https://ops.example.com") as app:
        client = app.test_client()
        before = fingerprint(app)

        preflight = _preflight(client, UI, "PUT", "/api/v1/environments/E")
        assert preflight.status_code == 200, preflight.get_data()
        assert preflight.get_data() == b""
        assert preflight.headers["Access-Control-Allow-Origin"] == UI
        allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed
        assert "PUT" in preflight.headers["Access-Control-Allow-Methods"]
        assert "Access-Control-Allow-Credentials" not in preflight.headers
        assert "Origin" in preflight.headers.get("Vary", "")
        assert fingerprint(app) == before

        got = client.get("/api/v1/models", headers={"Origin": UI, **ADMIN})
        assert got.status_code == 200
        assert got.headers["Access-Control-Allow-Origin"] == UI
        exposed = {
            h.strip().lower() for h in got.headers["Access-Control-Expose-Headers"].split(",")
        }
        assert {"etag", "x-request-id"} <= exposed
        # The preflight opened nothing: the request itself still needs its token.
        refused = client.put("/api/v1/environments/E", json={}, headers={"Origin": UI})
        assert_error(refused, 401, "unauthenticated")
        assert fingerprint(app) == before

        for origin in (
            "https://evil.example",
            "https://ui.example.com.evil.example",
            "https://evil-ui.example.com",
            "http://ui.example.com",
            "https://ui.example.com:8443",
            "null",
        ):
            preflight = _preflight(client, origin)
            assert_error(preflight, 401, "unauthenticated")
            assert _cors_headers(preflight) == {}, origin
            got = client.get("/api/v1/models", headers={"Origin": origin, **ADMIN})
            assert got.status_code == 200
            assert _cors_headers(got) == {}, origin
        # A request that names no origin is not a browser's: no grant either.
        assert _cors_headers(client.get("/api/v1/models", headers=ADMIN)) == {}
        # Origins compare case-insensitively (scheme and host are).
        got = client.get("/api/v1/models", headers={"Origin": UI.upper(), **ADMIN})
        assert got.headers["Access-Control-Allow-Origin"] == UI.upper()


def test_an_options_request_that_is_not_a_preflight_still_needs_a_token(
    database_url: str, tmp_path: Path
) -> None:
    with _app(database_url, tmp_path, cors_origins=UI) as app:
        client = app.test_client()
        assert_error(client.options("/api/v1/models"), 401, "unauthenticated")
        assert_error(
            client.options("/api/v1/models", headers={"Origin": UI}), 401, "unauthenticated"
        )
        assert client.options("/api/v1/models", headers=ADMIN).status_code == 200


# -- body size --------------------------------------------------------------------------------


def test_json_bodies_over_the_limit_are_413_before_they_are_parsed_on_every_route(
    database_url: str, tmp_path: Path
) -> None:
    limit = 4096
    with _app(database_url, tmp_path, max_json_bytes=limit) as app:
        api = Api(app.test_client())
        values = world(api)
        before = fingerprint(app)
        client = app.test_client()
        checked = 0
        for call in calls(app, values):
            if not call.writes or call.form is not None:
                continue
            valid = json.dumps({"description": "x" * limit}).encode()
            broken = b"{" * (limit + 1)  # not JSON at all: a parser would say 400
            for body in (valid, broken):
                got = client.open(
                    call.path,
                    method=call.method,
                    data=body,
                    content_type="application/json",
                    headers=ADMIN,
                )
                error = assert_error(got, 413, "payload_too_large")
                assert error["details"]["limit"] == limit
                chunked = client.open(
                    call.path,
                    method=call.method,
                    input_stream=io.BytesIO(body),
                    headers={
                        **ADMIN,
                        "Transfer-Encoding": "chunked",
                        "Content-Type": "application/json",
                    },
                    environ_overrides={"wsgi.input_terminated": True},
                )
                assert_error(chunked, 413, "payload_too_large")
                checked += 1
        assert checked > 20
        assert fingerprint(app) == before
        # Just under the limit is parsed as usual.
        got = api.post("/datasets", {"name": "small", "sha256": sha(b"s"), "description": "x"})
        assert got.status_code == 201
