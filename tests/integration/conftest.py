"""The real application on a real database, driven through its WSGI interface."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from modelreg.app import create_app
from modelreg.client import Registry
from modelreg.config import load_settings
from tests.integration.in_process import in_process

# MODELREG_ADMIN_TOKEN of the test apps: requests go as this admin unless a test
# sends another Authorization header.
ADMIN_TOKEN = "test-admin-token-0123456789"


def authorized(client: FlaskClient, secret: str = ADMIN_TOKEN) -> FlaskClient:
    """The client sends ``Authorization: Bearer <secret>`` with every request."""
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    return client


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[Flask]:
    settings = load_settings(
        environ={},
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
        artifact_root=str(tmp_path / "artifacts"),
        max_artifact_bytes=5 * 1024 * 1024,
        admin_token=ADMIN_TOKEN,
    )
    app = create_app(settings)
    yield app
    app.extensions["modelreg"].db.dispose()


class Api:
    """The test client with the ``/api/v1`` prefix and JSON by default."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = authorized(client)

    def _url(self, path: str) -> str:
        return (
            path if path.startswith("/healthz") or path.startswith("/readyz") else f"/api/v1{path}"
        )

    def get(self, path: str, **kw: Any) -> TestResponse:
        return self.client.get(self._url(path), **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> TestResponse:
        return self.client.post(self._url(path), json=json, **kw)

    def put(self, path: str, json: Any = None, **kw: Any) -> TestResponse:
        return self.client.put(self._url(path), json=json, **kw)

    def delete(self, path: str, json: Any = None, **kw: Any) -> TestResponse:
        return self.client.delete(self._url(path), json=json, **kw)

    def upload_run(
        self,
        model: str,
        version: str,
        content: bytes = b"model-bytes",
        metadata: dict[str, Any] | str | None = None,
        filename: str = "model.joblib",
    ) -> TestResponse:
        """Register a run the way CI does: multipart artifact + metadata JSON.

        ``metadata`` as a string is sent verbatim (for JSON that ``json.dumps`` would
        not write, such as ``NaN``)."""
        body, content_type = multipart(
            {
                "artifact": (filename, content, "application/octet-stream"),
                "metadata": metadata if isinstance(metadata, str) else json.dumps(metadata or {}),
            }
        )
        return self.client.post(
            f"/api/v1/models/{model}/versions/{version}/runs", data=body, content_type=content_type
        )


def multipart(fields: dict[str, Any]) -> tuple[bytes, str]:
    """A multipart/form-data body as requests (urllib3) encodes it, and its Content-Type.

    Not Werkzeug's test encoder: it sends an empty file as a part without a body,
    which no HTTP client sends and the service refuses (service/web/multipart.py).
    A field is a string, or ``(filename, bytes, content type)`` for a file.
    """
    body, content_type = urllib3.encode_multipart_formdata(fields)
    return body, content_type


@pytest.fixture
def api(app: Flask) -> Api:
    return Api(app.test_client())


# Where the in-process app answers for the Python client (nothing listens there).
APP_URL = "http://modelreg.test"


@pytest.fixture
def connect(app: Flask) -> Iterator[Callable[..., Registry]]:
    """``connect(token)``: the Python client on the test's app, in-process over WSGI (a
    session of its own per call, closed at the end of the test)."""
    sessions: list[Any] = []

    def make(token: str | None = ADMIN_TOKEN, **options: Any) -> Registry:
        sessions.append(in_process(app, APP_URL))
        return Registry(APP_URL, token, session=sessions[-1], **options)

    yield make
    for session in sessions:
        session.close()


@pytest.fixture
def registry(connect: Callable[..., Registry]) -> Registry:
    """The Python client on the test's app, as the admin."""
    return connect()


@pytest.fixture
def make_api(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Api]]:
    """``make_api(**settings)``: an app with other settings (limits, say), on the test's
    database and store; disposed at the end of the test."""
    apps: list[Flask] = []

    def make(**overrides: Any) -> Api:
        settings = load_settings(
            environ={},
            data_dir=str(tmp_path / "data"),
            database_url=database_url,
            artifact_root=str(tmp_path / "artifacts"),
            admin_token=ADMIN_TOKEN,
            **overrides,
        )
        apps.append(create_app(settings))
        return Api(apps[-1].test_client())

    yield make
    for app in apps:
        app.extensions["modelreg"].db.dispose()


# -- shared helpers: build state through the API, check the error contract ------------

STAGE_PATHS: dict[str, list[str]] = {
    "None": [],
    "Staging": ["Staging"],
    "Production": ["Staging", "Production"],
    "Archived": ["Archived"],
}


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def assert_error(
    response: TestResponse, status: int, code: str, field: str | None = None
) -> dict[str, Any]:
    """The contract's error shape, with this status and code (and ``field`` in details)."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/json", response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    if field is not None:
        assert field in error["details"], error
    return error


def create_model(api: Api, name: str = "AImodel") -> dict[str, Any]:
    response = api.post("/models", {"name": name})
    assert response.status_code == 201, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def move_to(api: Api, model: str, version: str, stage: str, **kw: Any) -> TestResponse:
    response = api.post(
        f"/models/{model}/versions/{version}/transitions", {"stage": stage, "reason": "test", **kw}
    )
    return response


def create_version(api: Api, model: str, version: str, stage: str = "None") -> dict[str, Any]:
    """A new version, walked through allowed transitions to ``stage``."""
    response = api.post(f"/models/{model}/versions", {"version": version})
    assert response.status_code == 201, response.get_json()
    body: dict[str, Any] = response.get_json()
    for step in STAGE_PATHS[stage]:
        moved = move_to(api, model, version, step, force=True)
        assert moved.status_code == 200, moved.get_json()
        body = moved.get_json()["version"]
    return body


def register_dataset(api: Api, name: str = "holdout", content: bytes = b"rows") -> dict[str, Any]:
    response = api.post("/datasets", {"name": name, "sha256": sha(content)})
    assert response.status_code in (200, 201), response.get_json()
    revision: dict[str, Any] = response.get_json()
    return revision


def create_run(
    api: Api,
    model: str,
    version: str,
    metrics: dict[str, float] | None = None,
    dataset: str = "holdout",
    content: bytes | None = None,
    **metadata: Any,
) -> dict[str, Any]:
    """A run with a small artifact; ``metrics`` are reported on ``dataset`` in the same call."""
    if metrics is not None:
        metadata.setdefault("evaluations", [{"dataset": dataset, "metrics": metrics}])
    body = content if content is not None else f"{model}-{version}-{uuid.uuid4()}".encode()
    response = api.upload_run(model, version, body, metadata)
    assert response.status_code == 201, response.get_json()
    run: dict[str, Any] = response.get_json()
    return run


def evaluate(
    api: Api, run_id: int, metrics: dict[str, float], dataset: str = "holdout"
) -> TestResponse:
    return api.post(f"/runs/{run_id}/evaluations", {"dataset": dataset, "metrics": metrics})


def put_environment(api: Api, name: str) -> None:
    response = api.put(f"/environments/{name}", {})
    assert response.status_code in (200, 201), response.get_json()


def policy_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "versions": "",
        "stages": ["Staging", "Production"],
        "metric": "f1",
        "dataset": "holdout",
        "reason": "test",
    }
    body.update(overrides)
    return body


def put_policy(api: Api, env: str, model: str, **overrides: Any) -> TestResponse:
    """PUT a policy as a careful client does: replacing one names the revision it read."""
    path = f"/environments/{env}/policies/{model}"
    current = api.get(path)
    headers = {"If-Match": current.headers["ETag"]} if current.status_code == 200 else {}
    return api.put(path, policy_body(**overrides), headers=headers)


def champion(api: Api, env: str, model: str) -> dict[str, Any] | None:
    """The champion's document, or None when the environment has no eligible model."""
    response = api.get(f"/environments/{env}/models/{model}")
    if response.status_code == 404:
        assert_error(response, 404, "no_eligible_model")
        return None
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def history(api: Api, env: str, model: str) -> list[dict[str, Any]]:
    response = api.get(f"/environments/{env}/models/{model}/history")
    assert response.status_code == 200, response.get_json()
    items: list[dict[str, Any]] = response.get_json()["items"]
    return items


def collect_pages(api: Api, path: str, page_size: int) -> tuple[list[Any], int]:
    """Every item of a paginated list, following ``next_page_token``; and the page count."""
    items: list[Any] = []
    token: str | None = None
    pages = 0
    sep = "&" if "?" in path else "?"
    while True:
        url = f"{path}{sep}page_size={page_size}" + (f"&page_token={token}" if token else "")
        response = api.get(url)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert len(body["items"]) <= page_size
        items.extend(body["items"])
        pages += 1
        token = body["next_page_token"]
        if not token:
            return items, pages
        assert pages < 1000


def bearer(api: Api, name: str, role: str = "admin") -> dict[str, str]:
    """Headers that act as a new token named ``name`` with ``role`` (created by the admin)."""
    response = api.post("/tokens", {"name": name, "role": role})
    assert response.status_code == 201, response.get_json()
    return {"Authorization": f"Bearer {response.get_json()['secret']}"}
