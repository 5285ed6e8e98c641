"""Runs: multipart registration, numbering, metadata, artifact download and its failures."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from flask import Flask

from tests.integration.conftest import (
    Api,
    assert_error,
    champion,
    create_model,
    create_run,
    create_version,
    history,
    put_environment,
    put_policy,
    register_dataset,
    sha,
)


def _artifact_root(app: Flask) -> Path:
    return Path(app.extensions["modelreg"].settings.resolved_artifact_root)


def _stored_files(app: Flask) -> list[Path]:
    """Every file under the artifact root (the temporary upload area included)."""
    root = _artifact_root(app)
    return sorted(Path(d) / f for d, _, files in os.walk(root) for f in files)


def _runs_of(api: Api, model: str = "m", version: str = "1.0") -> list[dict[str, object]]:
    response = api.get(f"/models/{model}/versions/{version}/runs")
    assert response.status_code == 200, response.get_json()
    items: list[dict[str, object]] = response.get_json()["items"]
    return items


def _setup(api: Api) -> None:
    create_model(api, "m")
    create_version(api, "m", "1.0")


def test_runs_of_a_version_are_numbered_1_2_3(api: Api) -> None:
    _setup(api)
    create_version(api, "m", "2.0")
    numbers = [create_run(api, "m", "1.0")["number"] for _ in range(3)]
    assert numbers == [1, 2, 3]
    assert create_run(api, "m", "2.0")["number"] == 1
    assert [r["number"] for r in _runs_of(api)] == [1, 2, 3]


def test_a_new_run_answers_201_with_id_number_and_artifact_sha256_size_and_format(api: Api) -> None:
    _setup(api)
    content = b"\x00\x01 model bytes \xff"
    response = api.upload_run("m", "1.0", content, {}, filename="model.joblib")
    assert response.status_code == 201
    body = response.get_json()
    assert isinstance(body["id"], int)
    assert body["number"] == 1
    assert body["artifact"]["sha256"] == sha(content)
    assert body["artifact"]["size"] == len(content)
    assert body["artifact"]["format"] == "joblib"

    declared = api.upload_run("m", "1.0", b"x", {"format": "onnx"}, filename="m.bin")
    assert declared.get_json()["artifact"]["format"] == "onnx"
    guessed = api.upload_run("m", "1.0", b"y", {}, filename="m.bin")
    assert guessed.get_json()["artifact"]["format"] == "binary"
    checked = api.upload_run("m", "1.0", b"ok", {"expected_sha256": sha(b"ok")})
    assert checked.status_code == 201
    upper = api.upload_run("m", "1.0", b"OK", {"expected_sha256": sha(b"OK").upper()})
    assert upper.status_code == 201, upper.get_json()
    assert upper.get_json()["artifact"]["sha256"] == sha(b"OK")


def test_a_run_reads_back_with_the_design_shape_and_an_unknown_one_is_404(api: Api) -> None:
    _setup(api)
    metadata = {
        "params": {"alpha": 0.5, "layers": [1, 2]},
        "tags": {"team": "ml"},
        "source": {"git_commit": "abc123", "pipeline": "ci-42"},
    }
    content = b"pickled"
    created = api.upload_run("m", "1.0.0", content, metadata, filename="m.pkl").get_json()
    response = api.get(f"/runs/{created['id']}")
    assert response.status_code == 200
    run = response.get_json()
    for key in (
        "id",
        "model",
        "version",
        "number",
        "artifact",
        "params",
        "tags",
        "source",
        "created_at",
    ):
        assert key in run, key
    assert run["id"] == created["id"]
    assert run["model"] == "m"
    assert run["version"] == "1.0"
    assert run["number"] == 1
    assert run["artifact"]["sha256"] == sha(content)
    assert run["artifact"]["size"] == len(content)
    assert run["artifact"]["format"] == "pickle"
    assert run["params"] == metadata["params"]
    assert run["tags"] == metadata["tags"]
    assert run["source"] == metadata["source"]
    assert run["created_at"].endswith(("Z", "+00:00"))
    assert_error(api.get("/runs/999"), 404, "not_found")
    assert_error(api.get("/runs/999/artifact"), 404, "not_found")


def test_the_artifact_downloads_byte_for_byte_with_the_sha256_as_etag(api: Api) -> None:
    _setup(api)
    content = bytes(range(256)) * 40
    run = api.upload_run("m", "1.0", content, {}).get_json()
    response = api.get(f"/runs/{run['id']}/artifact")
    assert response.status_code == 200
    assert response.data == content
    assert response.headers["ETag"].strip('"') == sha(content)
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert "attachment" in response.headers["Content-Disposition"]


def test_downloading_an_artifact_with_its_etag_answers_304_without_a_body(api: Api) -> None:
    _setup(api)
    content = b"cache me"
    run = api.upload_run("m", "1.0", content, {}).get_json()
    response = api.get(
        f"/runs/{run['id']}/artifact", headers={"If-None-Match": f'"{sha(content)}"'}
    )
    assert response.status_code == 304
    assert response.data == b""
    changed = api.get(f"/runs/{run['id']}/artifact", headers={"If-None-Match": '"other"'})
    assert changed.status_code == 200
    assert changed.data == content


def test_two_runs_with_identical_bytes_share_one_stored_artifact(app: Flask, api: Api) -> None:
    _setup(api)
    first = api.upload_run("m", "1.0", b"same", {}).get_json()
    second = api.upload_run("m", "1.0", b"same", {}).get_json()
    assert first["id"] != second["id"]
    assert first["artifact"]["sha256"] == second["artifact"]["sha256"]
    stored = [p for p in _stored_files(app) if p.name == sha(b"same")]
    assert len(stored) == 1
    assert api.get(f"/runs/{second['id']}/artifact").data == b"same"


def test_an_expected_sha256_mismatch_is_422_and_stores_neither_run_nor_file(
    app: Flask, api: Api
) -> None:
    _setup(api)
    response = api.upload_run("m", "1.0", b"corrupted", {"expected_sha256": sha(b"original")})
    assert_error(response, 422, "validation_error", "expected_sha256")
    assert _runs_of(api) == []
    assert _stored_files(app) == []
    response = api.upload_run("m", "1.0", b"x", {"expected_sha256": "abc"})
    assert_error(response, 422, "validation_error", "expected_sha256")
    assert _stored_files(app) == []
    # The next run still gets number 1: nothing of the failed uploads remains.
    assert create_run(api, "m", "1.0")["number"] == 1


def test_an_artifact_larger_than_the_limit_is_413_and_nothing_is_stored(
    app: Flask, api: Api
) -> None:
    _setup(api)
    limit = app.extensions["modelreg"].settings.max_artifact_bytes
    response = api.upload_run("m", "1.0", b"\0" * (limit + 1), {})
    assert_error(response, 413, "payload_too_large")
    assert _runs_of(api) == []
    assert _stored_files(app) == []


def test_an_artifact_of_exactly_the_limit_is_accepted(app: Flask, api: Api) -> None:
    _setup(api)
    limit = app.extensions["modelreg"].settings.max_artifact_bytes
    response = api.upload_run("m", "1.0", b"\1" * limit, {})
    assert response.status_code == 201
    assert response.get_json()["artifact"]["size"] == limit


def test_a_filename_with_dot_dot_is_kept_only_as_its_last_component(app: Flask, api: Api) -> None:
    _setup(api)
    content = b"evil"
    response = api.upload_run("m", "1.0", content, {}, filename="../../../../etc/evil.pkl")
    assert response.status_code == 201
    run = api.get(f"/runs/{response.get_json()['id']}").get_json()
    assert run["artifact"]["filename"] == "evil.pkl"
    assert run["artifact"]["format"] == "pickle"
    root = _artifact_root(app)
    assert _stored_files(app) == [
        root / "sha256" / sha(content)[:2] / sha(content)[2:4] / sha(content)
    ]
    assert not (root.parent / "etc").exists()
    assert not Path("/etc/evil.pkl").exists()
    download = api.get(f"/runs/{run['id']}/artifact")
    assert download.data == content
    assert "evil.pkl" in download.headers["Content-Disposition"]
    assert ".." not in download.headers["Content-Disposition"]

    windows = api.upload_run("m", "1.0", b"w", {}, filename="C:\\temp\\..\\model.onnx")
    name = api.get(f"/runs/{windows.get_json()['id']}").get_json()["artifact"]["filename"]
    # Whatever the multipart quoting made of the backslashes, no separator survives.
    assert name.endswith("model.onnx")
    assert "/" not in name and "\\" not in name


def test_source_is_provenance_and_never_decides_where_the_artifact_goes(
    app: Flask, api: Api
) -> None:
    _setup(api)
    source = {"path": "/tmp/escape", "uri": "file:///etc/passwd"}
    response = api.upload_run("m", "1.0", b"prov", {"source": source})
    assert response.status_code == 201
    assert api.get(f"/runs/{response.get_json()['id']}").get_json()["source"] == source
    assert all(p.is_relative_to(_artifact_root(app)) for p in _stored_files(app))
    assert not Path("/tmp/escape").exists()


def test_a_run_without_an_artifact_file_part_is_422_naming_artifact(app: Flask, api: Api) -> None:
    _setup(api)
    response = api.client.post(
        "/api/v1/models/m/versions/1.0/runs",
        data={"metadata": "{}"},
        content_type="multipart/form-data",
    )
    assert_error(response, 422, "validation_error", "artifact")
    as_field = api.client.post(
        "/api/v1/models/m/versions/1.0/runs",
        data={"artifact": "not a file", "metadata": "{}"},
        content_type="multipart/form-data",
    )
    assert_error(as_field, 422, "validation_error", "artifact")
    assert _runs_of(api) == []


def test_a_run_registered_as_json_is_415(api: Api) -> None:
    _setup(api)
    assert_error(
        api.post("/models/m/versions/1.0/runs", {"params": {}}), 415, "unsupported_media_type"
    )
    raw = api.client.post(
        "/api/v1/models/m/versions/1.0/runs", data=b"raw", content_type="application/octet-stream"
    )
    assert_error(raw, 415, "unsupported_media_type")
    assert _runs_of(api) == []


def test_a_run_of_an_unknown_model_or_version_is_404_and_stores_nothing(
    app: Flask, api: Api
) -> None:
    _setup(api)
    assert_error(api.upload_run("nope", "1.0", b"a", {}), 404, "not_found")
    assert_error(api.upload_run("m", "9.9", b"b", {}), 404, "not_found")
    assert_error(api.upload_run("m", "bogus", b"c", {}), 422, "validation_error", "version")
    assert _stored_files(app) == []
    assert _runs_of(api) == []


def test_invalid_metadata_json_is_400_and_stores_nothing(app: Flask, api: Api) -> None:
    _setup(api)
    response = api.client.post(
        "/api/v1/models/m/versions/1.0/runs",
        data={"artifact": (io.BytesIO(b"x"), "m.pkl"), "metadata": "{not json"},
        content_type="multipart/form-data",
    )
    assert_error(response, 400, "bad_request", "metadata")
    assert _runs_of(api) == []
    assert _stored_files(app) == []


def test_metadata_that_is_not_an_object_of_the_right_fields_is_422_naming_the_field(
    api: Api,
) -> None:
    _setup(api)
    response = api.client.post(
        "/api/v1/models/m/versions/1.0/runs",
        data={"artifact": (io.BytesIO(b"x"), "m.pkl"), "metadata": "[1, 2]"},
        content_type="multipart/form-data",
    )
    assert_error(response, 422, "validation_error", "metadata")
    assert_error(
        api.upload_run("m", "1.0", b"x", {"params": [1]}), 422, "validation_error", "params"
    )
    assert _runs_of(api) == []


def test_metadata_may_come_as_a_file_part(api: Api) -> None:
    _setup(api)
    response = api.client.post(
        "/api/v1/models/m/versions/1.0/runs",
        data={
            "artifact": (io.BytesIO(b"x"), "m.pkl"),
            "metadata": (io.BytesIO(json.dumps({"tags": {"a": "b"}}).encode()), "meta.json"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    assert api.get(f"/runs/{response.get_json()['id']}").get_json()["tags"] == {"a": "b"}


def _prod_policy(api: Api) -> None:
    register_dataset(api)
    put_environment(api, "INT")
    assert put_policy(api, "INT", "m", stages=["None", "Staging"]).status_code == 201


def test_evaluations_in_the_metadata_are_stored_and_move_the_champion_at_once(api: Api) -> None:
    _setup(api)
    _prod_policy(api)
    assert champion(api, "INT", "m") is None
    run = create_run(api, "m", "1.0", {"f1": 0.9, "accuracy": 0.95})
    detail = api.get(f"/runs/{run['id']}").get_json()
    values = {e["metric"]: (e["value"], e["dataset"], e["source"]) for e in detail["evaluations"]}
    assert values == {
        "f1": (0.9, "holdout@1", "reported"),
        "accuracy": (0.95, "holdout@1", "reported"),
    }
    served = champion(api, "INT", "m")
    assert served is not None
    assert served["run_id"] == run["id"]
    assert served["metric"] == {"name": "f1", "value": 0.9, "dataset": "holdout@1"}
    assert history(api, "INT", "m")[0]["to_run_id"] == run["id"]


def test_a_nan_metric_in_the_metadata_is_422_and_stores_nothing(app: Flask, api: Api) -> None:
    _setup(api)
    _prod_policy(api)
    response = api.upload_run(
        "m",
        "1.0",
        b"x",
        '{"evaluations": [{"dataset": "holdout", "metrics": {"f1": NaN}}]}',
        filename="m.pkl",
    )
    assert_error(response, 422, "validation_error", "evaluations")
    assert _runs_of(api) == []
    assert _stored_files(app) == []
    assert champion(api, "INT", "m") is None


def test_an_unknown_dataset_in_the_metadata_is_422_and_stores_nothing(app: Flask, api: Api) -> None:
    _setup(api)
    _prod_policy(api)
    response = api.upload_run(
        "m", "1.0", b"x", {"evaluations": [{"dataset": "missing", "metrics": {"f1": 0.5}}]}
    )
    assert_error(response, 422, "validation_error", "evaluations.0.dataset")
    assert _runs_of(api) == []
    assert _stored_files(app) == []


def test_the_run_list_of_a_version_pages_by_number(api: Api) -> None:
    _setup(api)
    for _ in range(5):
        create_run(api, "m", "1.0")
    first = api.get("/models/m/versions/1.0/runs?page_size=2").get_json()
    assert [r["number"] for r in first["items"]] == [1, 2]
    second = api.get(
        f"/models/m/versions/1.0/runs?page_size=2&page_token={first['next_page_token']}"
    ).get_json()
    assert [r["number"] for r in second["items"]] == [3, 4]
