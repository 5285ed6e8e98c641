"""Serving layers download artifacts: whole, resumed by range, or not at all when cached."""

from __future__ import annotations

from pathlib import Path

from tests.integration.conftest import Api, assert_error

CONTENT = bytes(range(256)) * 40


def _run(api: Api, filename: str = "model.joblib") -> dict:  # type: ignore[type-arg]
    api.post("/models", {"name": "m"})
    api.post("/models/m/versions", {"version": "1.0"})
    got = api.upload_run("m", "1.0", CONTENT, filename=filename)
    assert got.status_code == 201, got.json
    return got.json  # type: ignore[no-any-return]


def test_an_interrupted_download_resumes_with_a_range_request(api: Api) -> None:
    run = _run(api)

    part = api.get(f"/runs/{run['id']}/artifact", headers={"Range": "bytes=1000-"})

    assert part.status_code == 206
    assert part.data == CONTENT[1000:]
    assert part.headers["Content-Range"] == f"bytes 1000-{len(CONTENT) - 1}/{len(CONTENT)}"


def test_a_download_is_sized_and_cacheable_forever_because_content_never_changes(
    api: Api,
) -> None:
    run = _run(api)

    whole = api.get(f"/runs/{run['id']}/artifact")

    assert whole.headers["Content-Length"] == str(len(CONTENT))
    assert whole.headers["ETag"] == f'"{run["artifact"]["sha256"]}"'
    assert "immutable" in whole.headers["Cache-Control"]
    assert whole.headers["X-Artifact-Format"] == "joblib"


def test_a_non_ascii_file_name_comes_back_in_the_disposition_header(api: Api) -> None:
    run = _run(api, filename="modèle.joblib")

    whole = api.get(f"/runs/{run['id']}/artifact")

    assert "filename*=UTF-8''mod%C3%A8le.joblib" in whole.headers["Content-Disposition"]
    assert whole.data == CONTENT


def test_bytes_lost_from_the_artifact_store_are_a_503_naming_them_not_a_crash(
    api: Api, tmp_path: Path
) -> None:
    run = _run(api)
    digest = run["artifact"]["sha256"]
    (tmp_path / "artifacts" / "sha256" / digest[:2] / digest[2:4] / digest).unlink()

    response = api.get(f"/runs/{run['id']}/artifact")

    error = assert_error(response, 503, "unavailable")
    assert error["details"] == {"sha256": digest}
    assert "artifact store" in error["message"]
