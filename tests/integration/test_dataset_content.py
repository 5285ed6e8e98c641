"""Dataset revisions uploaded with their content: validation, storage, download."""

from __future__ import annotations

import functools
import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask
from werkzeug.test import TestResponse

from modelreg.evaluation import datasets
from modelreg.storage import blobs
from tests.integration.conftest import Api, assert_error, multipart, sha

META = {"name": "wine-holdout", "target": "target", "task": "classification"}


@functools.cache
def _wine() -> Any:
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True, as_frame=True)
    return X.assign(target=y)


def wine_csv(**changes: Any) -> bytes:
    """scikit-learn's wine data as CSV (features + ``target``), optionally changed."""
    frame = _wine().copy()
    for column, values in changes.items():
        frame[column] = values
    return bytes(frame.to_csv(index=False).encode())


def upload(
    api: Api,
    content: bytes,
    metadata: dict[str, Any] | str | None = None,
    filename: str = "wine.csv",
) -> TestResponse:
    """A content upload: multipart ``file`` + ``metadata`` JSON (a string is sent verbatim)."""
    meta = META if metadata is None else metadata
    body, content_type = multipart(
        {
            "file": (filename, content, "text/csv"),
            "metadata": meta if isinstance(meta, str) else json.dumps(meta),
        }
    )
    return api.client.post("/api/v1/datasets", data=body, content_type=content_type)


def stored_files(tmp_path: Path) -> list[Path]:
    """Every file in the artifact store: blobs (``sha256/``) and uploads in flight (``tmp/``)."""
    root = tmp_path / "artifacts"
    return sorted(p for d in ("sha256", "tmp") for p in (root / d).rglob("*") if p.is_file())


def assert_nothing_kept(api: Api, tmp_path: Path) -> None:
    assert stored_files(tmp_path) == []
    assert api.get("/datasets").get_json()["items"] == []


# -- registering content -------------------------------------------------------------------


def test_uploading_a_csv_creates_revision_1_with_its_shape_and_a_content_url(api: Api) -> None:
    content = wine_csv()

    response = upload(api, content, {**META, "description": "30% split"})

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["dataset"] == "wine-holdout"
    assert body["revision"] == 1
    assert body["label"] == "wine-holdout@1"
    assert body["sha256"] == sha(content)
    assert body["description"] == "30% split"
    assert body["has_content"] is True
    assert (body["target"], body["task"], body["format"]) == ("target", "classification", "csv")
    assert body["size"] == len(content)
    assert body["row_count"] == 178
    assert body["columns"] == [*_wine().columns]
    assert body["content_url"] == "/api/v1/datasets/wine-holdout/revisions/1/content"
    assert api.get("/datasets/wine-holdout/revisions/1").get_json() == body


def test_uploading_identical_content_again_returns_the_existing_revision(
    api: Api, tmp_path: Path
) -> None:
    first = upload(api, wine_csv())
    again = upload(api, wine_csv())

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json() == first.get_json()
    assert len(api.get("/datasets/wine-holdout").get_json()["revisions"]) == 1
    assert [p.name for p in stored_files(tmp_path)] == [sha(wine_csv())]


def test_new_content_becomes_the_next_revision(api: Api) -> None:
    upload(api, wine_csv())
    changed = wine_csv(proline=_wine()["proline"] + 1)

    response = upload(api, changed)

    assert response.status_code == 201
    assert response.get_json()["revision"] == 2
    assert response.get_json()["sha256"] == sha(changed)
    revisions = api.get("/datasets/wine-holdout").get_json()["revisions"]
    assert [r["revision"] for r in revisions] == [1, 2]


def test_gzipped_content_is_detected_by_its_bytes_and_downloads_as_uploaded(api: Api) -> None:
    packed = gzip.compress(wine_csv())

    response = upload(api, packed, {**META, "task": "regression"}, filename="holdout.csv")

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["format"], body["sha256"], body["size"]) == ("csv.gz", sha(packed), len(packed))
    assert body["row_count"] == 178
    download = api.get(body["content_url"].removeprefix("/api/v1"))
    assert download.status_code == 200
    assert download.data == packed
    assert gzip.decompress(download.data) == wine_csv()
    assert download.mimetype == "application/gzip"
    assert "Content-Encoding" not in download.headers
    assert download.headers["Content-Disposition"] == 'attachment; filename="wine-holdout@1.csv.gz"'


def test_a_plain_csv_named_like_gzip_is_plain_csv(api: Api) -> None:
    response = upload(api, wine_csv(), filename="holdout.csv.gz")
    assert response.status_code == 201
    assert response.get_json()["format"] == "csv"


def test_feature_columns_may_hold_missing_values_and_strings(api: Api) -> None:
    hue = _wine()["hue"].astype(object)
    hue[[3, 7]] = np.nan
    content = wine_csv(hue=hue, note=["x"] * 178)

    response = upload(api, content)

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["columns"][-1] == "note"


def test_string_class_labels_are_accepted_for_classification(api: Api) -> None:
    names = _wine()["target"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    response = upload(api, wine_csv(target=names))
    assert response.status_code == 201, response.get_json()


# -- refusals: 422 naming what is wrong, and nothing kept ----------------------------------


def _with_labels_missing(rows: list[int], marker: str = "") -> bytes:
    labels = _wine()["target"].astype(object)
    labels[rows] = np.nan
    content = wine_csv(target=labels)
    return content if not marker else content.replace(b",\n", f",{marker}\n".encode())


BAD_FILES: dict[str, tuple[bytes, dict[str, Any], str, str]] = {
    "more fields than the header": (
        b"a,target\n1,2\n3,4,5\n",
        {},
        "file",
        "not a readable CSV: Expected 2 fields in line 3, saw 3",
    ),
    "a first row longer than the header": (
        b"a,target\n1,2,3\n",
        {},
        "file",
        "Expected 2 fields in line 2, saw 3",
    ),
    "an unterminated quote": (b'a,target\n"1,2\n', {}, "file", "EOF inside string"),
    "non-UTF-8 text": (b"a,target\n\xe9t\xe9,1\n", {}, "file", "not UTF-8 text"),
    "an empty file": (b"", {}, "file", "the file is empty"),
    "a header without rows": (b"a,target\n", {}, "file", "no data rows"),
    "duplicate columns": (b"a,b,a,target\n1,2,3,4\n", {}, "file", "duplicate column name 'a'"),
    "only the target column": (b"target\n1\n2\n", {}, "file", "no feature columns"),
    "missing labels": (
        _with_labels_missing([4, 9, 20]),
        {},
        "file",
        "target column 'target' has 3 empty or NaN labels; the first is in data row 5",
    ),
    "NA labels": (
        _with_labels_missing([0], "NA"),
        {},
        "file",
        "has 1 empty or NaN label; the first is in data row 1",
    ),
    "a non-numeric regression target": (
        wine_csv(target=_wine()["target"].map({0: "a", 1: "b", 2: "c"})),
        {"task": "regression"},
        "file",
        "must be numeric for a regression task; data row 1 holds 'a'",
    ),
    "an infinite regression target": (
        b"a,target\n1,2.5\n2,inf\n",
        {"task": "regression"},
        "file",
        "1 infinite value",
    ),
    "a missing target column": (
        wine_csv(),
        {"target": "quality"},
        "target",
        "column 'quality' is not in the file; its columns are 'alcohol', 'malic_acid'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_invalid_content_is_refused_with_422_saying_what_is_wrong_and_nothing_is_kept(
    api: Api, tmp_path: Path, case: str
) -> None:
    content, meta, field, message = BAD_FILES[case]

    response = upload(api, content, {**META, **meta})

    error = assert_error(response, 422, "validation_error", field)
    assert message in error["message"], error
    assert message in error["details"][field][0]
    assert_nothing_kept(api, tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "corrupted", "bad checksum"])
def test_corrupt_gzip_is_refused_with_422_and_nothing_is_kept(
    api: Api, tmp_path: Path, damage: str
) -> None:
    packed = bytearray(gzip.compress(wine_csv()))
    if damage == "truncated":
        packed = packed[:-100]
    elif damage == "corrupted":
        packed[20:40] = bytes(20)
    else:
        packed[-8] ^= 0xFF  # the CRC32 of the uncompressed data

    response = upload(api, bytes(packed))

    error = assert_error(response, 422, "validation_error", "file")
    assert "gzip" in error["message"] or "CSV" in error["message"], error
    assert_nothing_kept(api, tmp_path)


def test_a_missing_target_lists_the_available_columns_truncated(api: Api, tmp_path: Path) -> None:
    header = ",".join(f"feature_{i}" for i in range(30))
    content = f"{header}\n{','.join(['1'] * 30)}\n".encode()

    response = upload(api, content, {**META, "target": "label"})

    message = assert_error(response, 422, "validation_error", "target")["message"]
    assert "'feature_0'" in message and "'feature_19'" in message
    assert "'feature_20'" not in message
    assert "(30 columns)" in message
    assert_nothing_kept(api, tmp_path)


def test_more_rows_or_columns_than_allowed_are_refused_with_422(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    limited = make_api(max_dataset_rows=177, max_dataset_columns=13)

    wide = upload(limited, wine_csv())
    error = assert_error(wide, 422, "validation_error", "file")
    assert "the file has 14 columns; at most 13 are allowed" in error["message"]
    narrow_csv = _wine().drop(columns="proline").to_csv(index=False).encode()
    too_long = upload(limited, narrow_csv)
    error = assert_error(too_long, 422, "validation_error", "file")
    assert "more than 177 data rows" in error["message"]
    assert_nothing_kept(limited, tmp_path)

    exact = make_api(max_dataset_rows=178, max_dataset_columns=13)
    assert upload(exact, narrow_csv).status_code == 201


def test_rows_beyond_the_limit_are_not_parsed(make_api: Callable[..., Api], tmp_path: Path) -> None:
    # A broken row far beyond the limit is never reached: the row count decides.
    content = b"a,target\n" + b"1,2\n" * 50 + b"1,2,3,4\n"
    limited = make_api(max_dataset_rows=10)
    error = assert_error(upload(limited, content), 422, "validation_error", "file")
    assert "more than 10 data rows" in error["message"]
    assert_nothing_kept(limited, tmp_path)


BAD_METADATA: dict[str, tuple[Any, str]] = {
    "no target": ({"name": "d", "task": "classification"}, "target"),
    "an unknown task": ({**META, "task": "ranking"}, "task"),
    "an empty target": ({**META, "target": ""}, "target"),
    "an invalid name": ({**META, "name": "../etc"}, "name"),
    "an unknown field": ({**META, "sha256": "0" * 64}, "sha256"),
    "a NUL in the target": ({**META, "target": "t\x00"}, "target"),
    "a NUL in the description": ({**META, "description": "x\x00"}, "description"),
    "not an object": ("[1, 2]", "metadata"),
    "no metadata": ("", "metadata"),
}


@pytest.mark.parametrize("case", sorted(BAD_METADATA))
def test_invalid_metadata_is_refused_with_422_naming_the_field(
    api: Api, tmp_path: Path, case: str
) -> None:
    meta, field = BAD_METADATA[case]
    assert_error(upload(api, wine_csv(), meta), 422, "validation_error", field)
    assert_nothing_kept(api, tmp_path)


def test_metadata_that_is_not_json_is_400_and_a_missing_file_part_is_422(
    api: Api, tmp_path: Path
) -> None:
    assert_error(upload(api, wine_csv(), "{name: x"), 400, "bad_request", "metadata")
    no_file = api.client.post(
        "/api/v1/datasets", data={"metadata": json.dumps(META)}, content_type="multipart/form-data"
    )
    assert_error(no_file, 422, "validation_error", "file")
    assert_nothing_kept(api, tmp_path)


def test_content_larger_than_max_dataset_bytes_is_413_and_nothing_is_kept(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    # Dataset content has its own limit: above the artifact limit is fine, above its own not.
    limited = make_api(max_dataset_bytes=len(wine_csv()), max_artifact_bytes=1024)
    assert upload(limited, wine_csv()).status_code == 201
    bigger = wine_csv(proline=_wine()["proline"] * 1000)

    refused = upload(limited, bigger)

    error = assert_error(refused, 413, "payload_too_large")
    assert str(len(wine_csv())) in error["message"]
    huge = upload(limited, bigger * 100)  # the whole body is over the limit: refused unread
    assert_error(huge, 413, "payload_too_large")
    assert [p.name for p in stored_files(tmp_path)] == [sha(wine_csv())]
    assert len(limited.get("/datasets/wine-holdout").get_json()["revisions"]) == 1
    # Runs keep the artifact limit.
    limited.post("/models", {"name": "m"})
    limited.post("/models/m/versions", {"version": "1"})
    assert_error(limited.upload_run("m", "1", b"x" * 2048), 413, "payload_too_large")


def test_a_revision_row_that_cannot_be_written_leaves_no_blob(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_args: Any) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(datasets, "_locked_dataset", fail)

    response = upload(api, wine_csv())

    assert_error(response, 500, "internal_error")
    assert_nothing_kept(api, tmp_path)


# -- conflicts and digest-only revisions ---------------------------------------------------


def test_identical_content_with_another_target_or_task_is_409(api: Api, tmp_path: Path) -> None:
    assert upload(api, wine_csv()).status_code == 201

    for other in ({"task": "regression"}, {"target": "alcohol"}):
        error = assert_error(upload(api, wine_csv(), {**META, **other}), 409, "already_exists")
        assert "wine-holdout@1" in error["message"]
        assert "'target' (classification)" in error["message"]
        assert error["details"]["target"] == "target"

    assert len(api.get("/datasets/wine-holdout").get_json()["revisions"]) == 1
    assert [p.name for p in stored_files(tmp_path)] == [sha(wine_csv())]


def test_uploading_content_registered_by_digest_attaches_it_to_that_revision(api: Api) -> None:
    registered = api.post(
        "/datasets", {"name": "wine-holdout", "sha256": sha(wine_csv()), "description": "d"}
    )
    assert registered.status_code == 201
    assert registered.get_json()["has_content"] is False
    assert registered.get_json()["content_url"] is None
    assert_error(api.get("/datasets/wine-holdout/revisions/1/content"), 404, "not_found")

    attached = upload(api, wine_csv())

    assert attached.status_code == 200, attached.get_json()
    body = attached.get_json()
    assert (body["revision"], body["has_content"], body["row_count"]) == (1, True, 178)
    assert body["description"] == "d"
    assert api.get("/datasets/wine-holdout/revisions/1/content").data == wine_csv()
    assert len(api.get("/datasets/wine-holdout").get_json()["revisions"]) == 1


def test_the_json_form_still_registers_by_digest_and_finds_content_revisions(api: Api) -> None:
    by_digest = api.post("/datasets", {"name": "other", "sha256": sha(b"rows")})
    assert by_digest.status_code == 201
    assert by_digest.get_json()["has_content"] is False
    upload(api, wine_csv())

    same = api.post("/datasets", {"name": "wine-holdout", "sha256": sha(wine_csv()).upper()})

    assert same.status_code == 200
    assert same.get_json()["revision"] == 1
    assert same.get_json()["has_content"] is True
    assert_error(api.post("/datasets", {"name": "x"}), 422, "validation_error", "sha256")
    nul = {"name": "x", "sha256": sha(b"x"), "description": "a\x00b"}
    assert_error(api.post("/datasets", nul), 422, "validation_error", "description")


# -- reading and downloading ----------------------------------------------------------------


def test_the_content_downloads_as_uploaded_with_etag_and_ranges(api: Api) -> None:
    content = wine_csv()
    upload(api, content)
    path = "/datasets/wine-holdout/revisions/1/content"

    download = api.get(path)

    assert download.status_code == 200
    assert download.data == content
    assert download.mimetype == "text/csv"
    assert download.headers["ETag"] == f'"{sha(content)}"'
    assert download.headers["Content-Disposition"] == 'attachment; filename="wine-holdout@1.csv"'
    assert int(download.headers["Content-Length"]) == len(content)
    assert api.get(path, headers={"If-None-Match": f'"{sha(content)}"'}).status_code == 304
    part = api.get(path, headers={"Range": "bytes=0-6"})
    assert part.status_code == 206
    assert part.data == content[:7]
    # Case-insensitive names, as everywhere.
    assert api.get("/datasets/WINE-holdout/revisions/1/content").data == content


def test_unknown_datasets_and_revisions_are_404(api: Api) -> None:
    upload(api, wine_csv())
    for path in (
        "/datasets/nope/revisions/1",
        "/datasets/nope/revisions/1/content",
        "/datasets/wine-holdout/revisions/2",
        "/datasets/wine-holdout/revisions/2/content",
        "/datasets/wine-holdout/revisions/0/content",
        f"/datasets/wine-holdout/revisions/{2**63}/content",
        "/datasets/wine-holdout/revisions/one",
    ):
        assert_error(api.get(path), 404, "not_found")


def test_a_revision_registered_by_digest_has_no_content_to_download(api: Api) -> None:
    api.post("/datasets", {"name": "d", "sha256": sha(b"rows")})

    error = assert_error(api.get("/datasets/d/revisions/1/content"), 404, "not_found")

    assert "sha256 only" in error["message"]
    assert api.get("/datasets/d/revisions/1").get_json()["has_content"] is False


# -- blobs shared by runs and datasets --------------------------------------------------------


def test_removing_a_run_keeps_dataset_content_with_the_same_bytes(api: Api) -> None:
    content = wine_csv()
    api.post("/models", {"name": "m"})
    api.post("/models/m/versions", {"version": "1"})
    run = api.upload_run("m", "1", content, filename="holdout.csv").get_json()
    assert run["artifact"]["sha256"] == sha(content)
    assert upload(api, content).status_code == 201
    later = api.upload_run("m", "1", content).get_json()

    for run_id in (run["id"], later["id"]):
        assert api.delete(f"/runs/{run_id}", {"reason": "test"}).status_code == 200

    assert api.get("/datasets/wine-holdout/revisions/1/content").data == content


def test_a_blob_is_removed_only_when_neither_a_run_nor_a_dataset_uses_it(
    api: Api, app: Flask, tmp_path: Path
) -> None:
    context = app.extensions["modelreg"]
    upload(api, wine_csv())
    api.post("/datasets", {"name": "digest-only", "sha256": sha(b"orphan")})
    orphan = context.store.begin_upload(1 << 20)
    orphan.write(b"orphan")
    context.store.commit(orphan)

    blobs.forget_if_unused(context.db, context.store, sha(wine_csv()))
    blobs.forget_if_unused(context.db, context.store, sha(b"orphan"))

    assert [p.name for p in stored_files(tmp_path)] == [sha(wine_csv())]


def test_gzip_that_expands_beyond_max_dataset_bytes_is_413_and_nothing_is_kept(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    # A few kilobytes on the wire, megabytes once decompressed: the limit is on the content.
    bomb = gzip.compress(wine_csv() + b"\n".join([b"1" * 60] * 100_000), compresslevel=9)
    limited = make_api(max_dataset_bytes=1024 * 1024)
    assert len(bomb) < 64 * 1024

    error = assert_error(upload(limited, bomb), 413, "payload_too_large")

    assert "decompressed" in error["message"]
    assert stored_files(tmp_path) == []
    assert_error(limited.get("/datasets/wine-holdout"), 404, "not_found")


def test_content_lost_from_the_artifact_store_is_a_503_naming_it(api: Api, tmp_path: Path) -> None:
    assert upload(api, wine_csv()).status_code == 201
    digest = sha(wine_csv())
    (tmp_path / "artifacts" / "sha256" / digest[:2] / digest[2:4] / digest).unlink()

    response = api.get("/datasets/wine-holdout/revisions/1/content")

    error = assert_error(response, 503, "unavailable")
    assert error["details"] == {"sha256": digest}
