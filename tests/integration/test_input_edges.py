"""Inputs that only the database would have refused get a 422 naming the field, never a 500."""

from __future__ import annotations

import hashlib
import threading

import pytest
from flask import Flask

from tests.integration.conftest import Api, authorized, register_dataset


def _model(api: Api) -> None:
    api.post("/models", {"name": "m"})
    api.post("/models/m/versions", {"version": "1.0"})


@pytest.mark.parametrize(
    "raw", ['{"name": "n", "tags": {"a": {"b": NaN}}}', '{"name": "n", "tags": {"x": 1e400}}']
)
def test_non_finite_numbers_nested_in_tags_are_refused_with_the_field_named(
    api: Api, raw: str
) -> None:
    got = api.client.post("/api/v1/models", data=raw, content_type="application/json")

    assert got.status_code == 422
    assert "tags" in got.json["error"]["details"]
    assert api.get("/models/n").status_code == 404


def test_a_non_finite_param_in_run_metadata_stores_no_run(api: Api) -> None:
    _model(api)

    got = api.upload_run("m", "1.0", b"x", '{"params": {"lr": Infinity}}', filename="m.bin")

    assert got.status_code == 422
    assert "params" in got.json["error"]["details"]
    assert api.get("/models/m/versions/1.0/runs").json["items"] == []


def test_a_nul_character_in_free_form_json_is_refused(api: Api) -> None:
    got = api.post("/models", {"name": "n", "tags": {"note": "a\x00b"}})

    assert got.status_code == 422
    assert "tags" in got.json["error"]["details"]


def test_a_version_too_long_once_normalized_is_refused_naming_version(api: Api) -> None:
    api.post("/models", {"name": "m"})
    long_version = "1." + "0." * 61 + "0-1"  # 127 characters, 131 once "-1" reads ".post1"

    got = api.post("/models/m/versions", {"version": long_version})

    assert got.status_code == 422
    assert "version" in got.json["error"]["details"]


def test_a_specifier_longer_than_storable_is_refused_naming_versions(api: Api) -> None:
    _model(api)
    register_dataset(api, "d", b"d")
    api.put("/environments/E")
    body = {
        "versions": "<=" + "1." * 300 + "1",
        "stages": ["Production"],
        "metric": "f1",
        "dataset": "d",
        "reason": "test",
    }

    got = api.put("/environments/E/policies/m", body)

    assert got.status_code == 422
    assert "versions" in got.json["error"]["details"]


def test_an_if_match_of_non_ascii_digits_is_a_bad_request(api: Api) -> None:
    _model(api)
    register_dataset(api, "d", b"d")
    api.put("/environments/E")
    body = {"versions": "", "stages": ["Production"], "metric": "f1", "dataset": "d"}

    got = api.put("/environments/E/policies/m", body, headers={"If-Match": "²"})

    assert got.status_code == 400
    assert got.json["error"]["code"] == "bad_request"


def test_two_first_registrations_of_one_dataset_name_both_succeed(app: Flask) -> None:
    digest = hashlib.sha256(b"same content").hexdigest()
    barrier = threading.Barrier(2)
    answers: list[tuple[int, int]] = []

    def register() -> None:
        client = authorized(app.test_client())
        barrier.wait()
        got = client.post("/api/v1/datasets", json={"name": "fresh", "sha256": digest})
        answers.append((got.status_code, got.get_json().get("revision", -1)))

    threads = [threading.Thread(target=register) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert sorted(answers) == [(200, 1), (201, 1)]
