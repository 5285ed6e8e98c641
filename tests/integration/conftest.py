"""The real application on a real database, driven through its WSGI interface."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service.app import create_app
from service.config import load_settings


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[Flask]:
    settings = load_settings(
        environ={},
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
        artifact_root=str(tmp_path / "artifacts"),
        max_artifact_bytes=5 * 1024 * 1024,
    )
    app = create_app(settings)
    yield app
    app.extensions["modelreg"].db.dispose()


class Api:
    """The test client with the ``/api/v1`` prefix and JSON by default."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

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
        metadata: dict[str, Any] | None = None,
        filename: str = "model.joblib",
    ) -> TestResponse:
        """Register a run the way CI does: multipart artifact + metadata JSON."""
        return self.client.post(
            f"/api/v1/models/{model}/versions/{version}/runs",
            data={
                "artifact": (io.BytesIO(content), filename),
                "metadata": json.dumps(metadata or {}),
            },
            content_type="multipart/form-data",
        )


@pytest.fixture
def api(app: Flask) -> Api:
    return Api(app.test_client())
