"""Served bytes are the registered bytes: a stored file changed on disk is never served
whole, is quarantined, audited and counted, and uploading the content again repairs it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest

from modelreg.storage.artifacts import CHUNK, VerifiedFiles
from modelreg.web.downloads import IntegrityError
from tests.integration.conftest import Api, assert_error, sha
from tests.integration.test_dataset_content import upload as upload_dataset
from tests.integration.test_dataset_content import wine_csv
from tests.integration.test_metrics import scrape, value

CONTENT = bytes(range(256)) * 4096 * 3  # 3 MiB: more than one chunk
FAILURES = "modelreg_artifact_integrity_failures_total"


def blob_path(tmp_path: Path, digest: str) -> Path:
    return tmp_path / "artifacts" / "sha256" / digest[:2] / digest[2:4] / digest


def tamper_same_length(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def tamper_other_length(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-10])


def register(api: Api, content: bytes = CONTENT) -> dict:  # type: ignore[type-arg]
    if api.get("/models/m").status_code == 404:
        api.post("/models", {"name": "m"})
        api.post("/models/m/versions", {"version": "1.0"})
    got = api.upload_run("m", "1.0", content)
    assert got.status_code == 201, got.json
    return got.json  # type: ignore[no-any-return]


def broken_download(api: Api, path: str) -> int:
    """Download ``path``, expecting the transfer to break; the bytes received."""
    received = 0
    with pytest.raises(IntegrityError, match="hash to"):
        response = api.get(path, buffered=False)
        assert response.status_code == 200
        for chunk in response.response:
            received += len(chunk)
    return received


def corrupt_audit(api: Api, digest: str) -> list[dict]:  # type: ignore[type-arg]
    items = api.get("/audit?action=artifact.corrupt").get_json()["items"]
    return [i for i in items if i["target"] == f"blobs/{digest}"]


def test_a_changed_artifact_of_the_same_length_breaks_the_transfer_before_its_end(
    api: Api, tmp_path: Path
) -> None:
    run = register(api)
    digest = run["artifact"]["sha256"]
    failures = value(scrape(api), FAILURES)
    tamper_same_length(blob_path(tmp_path, digest))

    received = broken_download(api, f"/runs/{run['id']}/artifact")

    assert 0 < received < len(CONTENT)  # never the complete body

    [entry] = corrupt_audit(api, digest)
    assert entry["before"] == {"sha256": digest, "size": len(CONTENT)}
    assert entry["after"]["quarantined_as"].startswith(digest)
    assert value(scrape(api), FAILURES) == failures + 1
    again = api.get(f"/runs/{run['id']}/artifact")
    error = assert_error(again, 503, "unavailable")
    assert error["details"] == {"sha256": digest, "quarantined": True}
    assert not blob_path(tmp_path, digest).exists()


def test_a_changed_artifact_of_another_length_is_refused_before_a_byte_is_sent(
    api: Api, tmp_path: Path
) -> None:
    run = register(api)
    digest = run["artifact"]["sha256"]
    tamper_other_length(blob_path(tmp_path, digest))

    first = api.get(f"/runs/{run['id']}/artifact")

    assert_error(first, 503, "unavailable")
    assert len(corrupt_audit(api, digest)) == 1
    assert_error(api.get(f"/runs/{run['id']}/artifact"), 503, "unavailable")
    assert len(corrupt_audit(api, digest)) == 1  # remembered, not found again


@pytest.mark.parametrize("tamper", [tamper_same_length, tamper_other_length])
def test_registering_the_same_content_again_repairs_a_quarantined_artifact(
    api: Api, tmp_path: Path, tamper: Callable[[Path], None]
) -> None:
    run = register(api)
    digest = run["artifact"]["sha256"]
    tamper(blob_path(tmp_path, digest))
    first = api.get(f"/runs/{run['id']}/artifact", buffered=False)
    with contextlib.suppress(IntegrityError):  # a broken transfer (same length) or a 503
        b"".join(first.response)
    assert_error(api.get(f"/runs/{run['id']}/artifact"), 503, "unavailable")

    register(api)

    assert api.get(f"/runs/{run['id']}/artifact").data == CONTENT
    repairs = api.get("/audit?action=artifact.repair").get_json()["items"]
    assert [r["target"] for r in repairs] == [f"blobs/{digest}"]


def test_registering_the_same_content_replaces_a_changed_copy_nobody_downloaded_yet(
    api: Api, tmp_path: Path
) -> None:
    run = register(api)
    digest = run["artifact"]["sha256"]
    tamper_same_length(blob_path(tmp_path, digest))

    register(api)

    assert blob_path(tmp_path, digest).read_bytes() == CONTENT
    assert api.get(f"/runs/{run['id']}/artifact").data == CONTENT
    assert corrupt_audit(api, digest) == []


def test_a_range_of_a_changed_artifact_is_refused_since_the_whole_file_is_checked_first(
    api: Api, tmp_path: Path
) -> None:
    run = register(api)
    digest = run["artifact"]["sha256"]
    tamper_same_length(blob_path(tmp_path, digest))

    part = api.get(f"/runs/{run['id']}/artifact", headers={"Range": "bytes=0-99"})

    assert_error(part, 503, "unavailable")
    assert len(corrupt_audit(api, digest)) == 1


def test_an_intact_artifact_downloads_whole_and_by_range(api: Api) -> None:
    run = register(api)

    assert api.get(f"/runs/{run['id']}/artifact").data == CONTENT
    part = api.get(f"/runs/{run['id']}/artifact", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.data == CONTENT[100:200]
    assert api.get("/audit?action=artifact.corrupt").get_json()["items"] == []


def test_a_file_changed_after_it_was_verified_is_verified_again(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Remember verifications at once (no clock margin), as for a file stored long ago.
    monkeypatch.setattr(VerifiedFiles, "TIME_MARGIN_NS", -(10**18))
    run = register(api)
    digest = run["artifact"]["sha256"]
    assert api.get(f"/runs/{run['id']}/artifact").data == CONTENT  # verified, remembered
    tamper_same_length(blob_path(tmp_path, digest))

    broken_download(api, f"/runs/{run['id']}/artifact")

    assert len(corrupt_audit(api, digest)) == 1


def test_changed_dataset_content_is_not_served_and_uploading_it_again_repairs_it(
    api: Api, tmp_path: Path
) -> None:
    content = wine_csv()
    assert upload_dataset(api, content).status_code == 201
    digest = sha(content)
    path = "/datasets/wine-holdout/revisions/1/content"
    tamper_same_length(blob_path(tmp_path, digest))

    # A test set fits one read: it is hashed whole before its first byte is sent, so
    # even the first request is refused outright rather than cut short.
    assert len(content) <= CHUNK
    error = assert_error(api.get(path), 503, "unavailable")
    assert error["details"] == {"sha256": digest, "quarantined": True}
    assert_error(api.get(path), 503, "unavailable")
    assert len(corrupt_audit(api, digest)) == 1

    assert upload_dataset(api, content).status_code == 200
    assert api.get(path).data == content
