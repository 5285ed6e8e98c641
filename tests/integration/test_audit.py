"""The audit trail, optimistic concurrency on policies and transitions, required reasons."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from modelreg.evaluation.child import Spec
from modelreg.evaluation.sandbox import Outcome
from modelreg.evaluation.worker import Worker
from tests.integration.conftest import (
    Api,
    assert_error,
    bearer,
    collect_pages,
    create_model,
    create_run,
    create_version,
    policy_body,
    put_environment,
    put_policy,
    register_dataset,
    sha,
)

CSV = b"x,target\n1,a\n2,b\n3,a\n4,b\n"

Send = Callable[[dict[str, str]], TestResponse]


def audit_rows(api: Api, **query: Any) -> list[dict[str, Any]]:
    response = api.get("/audit", query_string={"page_size": 500, **query})
    assert response.status_code == 200, response.get_json()
    items: list[dict[str, Any]] = response.get_json()["items"]
    return items


def newest_id(api: Api) -> int:
    rows = audit_rows(api, page_size=1)
    return int(rows[0]["id"]) if rows else 0


def audited(api: Api, headers: dict[str, str], send: Send) -> tuple[TestResponse, list[Any]]:
    """Send a request with a fresh X-Request-ID; return the response and the rows it wrote."""
    before = newest_id(api)
    request_id = f"req-{uuid.uuid4().hex[:12]}"
    response = send({**headers, "X-Request-ID": request_id})
    assert response.headers["X-Request-ID"] == request_id
    rows = [row for row in audit_rows(api) if row["id"] > before]
    assert all(row["request_id"] == request_id for row in rows), rows
    return response, rows


def one_row(api: Api, headers: dict[str, str], send: Send, status: int = 200) -> dict[str, Any]:
    """The request succeeds with ``status`` and writes exactly one audit row."""
    response, rows = audited(api, headers, send)
    assert response.status_code == status, response.get_json()
    assert len(rows) == 1, rows
    row: dict[str, Any] = rows[0]
    assert set(row) == {
        "id",
        "at",
        "actor",
        "role",
        "action",
        "target",
        "before",
        "after",
        "reason",
        "request_id",
    }
    return row


def no_row(api: Api, headers: dict[str, str], send: Send, status: int, code: str) -> None:
    """The request is refused with ``status``/``code`` and writes no audit row."""
    response, rows = audited(api, headers, send)
    assert_error(response, status, code)
    assert rows == []


def upload_dataset(api: Api, headers: dict[str, str], name: str, content: bytes) -> TestResponse:
    return api.client.post(
        "/api/v1/datasets",
        data={
            "file": (io.BytesIO(content), f"{name}.csv"),
            "metadata": json.dumps({"name": name, "target": "target", "task": "classification"}),
        },
        content_type="multipart/form-data",
        headers=headers,
    )


def upload_run(api: Api, headers: dict[str, str], metadata: dict[str, Any]) -> TestResponse:
    return api.client.post(
        "/api/v1/models/AImodel/versions/1.0/runs",
        data={
            "artifact": (io.BytesIO(uuid.uuid4().bytes), "model.joblib"),
            "metadata": json.dumps(metadata),
        },
        content_type="multipart/form-data",
        headers=headers,
    )


@pytest.fixture
def served(api: Api) -> dict[str, Any]:
    """AImodel 1.0 in Production with one evaluated run that PROD serves."""
    create_model(api, "AImodel")
    create_version(api, "AImodel", "1.0", "Production")
    register_dataset(api, "holdout", b"h")
    run = create_run(api, "AImodel", "1.0", {"f1": 0.9})
    put_environment(api, "PROD")
    assert put_policy(api, "PROD", "AImodel", stages=["Production"]).status_code == 201
    return run


# -- every state-changing route writes one row --------------------------------------------


def test_registering_models_versions_runs_and_evaluations_is_audited_as_the_ci_token(
    api: Api,
) -> None:
    ci = bearer(api, "ci-pipeline", "ci")
    register_dataset(api, "holdout", b"h")

    row = one_row(api, ci, lambda h: api.post("/models", {"name": "AImodel"}, headers=h), 201)
    assert (row["actor"], row["role"], row["action"]) == ("ci-pipeline", "ci", "model.create")
    assert row["target"] == "models/AImodel"
    assert row["before"] is None
    assert row["after"]["name"] == "AImodel"
    assert row["reason"] == ""

    row = one_row(
        api,
        ci,
        lambda h: api.post("/models/aimodel/versions", {"version": "1.0.0"}, headers=h),
        201,
    )
    assert (row["action"], row["target"]) == ("version.create", "models/AImodel/versions/1.0.0")
    assert row["after"]["stage"] == "None"

    row = one_row(
        api,
        ci,
        lambda h: upload_run(
            api, h, {"evaluations": [{"dataset": "holdout", "metrics": {"f1": 0.5}}]}
        ),
        201,
    )
    run_id = row["after"]["id"]
    assert (row["actor"], row["action"], row["target"]) == (
        "ci-pipeline",
        "run.create",
        f"runs/{run_id}",
    )
    assert row["after"]["number"] == 1
    assert row["after"]["evaluations"] == [{"dataset": "holdout", "metrics": {"f1": 0.5}}]

    row = one_row(
        api,
        ci,
        lambda h: api.post(
            f"/runs/{run_id}/evaluations",
            {"dataset": "holdout", "metrics": {"accuracy": 0.7}},
            headers=h,
        ),
        201,
    )
    assert (row["action"], row["target"]) == (
        "evaluation.create",
        f"runs/{run_id}/evaluations/holdout@1",
    )
    assert row["after"]["metrics"] == {"accuracy": 0.7}
    assert row["after"]["source"] == "reported"


def test_datasets_are_audited_whether_created_or_already_known_in_both_forms(api: Api) -> None:
    ci = bearer(api, "release-engineer", "release")
    digest = {"name": "holdout", "sha256": sha(b"rows")}

    row = one_row(api, ci, lambda h: api.post("/datasets", digest, headers=h), 201)
    assert (row["action"], row["target"]) == ("dataset.register", "datasets/holdout@1")
    assert row["before"] is None
    assert row["after"]["created"] is True
    assert row["after"]["sha256"] == sha(b"rows")

    row = one_row(api, ci, lambda h: api.post("/datasets", digest, headers=h), 200)
    assert row["target"] == "datasets/holdout@1"
    assert row["after"]["created"] is False
    assert row["before"]["revision"] == 1

    row = one_row(api, ci, lambda h: upload_dataset(api, h, "wine", CSV), 201)
    assert (row["target"], row["after"]["created"], row["after"]["has_content"]) == (
        "datasets/wine@1",
        True,
        True,
    )
    row = one_row(api, ci, lambda h: upload_dataset(api, h, "wine", CSV), 200)
    assert (row["target"], row["after"]["created"]) == ("datasets/wine@1", False)

    # Content arriving for a revision registered by digest: before has none, after has it.
    api.post("/datasets", {"name": "late", "sha256": sha(CSV)})
    row = one_row(api, ci, lambda h: upload_dataset(api, h, "late", CSV), 200)
    assert (row["before"]["has_content"], row["after"]["has_content"]) == (False, True)


def test_requesting_an_evaluation_is_audited_with_its_job(api: Api) -> None:
    create_model(api, "AImodel")
    create_version(api, "AImodel", "1.0")
    assert upload_dataset(api, {}, "wine", CSV).status_code == 201
    run = create_run(api, "AImodel", "1.0")
    ci = bearer(api, "ci-pipeline", "ci")

    def request(h: dict[str, str]) -> TestResponse:
        return api.post(f"/runs/{run['id']}/evaluate", {"dataset": "wine"}, headers=h)

    row = one_row(api, ci, request, 202)
    assert (row["action"], row["target"]) == (
        "evaluation.request",
        f"runs/{run['id']}/evaluations/wine@1",
    )
    assert row["after"]["created"] is True and row["after"]["state"] == "pending"
    again = one_row(api, ci, request, 202)
    assert again["after"]["created"] is False
    assert again["after"]["job_id"] == row["after"]["job_id"]


class _Scores:
    """An executor that scores every model 0.95 without loading it."""

    def run(self, spec: Spec, workdir: Path, keep_alive: Callable[[], bool]) -> Outcome:
        return Outcome(ok=True, metrics={"f1": 0.95})


def test_verified_values_stored_by_the_worker_are_audited_as_the_worker(
    api: Api, app: Flask
) -> None:
    create_model(api, "AImodel")
    create_version(api, "AImodel", "1.0", "Staging")
    assert upload_dataset(api, {}, "wine", CSV).status_code == 201
    run = create_run(api, "AImodel", "1.0")
    put_environment(api, "INT")
    put_policy(api, "INT", "AImodel", dataset="wine", require_verified=True)
    c = app.extensions["modelreg"]
    worker = Worker(c.db, c.store, c.settings, executor=_Scores(), name="w1")

    before = newest_id(api)
    assert worker.run(until_idle=True) == 1

    rows = [r for r in audit_rows(api) if r["id"] > before]
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["actor"], row["role"], row["action"]) == (
        "worker:w1",
        "worker",
        "evaluation.verify",
    )
    assert row["target"] == f"runs/{run['id']}/evaluations/wine@1"
    assert row["after"]["metrics"] == {"f1": 0.95}
    assert row["after"]["champions"] == [
        {"environment": "INT", "from_run_id": None, "to_run_id": run["id"]}
    ]


def test_transitions_record_the_stage_before_and_after_with_reason_and_champion_moves(
    api: Api,
) -> None:
    create_model(api, "AImodel")
    create_version(api, "AImodel", "1.0", "Staging")
    register_dataset(api, "holdout", b"h")
    run = create_run(api, "AImodel", "1.0", {"f1": 0.9})
    put_environment(api, "PROD")
    put_policy(api, "PROD", "AImodel", stages=["Production"])
    release = bearer(api, "release-eng", "release")

    row = one_row(
        api,
        release,
        lambda h: api.post(
            "/models/AImodel/versions/1.0/transitions",
            {"stage": "Production", "reason": "release 1.0", "from_stage": "Staging"},
            headers=h,
        ),
    )
    assert (row["actor"], row["role"], row["action"]) == (
        "release-eng",
        "release",
        "version.transition",
    )
    assert row["target"] == "models/AImodel/versions/1.0"
    assert row["before"] == {"stage": "Staging"}
    assert row["after"] == {
        "stage": "Production",
        "champions": [{"environment": "PROD", "from_run_id": None, "to_run_id": run["id"]}],
    }
    assert row["reason"] == "release 1.0"


def test_environments_policies_and_pins_are_audited_with_before_and_after(
    api: Api, served: dict[str, Any]
) -> None:
    release = bearer(api, "release-eng", "release")
    other = create_run(api, "AImodel", "1.0", {"f1": 0.5})

    row = one_row(
        api, release, lambda h: api.put("/environments/QA", {"description": "qa"}, headers=h), 201
    )
    assert (row["action"], row["target"], row["before"]) == (
        "environment.put",
        "environments/QA",
        None,
    )
    assert row["after"] == {"name": "QA", "description": "qa"}
    row = one_row(
        api, release, lambda h: api.put("/environments/qa", {"description": "QA"}, headers=h)
    )
    assert (row["before"]["description"], row["after"]["description"]) == ("qa", "QA")

    path = "/environments/PROD/policies/AImodel"
    row = one_row(
        api,
        release,
        lambda h: api.put(
            path,
            policy_body(stages=["Production"], min_value=0.95, reason="raise the bar", force=True),
            headers={**h, "If-Match": "1"},
        ),
    )
    assert (row["action"], row["target"], row["reason"]) == (
        "policy.put",
        "environments/PROD/policies/AImodel",
        "raise the bar",
    )
    assert (row["before"]["revision"], row["before"]["min_value"]) == (1, None)
    assert (row["after"]["revision"], row["after"]["min_value"]) == (2, 0.95)
    assert row["after"]["dataset"] == "holdout@1"
    assert row["after"]["changed"] is True
    assert row["after"]["champions"] == [
        {"environment": "PROD", "from_run_id": served["id"], "to_run_id": None}
    ]
    # A PUT that changes nothing keeps the revision and is still recorded, with its reason.
    row = one_row(
        api,
        release,
        lambda h: api.put(
            path,
            policy_body(stages=["Production"], min_value=0.95, reason="confirm"),
            headers={**h, "If-Match": "2"},
        ),
    )
    assert (row["before"]["revision"], row["after"]["revision"]) == (2, 2)
    assert row["after"]["changed"] is False
    put_policy(api, "PROD", "AImodel", stages=["Production"])  # back to serving the best

    pin_path = "/environments/PROD/models/AImodel/pin"
    row = one_row(
        api,
        release,
        lambda h: api.put(pin_path, {"run_id": other["id"], "reason": "rollback"}, headers=h),
    )
    assert (row["action"], row["target"], row["reason"]) == (
        "pin.set",
        "environments/PROD/models/AImodel/pin",
        "rollback",
    )
    assert row["before"] is None
    assert row["after"] == {
        "run_id": other["id"],
        "champions": [
            {"environment": "PROD", "from_run_id": served["id"], "to_run_id": other["id"]}
        ],
    }
    row = one_row(api, release, lambda h: api.delete(pin_path, {"reason": "fixed"}, headers=h))
    assert (row["action"], row["reason"]) == ("pin.remove", "fixed")
    assert row["before"] == {"run_id": other["id"], "reason": "rollback"}
    assert row["after"]["run_id"] is None
    assert row["after"]["champions"][0]["to_run_id"] == served["id"]


def test_removing_a_run_is_audited_with_the_run_and_the_champions_it_moved(
    api: Api, served: dict[str, Any]
) -> None:
    release = bearer(api, "release-eng", "release")
    row = one_row(
        api,
        release,
        lambda h: api.delete(
            f"/runs/{served['id']}", {"reason": "leaked data", "force": True}, headers=h
        ),
    )
    assert (row["action"], row["target"], row["reason"]) == (
        "run.delete",
        f"runs/{served['id']}",
        "leaked data",
    )
    assert row["before"]["id"] == served["id"]
    assert row["before"]["artifact"]["sha256"] == served["artifact"]["sha256"]
    assert row["after"] == {
        "champions": [{"environment": "PROD", "from_run_id": served["id"], "to_run_id": None}]
    }


def test_tokens_are_audited_and_no_audit_row_ever_holds_a_secret(api: Api) -> None:
    admin = bearer(api, "root", "admin")
    response, rows = audited(
        api, admin, lambda h: api.post("/tokens", {"name": "serving", "role": "reader"}, headers=h)
    )
    assert response.status_code == 201
    created = response.get_json()
    assert len(rows) == 1
    assert (rows[0]["actor"], rows[0]["action"], rows[0]["target"]) == (
        "root",
        "token.create",
        f"tokens/{created['id']}",
    )
    assert rows[0]["after"]["role"] == "reader"

    row = one_row(api, admin, lambda h: api.delete(f"/tokens/{created['id']}", headers=h))
    assert (row["action"], row["target"]) == ("token.revoke", f"tokens/{created['id']}")
    assert row["before"]["revoked_at"] is None and row["after"]["revoked_at"] is not None

    everything = json.dumps(audit_rows(api))
    assert created["secret"] not in everything
    assert admin["Authorization"].removeprefix("Bearer ") not in everything
    assert created["secret"][len("mr_") :] not in everything


# -- refused requests write nothing; a plan writes nothing -------------------------------


def test_a_refused_request_writes_no_audit_row(api: Api, served: dict[str, Any]) -> None:
    release = bearer(api, "release-eng", "release")
    ci = bearer(api, "ci-pipeline", "ci")
    admin: dict[str, str] = {}  # the test client's own admin token
    pin = "/environments/PROD/models/AImodel/pin"
    policy = "/environments/PROD/policies/AImodel"
    transitions = "/models/AImodel/versions/1.0/transitions"
    cases: list[tuple[dict[str, str], Send, int, str]] = [
        (ci, lambda h: api.post("/models", {"name": "aimodel"}, headers=h), 409, "already_exists"),
        (
            ci,
            lambda h: api.post("/models/nope/versions", {"version": "1"}, headers=h),
            404,
            "not_found",
        ),
        (
            release,
            lambda h: api.put(policy, policy_body(stages=["Production"]), headers=h),
            428,
            "precondition_required",
        ),
        (
            release,
            lambda h: api.put(
                policy, policy_body(stages=["Production"]), headers={**h, "If-Match": "7"}
            ),
            412,
            "precondition_failed",
        ),
        (
            release,
            lambda h: api.put(
                policy,
                policy_body(stages=["Production"], reason=" "),
                headers={**h, "If-Match": "1"},
            ),
            422,
            "validation_error",
        ),
        (
            release,
            lambda h: api.post(
                transitions,
                {"stage": "Archived", "reason": "x", "from_stage": "Staging"},
                headers=h,
            ),
            409,
            "invalid_transition",
        ),
        (
            release,
            lambda h: api.post(transitions, {"stage": "Staging"}, headers=h),
            422,
            "validation_error",
        ),
        (
            release,
            lambda h: api.post(transitions, {"stage": "Archived", "reason": "retire"}, headers=h),
            409,
            "would_leave_no_model",
        ),
        (
            ci,
            lambda h: api.post(transitions, {"stage": "Staging", "reason": "x"}, headers=h),
            403,
            "forbidden",
        ),
        (
            release,
            lambda h: api.put(pin, {"run_id": served["id"]}, headers=h),
            422,
            "validation_error",
        ),
        (release, lambda h: api.delete(pin, {"reason": "x"}, headers=h), 404, "not_found"),
        (
            ci,
            lambda h: api.post(
                f"/runs/{served['id']}/evaluations",
                {"dataset": "holdout", "metrics": {"f1": 0.1}},
                headers=h,
            ),
            409,
            "already_exists",
        ),
        (
            release,
            lambda h: api.delete(f"/runs/{served['id']}", {"reason": "x"}, headers=h),
            409,
            "would_leave_no_model",
        ),
        (
            ci,
            lambda h: api.post("/runs/999/evaluate", {"dataset": "holdout"}, headers=h),
            404,
            "not_found",
        ),
        (
            admin,
            lambda h: api.post("/tokens", {"name": "ci-pipeline", "role": "ci"}, headers=h),
            409,
            "already_exists",
        ),
        (admin, lambda h: api.delete("/tokens/999", headers=h), 404, "not_found"),
    ]
    for headers, send, status, code in cases:
        no_row(api, headers, send, status, code)


def test_a_plan_writes_no_audit_row(api: Api, served: dict[str, Any]) -> None:
    response, rows = audited(
        api,
        {},
        lambda h: api.post(
            "/environments/PROD/policies/AImodel/plan",
            policy_body(stages=["Production"], min_value=0.99, reason=""),
            headers=h,
        ),
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["would_leave_no_model"] is True
    assert rows == []


# -- reading the trail ---------------------------------------------------------------------


def test_release_may_read_the_audit_trail_and_ci_and_reader_get_403(api: Api) -> None:
    release = bearer(api, "release-eng", "release")
    assert api.get("/audit", headers=release).status_code == 200
    for role in ("ci", "reader"):
        assert_error(api.get("/audit", headers=bearer(api, f"a-{role}", role)), 403, "forbidden")


def test_the_audit_list_is_newest_first_and_filters_by_actor_action_target_and_since(
    api: Api,
) -> None:
    ci = bearer(api, "ci-pipeline", "ci")
    for name in ("a_b", "axb", "a_bc"):
        assert api.post("/models", {"name": name}, headers=ci).status_code == 201
    assert api.post("/models/a_b/versions", {"version": "1.0"}, headers=ci).status_code == 201
    assert api.post("/models/axb/versions", {"version": "1.0"}).status_code == 201

    everything = audit_rows(api)
    ids = [row["id"] for row in everything]
    assert ids == sorted(ids, reverse=True)
    assert everything[0]["target"] == "models/axb/versions/1.0"

    # The target itself and what is under it; "_" is no wildcard, and case does not matter.
    under = audit_rows(api, target="models/A_B")
    assert [row["target"] for row in under] == ["models/a_b/versions/1.0", "models/a_b"]
    assert [row["target"] for row in audit_rows(api, target="models/a_b/")] == [
        "models/a_b/versions/1.0",
        "models/a_b",
    ]
    assert audit_rows(api, target="models/a%") == []

    mine = audit_rows(api, actor="ci-pipeline")
    assert {row["actor"] for row in mine} == {"ci-pipeline"} and len(mine) == 4
    assert [row["target"] for row in audit_rows(api, action="version.create")] == [
        "models/axb/versions/1.0",
        "models/a_b/versions/1.0",
    ]
    both = audit_rows(api, actor="ci-pipeline", action="model.create")
    assert [row["target"] for row in both] == ["models/a_bc", "models/axb", "models/a_b"]

    third = everything[2]
    since = audit_rows(api, since=third["at"])
    assert [row["id"] for row in since] == ids[:3]
    assert audit_rows(api, since="2999-01-01T00:00:00+02:00") == []
    naive = audit_rows(api, since=third["at"].removesuffix("Z"))
    assert [row["id"] for row in naive] == ids[:3]


def test_an_unparsable_since_is_422(api: Api) -> None:
    for bad in ("yesterday", "2026-13-01T00:00:00Z"):
        response = api.get("/audit", query_string={"since": bad})
        assert_error(response, 422, "validation_error", "since")


def test_the_audit_list_pages_with_tokens_that_new_rows_do_not_shift(api: Api) -> None:
    for i in range(7):
        create_model(api, f"m{i}")
    first = api.get("/audit", query_string={"page_size": 3, "action": "model.create"}).get_json()
    assert [row["target"] for row in first["items"]] == ["models/m6", "models/m5", "models/m4"]
    create_model(api, "newer")
    second = api.get(
        "/audit",
        query_string={
            "page_size": 3,
            "action": "model.create",
            "page_token": first["next_page_token"],
        },
    ).get_json()
    assert [row["target"] for row in second["items"]] == ["models/m3", "models/m2", "models/m1"]
    items, pages = collect_pages(api, "/audit?action=model.create", 3)
    assert len(items) == 8 and pages == 3
    assert_error(api.get("/audit?page_token=nonsense"), 400, "bad_request")


# -- optimistic concurrency ----------------------------------------------------------------


def test_replacing_a_policy_without_if_match_is_428_and_creating_one_needs_none(
    api: Api, served: dict[str, Any]
) -> None:
    path = "/environments/PROD/policies/AImodel"
    refused = api.put(path, policy_body(stages=["Production"], versions="<=2.0"))
    error = assert_error(refused, 428, "precondition_required")
    assert error["details"]["revision"] == 1
    assert api.get(path).get_json()["versions"] == ""

    stale = api.put(path, policy_body(versions="<=2.0"), headers={"If-Match": '"0"'})
    assert assert_error(stale, 412, "precondition_failed")["details"]["revision"] == 1

    current = api.get(path).headers["ETag"]
    replaced = api.put(path, policy_body(versions="<=2.0"), headers={"If-Match": current})
    assert replaced.status_code == 200, replaced.get_json()
    assert replaced.get_json()["revision"] == 2

    put_environment(api, "INT")
    created = api.put("/environments/INT/policies/AImodel", policy_body())
    assert created.status_code == 201, created.get_json()


def test_a_transition_from_a_stage_the_version_has_left_is_409_naming_the_actual_stage(
    api: Api,
) -> None:
    create_model(api, "AImodel")
    create_version(api, "AImodel", "1.0", "Staging")
    path = "/models/AImodel/versions/1.0/transitions"

    moved = api.post(path, {"stage": "Production", "from_stage": "None", "reason": "go"})

    error = assert_error(moved, 409, "invalid_transition")
    assert error["details"]["actual"] == "Staging"
    assert error["details"]["from_stage"] == "None"
    assert api.get("/models/AImodel/versions/1.0").get_json()["stage"] == "Staging"
    ok = api.post(path, {"stage": "Production", "from_stage": "Staging", "reason": "go"})
    assert ok.status_code == 200, ok.get_json()
    assert_error(
        api.post(path, {"stage": "Staging", "from_stage": "Nowhere"}),
        422,
        "validation_error",
        "from_stage",
    )


# -- reasons ---------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_policies_pins_and_production_transitions_need_a_reason(
    api: Api, served: dict[str, Any], reason: str | None
) -> None:
    given = {} if reason is None else {"reason": reason}
    body = {k: v for k, v in policy_body(stages=["Production"]).items() if k != "reason"}
    assert_error(
        api.put(
            "/environments/PROD/policies/AImodel", {**body, **given}, headers={"If-Match": "1"}
        ),
        422,
        "validation_error",
        "reason",
    )
    put_environment(api, "INT")
    assert_error(
        api.put("/environments/INT/policies/AImodel", {**body, **given}),
        422,
        "validation_error",
        "reason",
    )
    pin = "/environments/PROD/models/AImodel/pin"
    assert_error(api.put(pin, {"run_id": served["id"], **given}), 422, "validation_error", "reason")
    assert api.put(pin, {"run_id": served["id"], "reason": "rollback"}).status_code == 200
    assert_error(api.delete(pin, given), 422, "validation_error", "reason")

    transitions = "/models/AImodel/versions/1.0/transitions"
    out_of_production = {"stage": "Staging", "force": True, **given}
    assert_error(api.post(transitions, out_of_production), 422, "validation_error", "reason")
    create_version(api, "AImodel", "2.0")
    # Outside Production a reason is welcome but optional.
    assert (
        api.post(
            "/models/AImodel/versions/2.0/transitions", {"stage": "Staging", **given}
        ).status_code
        == 200
    )
    assert_error(
        api.post("/models/AImodel/versions/2.0/transitions", {"stage": "Production", **given}),
        422,
        "validation_error",
        "reason",
    )
