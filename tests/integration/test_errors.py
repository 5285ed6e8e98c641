"""Every failure is the contract's JSON error: never an HTML page, never a traceback."""

from __future__ import annotations

import base64
import io
import json

from flask import Flask
from werkzeug.test import TestResponse

from tests.integration.conftest import Api, assert_error, create_model, create_run, move_to


def _never_html(response: TestResponse) -> None:
    text = response.get_data(as_text=True)
    assert response.mimetype == "application/json", text
    assert "<html" not in text.lower()
    assert "<!doctype" not in text.lower()
    assert "Traceback" not in text


def test_an_unknown_route_is_a_json_404(api: Api) -> None:
    for path in ("/api/v1/nope", "/nope", "/api/v2/models", "/api/v1/runs/abc"):
        response = api.client.get(path, headers={"Accept": "text/html"})
        assert_error(response, 404, "not_found")
        _never_html(response)


def test_a_method_the_route_does_not_have_is_a_json_405(api: Api) -> None:
    for method, path in (
        ("DELETE", "/api/v1/models"),
        ("PATCH", "/api/v1/models"),
        ("PUT", "/api/v1/runs/1"),
        ("POST", "/healthz"),
    ):
        response = api.client.open(path, method=method, headers={"Accept": "text/html"})
        assert response.status_code == 405, (method, path)
        assert_error(response, 405, "method_not_allowed")
        _never_html(response)


def test_malformed_or_non_utf8_json_is_400_bad_request_and_stores_nothing(api: Api) -> None:
    for text in ('{"name": "m"', "{bad}", "nul\x00", '{"name": "m",}'):
        response = api.client.post("/api/v1/models", data=text, content_type="application/json")
        assert_error(response, 400, "bad_request")
        _never_html(response)
    response = api.client.post(
        "/api/v1/models", data=b'{"name": "\xff\xfe"}', content_type="application/json"
    )
    assert_error(response, 400, "bad_request")
    assert api.get("/models").get_json()["items"] == []


def test_json_of_the_wrong_type_or_with_unknown_fields_is_422(api: Api) -> None:
    for text in ("[1, 2]", '"name"', "42"):
        response = api.client.post("/api/v1/models", data=text, content_type="application/json")
        assert_error(response, 422, "validation_error")
    assert_error(api.post("/models", {"name": "m", "nmae": "x"}), 422, "validation_error", "nmae")
    assert api.get("/models").get_json()["items"] == []


def test_a_body_that_is_not_json_is_415(api: Api) -> None:
    for content_type, data in (
        ("text/plain", "name=m"),
        ("application/x-www-form-urlencoded", "name=m"),
        ("application/xml", "<model name='m'/>"),
        ("text/html", "<p>m</p>"),
    ):
        for method in ("POST", "PUT"):
            path = "/api/v1/models" if method == "POST" else "/api/v1/environments/E"
            response = api.client.open(path, method=method, data=data, content_type=content_type)
            assert_error(response, 415, "unsupported_media_type")
            _never_html(response)
    assert api.get("/models").get_json()["items"] == []
    assert api.get("/environments").get_json()["items"] == []


def test_a_json_body_larger_than_the_limit_is_413(app: Flask, api: Api) -> None:
    limit = app.extensions["modelreg"].settings.max_json_bytes
    body = json.dumps({"name": "m", "description": "x" * limit})
    response = api.client.post("/api/v1/models", data=body, content_type="application/json")
    error = assert_error(response, 413, "payload_too_large")
    assert error["details"]["limit"] == limit
    _never_html(response)
    assert api.get("/models").get_json()["items"] == []


def _chunked(api: Api, body: bytes) -> TestResponse:
    """A body streamed without Content-Length, as a WSGI server hands a chunked request."""
    return api.client.post(
        "/api/v1/models",
        input_stream=io.BytesIO(body),
        headers={"Transfer-Encoding": "chunked", "Content-Type": "application/json"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_a_streamed_json_body_over_the_limit_is_413_and_one_of_exactly_the_limit_is_accepted(
    app: Flask, api: Api
) -> None:
    limit = app.extensions["modelreg"].settings.max_json_bytes
    body = json.dumps({"name": "m", "description": "x" * limit}).encode()
    assert_error(_chunked(api, body), 413, "payload_too_large")
    assert api.get("/models").get_json()["items"] == []

    skeleton = json.dumps({"name": "m", "description": ""}).encode()
    body = json.dumps({"name": "m", "description": "x" * (limit - len(skeleton))}).encode()
    assert len(body) == limit
    response = _chunked(api, body)
    assert response.status_code == 201, response.get_json()
    assert api.get("/models/m").get_json()["description"] == "x" * (limit - len(skeleton))


def test_a_multipart_body_far_over_the_artifact_limit_is_refused_before_reading(
    app: Flask, api: Api
) -> None:
    create_model(api, "m")
    api.post("/models/m/versions", {"version": "1.0"})
    settings = app.extensions["modelreg"].settings
    # The declared length alone is over the cap: refused without reading the body.
    response = api.client.post(
        "/api/v1/models/m/versions/1.0/runs",
        input_stream=io.BytesIO(b""),
        content_type="multipart/form-data; boundary=x",
        environ_overrides={"CONTENT_LENGTH": str(settings.max_artifact_bytes + 2 * 1024 * 1024)},
    )
    assert_error(response, 413, "payload_too_large")
    assert api.get("/models/m/versions/1.0/runs").get_json()["items"] == []


def test_integers_beyond_any_id_are_clean_client_errors_not_500(api: Api) -> None:
    """SQLite cannot even bind integers past 64 bits; they must never reach a query."""
    create_model(api, "m")
    api.post("/models/m/versions", {"version": "1.0"})
    api.post("/datasets", {"name": "d", "sha256": "a" * 64})
    api.put("/environments/E", {})
    api.put(
        "/environments/E/policies/m",
        {"stages": ["None"], "metric": "f1", "dataset": "d", "reason": "test"},
    )
    run_id = api.upload_run("m", "1.0", b"x", {}).get_json()["id"]
    huge = 2**70
    assert_error(api.get(f"/runs/{huge}"), 404, "not_found")
    assert_error(api.get(f"/runs/{2**63}/artifact"), 404, "not_found")
    assert_error(
        api.post(f"/runs/{huge}/evaluations", {"dataset": "d", "metrics": {"f1": 1}}),
        404,
        "not_found",
    )
    assert_error(
        api.put("/environments/E/models/m/pin", {"run_id": huge}),
        422,
        "validation_error",
        "run_id",
    )
    assert_error(
        api.post(f"/runs/{run_id}/evaluations", {"dataset": f"d@{huge}", "metrics": {"f1": 1}}),
        422,
        "validation_error",
        "dataset",
    )
    token = base64.urlsafe_b64encode(json.dumps({"k": huge}).encode()).decode().rstrip("=")
    assert_error(
        api.get(f"/environments/E/models/m/history?page_token={token}"), 400, "bad_request"
    )


def test_a_version_with_more_digits_than_python_converts_is_422_not_500(api: Api) -> None:
    create_model(api, "m")
    api.post("/models/m/versions", {"version": "1.0"})
    huge = "9" * 5000
    assert_error(api.get(f"/models/m/versions/{huge}"), 422, "validation_error", "version")
    assert_error(api.get(f"/models/m/versions?spec=<={huge}"), 422, "validation_error", "spec")


def test_errors_carry_the_contract_shape_for_service_failures(api: Api) -> None:
    create_model(api, "m")
    error = assert_error(api.post("/models", {"name": "M"}), 409, "already_exists")
    assert error["details"] == {"name": "M"}
    error = assert_error(api.get("/models/zzz"), 404, "not_found")
    assert error["details"] == {"model": "zzz"}


def test_a_validation_error_on_one_field_says_it_in_one_sentence_without_repeating_the_name(
    api: Api,
) -> None:
    create_model(api, "m")
    api.post("/models/m/versions", {"version": "1.0"})
    assert move_to(api, "m", "1.0", "Staging").status_code == 200
    sentence = "a reason is required for a transition into or out of Production"
    error = assert_error(
        api.post("/models/m/versions/1.0/transitions", {"stage": "Production", "reason": ""}),
        422,
        "validation_error",
    )
    assert error["message"] == sentence
    assert error["details"] == {"reason": [sentence]}

    # A message that the field's name completes gets it in front.
    error = assert_error(
        api.post("/datasets", {"name": "d", "sha256": "x"}), 422, "validation_error"
    )
    assert error["message"] == "sha256 must be 64 hexadecimal characters"
    assert error["details"] == {"sha256": ["must be 64 hexadecimal characters"]}

    # The request parser's own wording, said of the field.
    error = assert_error(api.post("/models", {}), 422, "validation_error")
    assert error["message"] == "name is required"
    assert error["details"] == {"name": ["Missing data for required field."]}
    error = assert_error(api.post("/models", {"name": "m!"}), 422, "validation_error")
    assert error["message"].startswith("name must be 1-100 letters")
    assert len(error["details"]["name"]) == 1


def test_a_validation_error_on_several_fields_says_how_many_and_which(api: Api) -> None:
    create_model(api, "m")
    api.post("/models/m/versions", {"version": "1.0"})
    error = assert_error(
        api.post("/models/m/versions/1.0/transitions", {"stge": "Staging", "reason": 3}),
        422,
        "validation_error",
    )
    assert error["message"] == "3 fields are invalid: reason, stage, stge"
    assert set(error["details"]) == {"reason", "stage", "stge"}

    # Nested fields are named by their path; metadata errors say which part they are in.
    run = create_run(api, "m", "1.0")
    error = assert_error(
        api.post(f"/runs/{run['id']}/evaluations", {"dataset": "d", "metrics": {"f1": "x"}}),
        422,
        "validation_error",
    )
    assert error["message"] == "metrics.f1 is not a valid number"
    assert error["details"] == {"metrics": {"f1": {"value": ["Not a valid number."]}}}
    error = assert_error(
        api.upload_run("m", "1.0", b"x", {"params": [1], "tags": "t"}), 422, "validation_error"
    )
    assert error["message"] == "in the run metadata, 2 fields are invalid: params, tags"
