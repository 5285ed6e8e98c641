"""Every route of the application as a request that would succeed, and a fingerprint of
everything the application stores: what the access-control and hostile-input tests walk.

``world(api)`` registers one of everything (model, version, run, dataset, environment,
policy, a spare token) and returns the values of the path arguments. ``calls(app, w)``
turns every (endpoint, method) of ``app.url_map`` into a :class:`Call` with a valid
body. ``fingerprint(app)`` is every row of every table and every stored file: equal
before and after a request means the request wrote nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from modelreg.db.models import Base
from modelreg.web.roles import OPEN_ENDPOINTS
from tests.integration.conftest import (
    Api,
    create_model,
    create_run,
    create_version,
    policy_body,
    put_environment,
    put_policy,
    register_dataset,
    sha,
)

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")

# A body that the route would accept, per (endpoint, method); ``w`` is ``world()``.
# A route missing here is sent ``{}`` (its refusals are still checked).
BODIES: dict[tuple[str, str], Callable[[Mapping[str, Any]], Any]] = {
    ("models.Models", "POST"): lambda w: {"name": "Fresh"},
    ("models.Versions", "POST"): lambda w: {"version": "2.0"},
    ("models.Transitions", "POST"): lambda w: {"stage": "Staging", "reason": "access matrix"},
    ("runs.RunView", "DELETE"): lambda w: {"reason": "access matrix", "force": True},
    ("runs.Evaluations", "POST"): lambda w: {"dataset": "holdout", "metrics": {"accuracy": 0.9}},
    ("jobs.EvaluateView", "POST"): lambda w: {"dataset": "holdout"},
    ("jobs.ModelEvaluateView", "POST"): lambda w: {"dataset": "holdout"},
    ("datasets.Datasets", "POST"): lambda w: {"name": "fresh-set", "sha256": sha(b"fresh")},
    ("environments.EnvironmentView", "PUT"): lambda w: {"description": "changed"},
    ("environments.PolicyView", "PUT"): lambda w: policy_body(min_improvement=0.5),
    ("environments.PlanView", "POST"): lambda w: policy_body(min_improvement=0.5),
    ("environments.PinView", "PUT"): lambda w: {"run_id": w["run_id"], "reason": "matrix"},
    ("environments.PinView", "DELETE"): lambda w: {"reason": "access matrix"},
    ("tokens.Tokens", "POST"): lambda w: {"name": "fresh-token", "role": "reader"},
    ("tokens.TokenView", "DELETE"): lambda w: None,
}

# Routes that take multipart/form-data: a form that would be accepted.
UPLOADS: dict[tuple[str, str], Callable[[], dict[str, Any]]] = {
    ("runs.Runs", "POST"): lambda: {
        "artifact": (io.BytesIO(b"matrix-artifact"), "model.bin"),
        "metadata": json.dumps({"params": {"lr": 0.1}}),
    },
}


@dataclass(frozen=True)
class Call:
    """One (endpoint, method) of the application, as a request that would succeed."""

    endpoint: str
    method: str
    path: str
    body: Any = None
    form: Callable[[], dict[str, Any]] | None = field(default=None, compare=False)

    @property
    def writes(self) -> bool:
        return self.method in WRITE_METHODS

    def send(
        self,
        client: FlaskClient,
        headers: Mapping[str, str] | None = None,
        *,
        path: str | None = None,
        method: str | None = None,
        query: str = "",
    ) -> TestResponse:
        """Send this call (optionally to another spelling of the path, or as another method)."""
        url = (path or self.path) + query
        kw: dict[str, Any] = {"method": method or self.method, "headers": dict(headers or {})}
        if self.form is not None:
            kw.update(data=self.form(), content_type="multipart/form-data")
        elif self.body is not None:
            kw["json"] = self.body
        return client.open(url, **kw)

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.endpoint})"


def world(api: Api) -> dict[str, Any]:
    """One of everything, made by the admin; the values of every path argument."""
    create_model(api, "AImodel")
    create_version(api, "AImodel", "1.0")
    register_dataset(api, "holdout")
    put_environment(api, "E")
    response = put_policy(api, "E", "AImodel", stages=["None", "Staging", "Production"])
    assert response.status_code in (200, 201), response.get_json()
    run = create_run(api, "AImodel", "1.0", metrics={"f1": 0.5})
    spare = api.post("/tokens", {"name": "spare", "role": "reader"})
    assert spare.status_code == 201, spare.get_json()
    return {
        "model": "AImodel",
        "version": "1.0",
        "env": "E",
        "name": "holdout",
        "rev": 1,
        "run_id": run["id"],
        "job_id": 1,
        "token_id": spare.get_json()["id"],
    }


def calls(app: Flask, values: Mapping[str, Any], *, methods: tuple[str, ...] = ()) -> list[Call]:
    """Every routed (endpoint, method) but the open health checks, HEAD and OPTIONS
    (``methods`` adds those back), each as a request that would succeed."""
    adapter = app.url_map.bind("localhost")
    found: list[Call] = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in OPEN_ENDPOINTS:
            continue
        missing = set(rule.arguments) - set(values)
        assert not missing, f"tests/integration/routes.py: add a value for {missing} ({rule})"
        args = {name: values[name] for name in rule.arguments}
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"} | set(methods)):
            if method not in (rule.methods or set()):
                continue
            path = adapter.build(rule.endpoint, args, method=method)
            key = (rule.endpoint, method)
            default = {} if method in WRITE_METHODS else None
            body = BODIES[key](values) if key in BODIES else default
            found.append(Call(rule.endpoint, method, path, body, UPLOADS.get(key)))
    return found


def fingerprint(app: Flask) -> str:
    """A digest of every row of every table and of every stored file's name and bytes."""
    context = app.extensions["modelreg"]
    digest = hashlib.sha256()
    with context.db.read_engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = sorted(repr(tuple(row)) for row in conn.execute(select(table)))
            digest.update(f"{table.name}:{len(rows)}:{rows}".encode())
    root = context.settings.resolved_artifact_root
    if root.exists():
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()
