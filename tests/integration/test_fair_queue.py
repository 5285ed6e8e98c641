"""One uploader cannot starve the others: per-token limits on pending evaluation jobs
and on stored artifact bytes, refused with 429 before anything is stored."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import update

from modelreg.config import load_settings
from modelreg.db.models import Job
from modelreg.errors import ConfigError
from tests.integration.conftest import Api, assert_error, authorized, create_model, create_version
from tests.integration.test_dataset_content import upload as upload_dataset
from tests.integration.test_dataset_content import wine_csv


def as_token(api: Api, name: str, role: str = "ci") -> Api:
    """An Api on the same app that sends a new token ``name`` with ``role``."""
    secret = api.post("/tokens", {"name": name, "role": role}).get_json()["secret"]
    other = Api(api.client.application.test_client())
    authorized(other.client, secret)
    return other


def stored_files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "artifacts"
    return sorted(p for d in ("sha256", "tmp") for p in (root / d).rglob("*") if p.is_file())


def run_count(api: Api) -> int:
    return len(api.get("/models/m/versions/1.0/runs").get_json()["items"])


def test_a_token_past_its_stored_bytes_is_refused_with_429_and_nothing_is_stored(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    admin = make_api(max_artifact_bytes=1000, max_stored_bytes_per_token=2500)
    create_model(admin, "m")
    create_version(admin, "m", "1.0")
    greedy, other = as_token(admin, "greedy-ci"), as_token(admin, "other-ci")
    for i in range(2):
        assert greedy.upload_run("m", "1.0", bytes([i]) * 1000).status_code == 201
    files = stored_files(tmp_path)

    refused = greedy.upload_run("m", "1.0", b"x" * 1000)

    error = assert_error(refused, 429, "too_many_requests")
    assert "max_stored_bytes_per_token" in error["message"] and "2000" in error["message"]
    assert error["details"] == {
        "setting": "max_stored_bytes_per_token",
        "limit": 2500,
        "usage": 2000,
        "adding": 1000,
    }
    assert stored_files(tmp_path) == files
    assert run_count(admin) == 2
    assert greedy.upload_run("m", "1.0", b"y" * 500).status_code == 201  # still fits
    assert other.upload_run("m", "1.0", b"z" * 1000).status_code == 201  # others unaffected


def test_a_token_at_its_pending_jobs_limit_may_not_register_nor_request_evaluations(
    make_api: Callable[..., Api],
) -> None:
    admin = make_api(max_pending_jobs_per_token=2)
    assert upload_dataset(admin, wine_csv()).status_code == 201
    create_model(admin, "m")
    create_version(admin, "m", "1.0")
    busy, other = as_token(admin, "busy-ci"), as_token(admin, "other-ci")
    first, second = (busy.upload_run("m", "1.0", bytes([i])).get_json() for i in range(2))
    for run in (first, second):
        got = busy.post(f"/runs/{run['id']}/evaluate", {"dataset": "wine-holdout"})
        assert got.status_code == 202, got.get_json()

    refused = busy.upload_run("m", "1.0", b"third")
    error = assert_error(refused, 429, "too_many_requests")
    assert error["details"] == {"setting": "max_pending_jobs_per_token", "limit": 2, "usage": 2}
    assert "max_pending_jobs_per_token" in error["message"]
    assert run_count(admin) == 2
    third = other.upload_run("m", "1.0", b"third").get_json()
    assert_error(
        busy.post(f"/runs/{third['id']}/evaluate", {"dataset": "wine-holdout"}),
        429,
        "too_many_requests",
    )
    assert (
        other.post(f"/runs/{third['id']}/evaluate", {"dataset": "wine-holdout"}).status_code == 202
    )

    with admin.client.application.extensions["modelreg"].db.unit_of_work() as session:
        session.execute(update(Job).where(Job.actor == "busy-ci").values(state="succeeded"))
        session.commit()
    assert busy.upload_run("m", "1.0", b"fourth").status_code == 201


def test_no_limit_is_zero_and_a_negative_or_too_small_limit_is_refused_at_start() -> None:
    unlimited = load_settings(
        environ={
            "MODELREG_MAX_PENDING_JOBS_PER_TOKEN": "0",
            "MODELREG_MAX_STORED_BYTES_PER_TOKEN": "0",
        }
    )
    assert (unlimited.max_pending_jobs_per_token, unlimited.max_stored_bytes_per_token) == (0, 0)
    with pytest.raises(ConfigError, match="max_pending_jobs_per_token"):
        load_settings(environ={}, max_pending_jobs_per_token=-1)
    with pytest.raises(ConfigError, match="max_artifact_bytes"):
        load_settings(environ={}, max_stored_bytes_per_token=10, max_artifact_bytes=100)
