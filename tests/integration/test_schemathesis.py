"""The contract, fuzzed: schemathesis runs every operation of the OpenAPI document
against the application (its WSGI interface, on SQLite and on PostgreSQL) with an
admin token, and fails on any server error, undocumented status or media type, or
response that does not match its schema.

It runs schemathesis' own engine (what ``schemathesis run`` runs): the coverage phase
(boundary values, missing and malformed parameters, unsupported methods), then the
fuzzing phase, positive and negative. Bounded and reproducible: a fixed seed,
deterministic generation, no example database, ``MAX_EXAMPLES`` cases per operation
in the fuzzing phase (the stateful phase is off unless ``SCHEMATHESIS_STATEFUL`` is set: it
doubles the time). Path parameters, and ``dataset``/``run_id`` body fields, name what
:func:`tests.integration.routes.world` made three times in four, so most cases reach
the service layer rather than a 404.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Mapping
from typing import Any

import schemathesis
from flask import Flask
from hypothesis import strategies as st
from schemathesis import engine
from schemathesis.engine import Status, events

from tests.integration.conftest import ADMIN_TOKEN, Api
from tests.integration.routes import world

# More for a deeper local run: SCHEMATHESIS_MAX_EXAMPLES=200 pytest tests/integration/…
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"))
STATEFUL = bool(os.environ.get("SCHEMATHESIS_STATEFUL"))
SEED = 20261201
AUTHORIZATION = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)


def config() -> Any:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": AUTHORIZATION,
            "workers": 1,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "phases": {"stateful": {"enabled": STATEFUL}},
        }
    )


def known_path_parameters(values: Mapping[str, Any]) -> Any:
    """A ``flatmap_path_parameters`` hook: mostly the names that exist."""

    def hook(_context: Any, generated: dict[str, Any] | None) -> Any:
        if not generated:
            return st.just(generated)
        known = {name: values.get(name, value) for name, value in generated.items()}
        return st.sampled_from([known, known, known, generated])

    return hook


def known_body_fields(values: Mapping[str, Any]) -> Any:
    """A ``flatmap_body`` hook: a ``dataset`` or ``run_id`` field mostly names one that
    exists (evaluations, policies, plans, pins)."""
    known = {"dataset": values["name"], "run_id": values["run_id"]}

    def hook(_context: Any, body: Any) -> Any:
        if not isinstance(body, dict) or not known.keys() & body.keys():
            return st.just(body)
        replaced = {**body, **{key: value for key, value in known.items() if key in body}}
        return st.sampled_from([replaced, replaced, replaced, body])

    return hook


def current_if_match(_context: Any, headers: dict[str, Any] | None) -> Any:
    """A ``flatmap_headers`` hook: ``If-Match`` names the world's policy revision half
    the time, so replacing a policy gets past 412."""
    if not headers or "If-Match" not in headers:
        return st.just(headers)
    return st.sampled_from([{**headers, "If-Match": '"1"'}, headers])


def describe(event: events.ScenarioFinished) -> list[str]:
    found = []
    for checks in event.recorder.checks.values():
        for check in checks:
            if check.failure_info is not None:
                failure = check.failure_info.failure
                found.append(
                    f"{event.label} [{event.phase}] {check.name}: {failure.title}\n"
                    f"{failure.message}\n{check.failure_info.code_sample}"
                )
    return found or [f"{event.label} [{event.phase}]: {event.status}"]


def run(schema: Any) -> tuple[list[str], Counter[str], Counter[tuple[str, int]]]:
    """Run the engine: failures, tested operations, and statuses seen per operation."""
    failures: list[str] = []
    tested: Counter[str] = Counter()
    statuses: Counter[tuple[str, int]] = Counter()
    for event in engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished) and event.label is not None:
            if event.status in (Status.SUCCESS, Status.FAILURE):
                tested[event.label] += 1
            if event.status in (Status.FAILURE, Status.ERROR):
                failures.extend(describe(event))
            for interaction in event.recorder.interactions.values():
                if interaction.response is not None:
                    statuses[(event.label, interaction.response.status_code)] += 1
        elif isinstance(event, events.NonFatalError | events.FatalError):
            failures.append(f"{type(event).__name__}: {getattr(event, 'info', event)!r}")
    return failures, tested, statuses


def scored_dataset(api: Api, run_id: int) -> int:
    """A dataset revision with content and a pending job to evaluate a run on it:
    content downloads and jobs then have something to answer. The job's id."""
    uploaded = api.client.post(
        "/api/v1/datasets",
        data={
            "file": (io.BytesIO(b"a,b,target\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n"), "scored.csv"),
            "metadata": json.dumps(
                {"name": "scored", "target": "target", "task": "classification"}
            ),
        },
        content_type="multipart/form-data",
    )
    assert uploaded.status_code == 201, uploaded.get_json()
    job = api.post(f"/runs/{run_id}/evaluate", {"dataset": "scored"})
    assert job.status_code == 202, job.get_json()
    return int(job.get_json()["id"])


def test_every_operation_answers_as_its_document_says(app: Flask, api: Api) -> None:
    values = world(api)
    values = {**values, "name": "scored", "job_id": scored_dataset(api, values["run_id"])}
    # The document as served (from_wsgi would leave out the operation it was read from).
    served = api.get("/openapi.json")
    assert served.status_code == 200, served.get_data(as_text=True)
    schema = schemathesis.openapi.from_dict(served.get_json(), config=config())
    schema.app = app
    schema.hook("flatmap_path_parameters")(known_path_parameters(values))
    schema.hook("flatmap_body")(known_body_fields(values))
    schema.hook("flatmap_headers")(current_if_match)
    operations = {
        f"{method.upper()} {path}"
        for path, item in schema.raw_schema["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    }

    failures, tested, statuses = run(schema)

    assert not failures, f"{len(failures)} schemathesis failures:\n\n" + "\n\n".join(failures)
    assert operations <= set(tested), f"never tested: {sorted(operations - set(tested))}"
    succeeded = {label for (label, status), _ in statuses.items() if status < 300}
    # Most operations get past validation at least once (a weak guard against a run
    # that only ever reaches 4xx answers).
    assert len(succeeded) >= 0.75 * len(operations), sorted(operations - succeeded)
