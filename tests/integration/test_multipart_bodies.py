"""Upload bodies as the service parses them (service/web/multipart.py), on both databases."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.integration.conftest import Api, assert_error, create_model, create_version, sha

RUNS = "/api/v1/models/m/versions/1.0/runs"


def stored_files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "artifacts"
    return sorted(p for d in ("sha256", "tmp") for p in (root / d).rglob("*") if p.is_file())


def raw_post(api: Api, body: bytes, boundary: str = "BB") -> object:
    return api.client.post(
        RUNS, data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    return f"--BB\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


def setup(api: Api) -> None:
    create_model(api, "m")
    create_version(api, "m", "1.0")


def test_an_artifact_larger_than_a_read_is_stored_byte_for_byte(api: Api, tmp_path: Path) -> None:
    setup(api)
    # 4.5 MiB: several 1 MiB reads, the hashing moves to its thread past 4 MiB, and
    # delimiter look-alikes (a delimiter's first bytes, then not) sit right at the read
    # boundaries. A whole delimiter cannot be content (RFC 2046): clients pick boundaries
    # that do not occur in it, and python-multipart 0.0.3x refuses one that does.
    content = bytearray(os.urandom(4 * 1024 * 1024 + 512 * 1024))
    for edge in (1024 * 1024 - 3, 2 * 1024 * 1024 - 1, 3 * 1024 * 1024):
        content[edge : edge + 6] = b"\r\n--Bx"
    body = part("metadata", b"{}") + part("artifact", bytes(content), "m.bin") + b"--BB--\r\n"

    response = raw_post(api, body)

    assert response.status_code == 201, response.get_json()  # type: ignore[attr-defined]
    artifact = response.get_json()["artifact"]  # type: ignore[attr-defined]
    assert artifact["sha256"] == sha(bytes(content))
    assert artifact["size"] == len(content)
    run_id = response.get_json()["id"]  # type: ignore[attr-defined]
    assert api.get(f"/runs/{run_id}/artifact").data == bytes(content)
    assert [p.name for p in stored_files(tmp_path)] == [sha(bytes(content))]


def test_an_empty_artifact_sent_as_http_clients_send_it_is_a_run_of_zero_bytes(api: Api) -> None:
    setup(api)

    response = api.upload_run("m", "1.0", b"")

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["artifact"]["size"] == 0


def test_a_body_cut_off_before_its_closing_boundary_is_a_400_and_nothing_is_kept(
    api: Api, tmp_path: Path
) -> None:
    setup(api)
    body = part("metadata", b"{}") + b'--BB\r\nContent-Disposition: form-data; name="artifact"; '
    body += b'filename="m.bin"\r\n\r\n' + os.urandom(2 * 1024 * 1024)

    response = raw_post(api, body)

    error = assert_error(response, 400, "bad_request")  # type: ignore[arg-type]
    assert "closing boundary" in error["message"]
    assert stored_files(tmp_path) == []
    assert api.get("/models/m/versions/1.0/runs").get_json()["items"] == []


def test_a_part_with_headers_only_is_a_400_naming_the_missing_boundary(api: Api) -> None:
    setup(api)
    # RFC 2046 allows it; no HTTP client sends it (Werkzeug's test encoder does).
    body = part("metadata", b"{}")
    body += b'--BB\r\nContent-Disposition: form-data; name="artifact"; filename="m.bin"\r\n\r\n'
    body += b"--BB--\r\n"

    response = raw_post(api, body)

    error = assert_error(response, 400, "bad_request")  # type: ignore[arg-type]
    assert "malformed multipart/form-data body" in error["message"]


def test_a_part_header_that_is_not_utf8_is_a_400(api: Api) -> None:
    setup(api)
    body = part("metadata", b"{}") + part("artifact", b"bytes", "m\xe9.bin") + b"--BB--\r\n"
    body = body.replace("m\u00e9.bin".encode(), b"m\xe9.bin")

    response = raw_post(api, body)

    assert_error(response, 400, "bad_request")  # type: ignore[arg-type]


def test_a_part_without_a_form_data_name_is_a_400(api: Api) -> None:
    setup(api)
    body = b"--BB\r\nContent-Disposition: attachment\r\n\r\nx\r\n--BB--\r\n"

    response = raw_post(api, body)

    error = assert_error(response, 400, "bad_request")  # type: ignore[arg-type]
    assert "form-data name" in error["message"]


def test_a_text_part_over_the_form_memory_limit_is_a_413(api: Api, tmp_path: Path) -> None:
    setup(api)
    big = json.dumps({"params": {"blob": "x" * 600_000}}).encode()  # Flask's limit: 500 kB
    body = part("metadata", big) + part("artifact", b"bytes", "m.bin") + b"--BB--\r\n"

    response = raw_post(api, body)

    assert_error(response, 413, "payload_too_large")  # type: ignore[arg-type]
    assert stored_files(tmp_path) == []


def test_more_parts_than_the_form_allows_is_a_413(api: Api) -> None:
    setup(api)
    body = b"".join(part(f"f{i}", b"v") for i in range(1001)) + b"--BB--\r\n"

    response = raw_post(api, body)

    assert_error(response, 413, "payload_too_large")  # type: ignore[arg-type]


def test_a_text_part_is_decoded_by_its_declared_charset(api: Api) -> None:
    setup(api)
    meta = json.dumps({"params": {"author": "J\u00fcrgen"}}, ensure_ascii=False)
    body = (
        b'--BB\r\nContent-Disposition: form-data; name="metadata"\r\n'
        b"Content-Type: application/json; charset=iso-8859-1\r\n\r\n"
        + meta.encode("latin-1")
        + b"\r\n"
        + part("artifact", b"bytes", "m.bin")
        + b"--BB--\r\n"
    )

    response = raw_post(api, body)

    assert response.status_code == 201, response.get_json()  # type: ignore[attr-defined]
    assert response.get_json()["params"] == {"author": "J\u00fcrgen"}  # type: ignore[attr-defined]
