"""The Python client (``modelreg.client.Registry``) on the real app and database, in-process.

Requests go through a ``requests.Session`` whose adapter hands them to the Flask app
(tests/integration/in_process.py): the client's own code sends them, streamed uploads
and verified downloads included, on SQLite and PostgreSQL, without a socket. Every
``Registry`` method is called here at least once, and every API error arrives as its
typed exception carrying the JSON error. What needs real HTTP (races between server
processes, a 50 MiB upload's memory, a transfer cut short, an unreachable server) is in
tests/e2e/test_client.py.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import joblib
import pytest
from flask import Flask

from modelreg.client import (
    Conflict,
    Forbidden,
    NoEligibleModel,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    Registry,
    RegistryError,
    Unauthenticated,
    ValidationError,
)
from modelreg.evaluation.sandbox import Sandbox
from modelreg.evaluation.worker import Worker
from tests.client_helpers import artifact_file, f1_of, forest, raises
from tests.e2e.test_wine_scenario import Holdout, wine_holdout
from tests.integration.conftest import ADMIN_TOKEN, APP_URL
from tests.integration.in_process import in_process

Connect = Callable[..., Registry]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def holdout() -> Holdout:
    return wine_holdout()


@pytest.fixture
def worker(app: Flask) -> Iterator[Worker]:
    """An evaluation worker on the app's database and store, at the process level."""
    c = app.extensions["modelreg"]
    sandbox = Sandbox(timeout=30, cpu_seconds=30, memory_mb=1024, renew_every=1)
    yield Worker(c.db, c.store, c.settings, executor=sandbox, name="client-test-worker")


def test_health_and_the_openapi_document_answer(connect: Connect, registry: Registry) -> None:
    assert connect(None).ready() is True  # /readyz needs no token
    doc = registry.openapi()
    assert doc["openapi"].startswith("3")
    assert any(path.endswith("/environments/{env}/models/{model}") for path in doc["paths"])


def test_models_and_versions_are_registered_listed_and_ensured_idempotently(
    registry: Registry,
) -> None:
    admin = registry
    created = admin.create_model("Catalog", "a model", tags={"team": "ml"})
    assert (created.name, created.description, created.tags) == (
        "Catalog",
        "a model",
        {"team": "ml"},
    )
    assert created.versions == ()
    assert admin.ensure_model("Catalog") == admin.model("Catalog")
    assert admin.ensure_model("catalog").name == "Catalog"  # unique case-insensitively
    assert "Catalog" in {m.name for m in admin.models()}
    assert raises(Conflict, lambda: admin.create_model("CATALOG")).code == "already_exists"

    v1 = admin.create_version("Catalog", "1.0", "first", tags={"git": "abc"})
    assert (v1.model, v1.version, v1.stage, v1.tags) == ("Catalog", "1.0", "None", {"git": "abc"})
    admin.create_version("Catalog", "2.0rc1")
    admin.create_version("Catalog", "1.5")
    assert admin.ensure_version("Catalog", "1.0.0") == admin.version("Catalog", "1.0")
    assert admin.ensure_version("Catalog", "3.0").stage == "None"
    again = raises(Conflict, lambda: admin.create_version("Catalog", "1.0.0"))
    assert again.code == "already_exists"
    assert again.status == 409

    def listed(**filters: Any) -> list[str]:
        return [v.version for v in admin.versions("Catalog", **filters)]

    assert listed() == ["1.0", "1.5", "2.0rc1", "3.0"]
    assert listed(spec="<=2.0") == ["1.0", "1.5"]
    assert listed(spec="<=2.0", prereleases=True) == ["1.0", "1.5", "2.0rc1"]
    assert listed(stage="Staging") == []
    assert [v.version for v in admin.model("Catalog").versions] == listed()


def test_transitions_check_the_stage_the_caller_saw_the_allowed_moves_and_the_role(
    connect: Connect, registry: Registry
) -> None:
    admin = registry
    admin.create_model("Staged")
    admin.create_version("Staged", "1.0")
    version, outcomes = admin.transition("Staged", "1.0", "Staging", from_stage="None")
    assert (version.stage, outcomes) == ("Staging", [])

    stale = raises(
        Conflict, lambda: admin.transition("Staged", "1.0", "Archived", from_stage="None")
    )
    assert stale.code == "invalid_transition"
    assert stale.details["actual"] == "Staging"
    assert admin.version("Staged", "1.0").stage == "Staging"  # nothing moved

    no_reason = raises(ValidationError, lambda: admin.transition("Staged", "1.0", "Production"))
    assert "reason" in no_reason.details
    ci = connect(admin.create_token("staged-ci", "ci").secret)
    forbidden = raises(
        Forbidden, lambda: ci.transition("Staged", "1.0", "Production", reason="ship it")
    )
    assert forbidden.details["required"] == "release"
    version, _ = admin.transition(
        "Staged", "1.0", "Production", reason="released", from_stage="Staging"
    )
    assert version.stage == "Production"
    invalid = raises(Conflict, lambda: admin.transition("Staged", "1.0", "None"))
    assert invalid.code == "invalid_transition"
    assert "Staging" in invalid.details["allowed"]


def test_register_run_with_a_path_creates_model_and_version_and_sends_the_files_sha256(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = registry
    path = artifact_file(tmp_path, "model.joblib", os.urandom(4096))
    digest = sha256_file(path)

    # The digest register_run sends is checked by the server: a wrong one refuses the
    # upload (and keeps nothing), which shows that it is sent and verified.
    import modelreg.client.registry as client_registry

    with monkeypatch.context() as patched:
        patched.setattr(client_registry, "sha256_of", lambda _path: "0" * 64)
        refused = raises(ValidationError, lambda: admin.register_run("CI-path", "1.0", path))
    assert refused.code == "validation_error"
    assert digest in str(refused.details["expected_sha256"])
    assert admin.runs("CI-path", "1.0") == []

    run = admin.register_run(
        "CI-path",
        "1.0",
        str(path),
        params={"n_estimators": 5},
        tags={"estimator": "forest"},
        source={"git_commit": "abc123", "pipeline": "e2e"},
        progress=False,
    )
    assert run.sha256 == digest
    assert (run.model, run.version, run.number) == ("CI-path", "1.0", 1)
    assert run.artifact["size"] == path.stat().st_size
    assert run.artifact["format"] == "joblib"
    assert (run.params, run.tags, run.source) == (
        {"n_estimators": 5},
        {"estimator": "forest"},
        {"git_commit": "abc123", "pipeline": "e2e"},
    )
    assert admin.run(run.id).sha256 == digest

    second = admin.register_run("CI-path", "1.0.0", path, progress=False)  # idempotent setup
    assert (second.version, second.number, second.sha256) == ("1.0", 2, digest)
    assert [v.version for v in admin.versions("CI-path")] == ["1.0"]
    assert [r.number for r in admin.runs("CI-path", "1.0")] == [1, 2]


def test_register_run_with_an_estimator_uploads_it_with_joblib_and_reports_its_metrics(
    registry: Registry, holdout: Holdout, tmp_path: Path
) -> None:
    admin = registry
    dataset = admin.register_dataset(
        "ci-holdout", hashlib.sha256(holdout.csv_bytes).hexdigest(), "wine"
    )
    model = forest(holdout)
    f1 = f1_of(model, holdout)
    with pytest.raises(ValueError, match="dataset"):
        admin.register_run("CI-object", "1.0", model, metrics={"f1": f1})

    run = admin.register_run(
        "CI-object", "1.0", model, metrics={"f1": f1}, dataset="ci-holdout", progress=False
    )
    assert run.artifact["format"] == "joblib"
    assert [(e.dataset, e.metric, e.value, e.source) for e in run.evaluations] == [
        (dataset.label, "f1", f1, "reported")
    ]
    downloaded = admin.download_artifact(run.id, tmp_path / "back.joblib")
    assert sha256_file(downloaded) == run.sha256
    back = joblib.load(downloaded)
    assert (back.predict(holdout.x_test) == model.predict(holdout.x_test)).all()
    assert [(e.metric, e.value) for e in admin.evaluations(run.id)] == [("f1", f1)]


def test_create_run_and_download_artifact_round_trip_with_a_checksum_check(
    registry: Registry, tmp_path: Path
) -> None:
    admin = registry
    admin.create_model("RoundTrip")
    admin.create_version("RoundTrip", "1.0")
    content = os.urandom(3 * 1024 * 1024 + 7)  # several chunks, not a multiple of one
    path = artifact_file(tmp_path, "weights.bin", content)
    progress: list[tuple[int, int]] = []
    run = admin.create_run(
        "RoundTrip",
        "1.0",
        path,
        params={"lr": 0.1},
        format="bin",
        progress=lambda done, total: progress.append((done, total)),
    )
    assert run.sha256 == hashlib.sha256(content).hexdigest()
    assert run.artifact["format"] == "bin"
    assert progress[-1][0] == progress[-1][1] > len(content)  # the whole multipart body
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)

    out = admin.download_artifact(run.id, tmp_path / "dl" / "weights.bin")
    assert out.read_bytes() == content

    corrupt = tmp_path / "bad" / "weights.bin"
    mismatch = raises(
        RegistryError,
        lambda: admin.download_artifact(run.id, corrupt, expected_sha256="f" * 64),
    )
    assert mismatch.code == "checksum_mismatch"
    assert not corrupt.exists()
    assert list(corrupt.parent.iterdir()) == []  # no partial file left behind

    dataset = admin.register_dataset("rt-set", hashlib.sha256(b"rt").hexdigest())
    added = admin.add_evaluation(run.id, "rt-set", {"rmse": 0.5, "mae": 0.25})
    assert {(e.dataset, e.metric, e.value) for e in added} == {
        (dataset.label, "rmse", 0.5),
        (dataset.label, "mae", 0.25),
    }
    twice = raises(Conflict, lambda: admin.add_evaluation(run.id, "rt-set", {"rmse": 0.4}))
    assert twice.code == "already_exists"

    outcomes = admin.delete_run(run.id, reason="cleanup")
    assert outcomes == []
    assert raises(NotFound, lambda: admin.run(run.id)).code == "not_found"


def test_datasets_by_digest_and_with_content_are_listed_described_and_downloaded(
    registry: Registry, holdout: Holdout, tmp_path: Path
) -> None:
    admin = registry
    digest = hashlib.sha256(b"elsewhere").hexdigest()
    by_digest = admin.register_dataset("digest-only", digest, "kept elsewhere")
    assert (by_digest.label, by_digest.sha256, by_digest.has_content) == (
        "digest-only@1",
        digest,
        False,
    )
    assert admin.register_dataset("digest-only", digest).revision == 1  # same bytes

    csv_path = artifact_file(tmp_path, "holdout.csv", holdout.csv_bytes)
    uploaded = admin.upload_dataset(
        "content-set", csv_path, target="target", task="classification", progress=False
    )
    assert (uploaded.label, uploaded.has_content, uploaded.target, uploaded.task) == (
        "content-set@1",
        True,
        "target",
        "classification",
    )
    assert uploaded.row_count == len(holdout.y_test)
    assert uploaded.sha256 == hashlib.sha256(holdout.csv_bytes).hexdigest()

    assert [r.revision for r in admin.dataset("content-set").revisions] == [1]
    assert {"digest-only", "content-set"} <= {d.name for d in admin.datasets()}
    assert admin.dataset_revision("content-set", 1).has_content is True

    out = admin.download_dataset("content-set", 1, tmp_path / "dl" / "holdout.csv")
    assert out.read_bytes() == holdout.csv_bytes
    missing = tmp_path / "dl" / "nothing.csv"
    assert raises(NotFound, lambda: admin.download_dataset("digest-only", 1, missing))
    assert not missing.exists()

    bad = artifact_file(tmp_path, "bad.csv", b"a,b\n1,2\n")
    refused = raises(
        ValidationError,
        lambda: admin.upload_dataset("content-set", bad, target="label", task="classification"),
    )
    assert "target" in refused.details


def test_a_server_side_evaluation_is_requested_and_awaited(
    registry: Registry, holdout: Holdout, tmp_path: Path, worker: Worker
) -> None:
    admin = registry
    csv_path = artifact_file(tmp_path, "eval.csv", holdout.csv_bytes)
    admin.upload_dataset("eval-set", csv_path, target="target", task="classification")
    model = forest(holdout, seed=3)
    run = admin.register_run("Evaluated", "1.0", model, progress=False)

    job = admin.evaluate(run.id, "eval-set")
    assert (job.run_id, job.dataset, job.trigger) == (run.id, "eval-set@1", "request")
    with pytest.raises(TimeoutError, match="still pending"):  # no worker has run yet
        admin.wait_for_job(job.id, timeout=0, poll=0)
    with pytest.raises(TimeoutError, match="1 of 1 jobs still pending"):
        admin.wait_for_jobs([job.id], timeout=0, poll=0)

    worker.run(until_idle=True)
    seen: list[tuple[int, int]] = []
    ended = admin.wait_for_jobs([job.id], timeout=0, poll=0, progress=lambda *p: seen.append(p))
    assert ended == []  # none failed
    assert seen == [(1, 1)]
    done = admin.wait_for_job(job.id, timeout=0, poll=0)
    assert done.state == "succeeded", done.raw
    assert done.result is not None
    assert done.result["metrics"]["f1"] == pytest.approx(f1_of(model, holdout), abs=1e-12)
    assert admin.job(job.id).state == "succeeded"
    assert [j.id for j in admin.jobs(run_id=run.id)] == [job.id]
    assert job.id in {j.id for j in admin.jobs(state="succeeded")}
    verified = {e.metric: e.value for e in admin.evaluations(run.id) if e.source == "verified"}
    assert verified["f1"] == done.result["metrics"]["f1"]
    assert admin.evaluate(run.id, "eval-set").id == job.id  # scored: the job that did it


def test_a_release_plans_and_puts_policies_with_if_match_and_reads_champions(
    registry: Registry, tmp_path: Path
) -> None:
    admin = registry
    admin.register_dataset("pol-set", hashlib.sha256(b"pol").hexdigest())

    def run(version: str, f1: float) -> int:
        path = artifact_file(tmp_path, f"{version}-{f1}.bin")
        return admin.register_run(
            "Policied", version, path, metrics={"f1": f1}, dataset="pol-set", progress=False
        ).id

    r1a, r1b = run("1.0", 0.8), run("1.0", 0.9)
    r2 = run("2.0", 0.95)
    for version in ("1.0", "2.0"):
        admin.transition("Policied", version, "Staging")
    admin.transition("Policied", "1.0", "Production", reason="release 1.0")

    env = admin.put_environment("PROD", "production")
    assert (env.name, env.description, env.champions) == ("PROD", "production", ())
    assert "PROD" in {e.name for e in admin.environments()}

    narrow: dict[str, Any] = {"metric": "f1", "dataset": "pol-set", "versions": "<=1.0"}
    plan = admin.plan_policy("PROD", "Policied", **narrow)
    assert (plan.current, plan.changes, plan.eligible_count) == (None, True, 2)
    assert plan.proposed is not None and plan.proposed.run_id == r1b
    assert raises(NotFound, lambda: admin.policy("PROD", "Policied"))  # a plan stores nothing

    created = admin.put_policy("PROD", "Policied", reason="PROD takes 1.x", **narrow)
    assert (created.revision, created.dataset, created.direction) == (1, "pol-set@1", "max")
    assert created.stages == ("Production",)
    assert created.champion_changed and created.champion is not None
    assert created.champion.run_id == r1b

    wide: dict[str, Any] = {**narrow, "versions": "<=2.0", "stages": ["Staging", "Production"]}
    required = raises(
        PreconditionRequired, lambda: admin.put_policy("PROD", "Policied", reason="w", **wide)
    )
    assert required.code == "precondition_required"
    stale = raises(
        PreconditionFailed,
        lambda: admin.put_policy("PROD", "Policied", reason="w", if_match=0, **wide),
    )
    assert stale.code == "precondition_failed"
    plan = admin.plan_policy("PROD", "Policied", **wide)
    assert plan.current is not None and plan.current.run_id == r1b
    assert plan.proposed is not None and plan.proposed.run_id == r2
    assert admin.policy("PROD", "Policied").revision == 1

    seen = admin.policy("PROD", "Policied").revision
    widened = admin.put_policy("PROD", "Policied", reason="2.0 released", if_match=seen, **wide)
    assert widened.revision == seen + 1
    assert widened.champion is not None and widened.champion.run_id == r2
    nothing = raises(
        Conflict,
        lambda: admin.put_policy(
            "PROD", "Policied", reason="oops", if_match=widened.revision,
            **{**wide, "versions": "<0.5"},
        ),
    )  # fmt: skip
    assert nothing.code == "would_leave_no_model"

    champion = admin.champion("PROD", "Policied")
    assert (champion.run_id, champion.version, champion.value) == (r2, "2.0", 0.95)
    assert champion.metric["dataset"] == "pol-set@1"
    assert champion.sha256 == admin.run(r2).sha256
    assert champion.policy_revision == widened.revision
    again, etag = admin.champion_if_changed("PROD", "Policied", None)
    assert again is not None and again.run_id == r2 and etag
    assert admin.champion_if_changed("PROD", "Policied", etag) == (None, etag)

    explained = admin.explain("PROD", "Policied")
    assert (explained.champion, explained.reason, explained.metric) == (r2, "best", "f1")
    assert [(c.run_id, c.eligible, c.rank) for c in explained.candidates] == [
        (r2, True, 1),
        (r1b, True, 2),
        (r1a, True, 3),
    ]

    pinned = admin.pin("PROD", "Policied", r1a, reason="rollback")
    assert pinned is not None and (pinned.run_id, pinned.reason) == (r1a, "pinned")
    assert admin.explain("PROD", "Policied").reason == "pinned"
    changed, new_etag = admin.champion_if_changed("PROD", "Policied", etag)
    assert changed is not None and changed.run_id == r1a and new_etag != etag
    the_pin = admin.get_pin("PROD", "Policied")
    assert (the_pin.run_id, the_pin.reason, the_pin.actor) == (r1a, "rollback", "admin-token")
    assert the_pin.pinned_at and the_pin.champion and the_pin.champion.run_id == r1a
    unpinned = admin.unpin("PROD", "Policied", reason="fixed")
    assert unpinned is not None and unpinned.run_id == r2
    assert raises(NotFound, lambda: admin.get_pin("PROD", "Policied")).status == 404

    admin.create_version("Policied", "9.0")
    assert admin.delete_version("Policied", "9.0", reason="a typo") == []
    assert raises(NotFound, lambda: admin.version("Policied", "9.0")).code == "not_found"
    has_runs = raises(Conflict, lambda: admin.delete_version("Policied", "2.0", reason="x"))
    assert (has_runs.code, has_runs.details["runs"]) == ("conflict", [r2])

    history = admin.history("PROD", "Policied")
    assert [(h.from_run_id, h.to_run_id) for h in history] == [
        (r1a, r2),
        (r2, r1a),
        (r1b, r2),
        (None, r1b),
    ]
    assert {h.actor for h in history} == {"admin-token"}
    assert [(c.environment, c.run_id) for c in admin.champions("Policied")] == [("PROD", r2)]
    assert [c.run_id for c in admin.environment("PROD").champions] == [r2]

    # A transition answers the champions it moved.
    _, outcomes = admin.transition("Policied", "2.0", "Archived", reason="withdrawn")
    assert [(o.environment, o.before, o.after, o.changed) for o in outcomes] == [
        ("PROD", r2, r1b, True)
    ]


def test_tokens_are_created_listed_and_revoked_and_the_audit_log_is_read(
    connect: Connect, registry: Registry
) -> None:
    admin = registry
    created = admin.create_token(
        "client-reader", "reader", expires_at=datetime.now(UTC) + timedelta(days=1)
    )
    assert created.secret is not None and created.secret.startswith("mr_")
    assert (created.role, created.state) == ("reader", "active")
    assert created.expires_at is not None
    listed = {t.id: t for t in admin.tokens()}
    assert listed[created.id].secret is None
    assert created.secret.startswith(listed[created.id].prefix)
    assert admin.token(created.id).name == "client-reader"

    reader = connect(created.secret)
    assert isinstance(reader.models(), list)
    assert raises(Forbidden, reader.tokens).code == "forbidden"
    assert admin.revoke_token(created.id).state == "revoked"
    assert raises(Unauthenticated, reader.models).code == "unauthenticated"

    admin.create_model("Audited")
    entries = admin.audit(target="models/Audited")
    assert [(e.action, e.actor, e.role) for e in entries] == [
        ("model.create", "admin-token", "admin")
    ]
    assert entries[0].after is not None
    tokens_made = admin.audit(action="token.create", actor="admin-token")
    assert any(e.target.endswith(str(created.id)) for e in tokens_made), tokens_made
    assert admin.audit(since=datetime.now(UTC) + timedelta(hours=1)) == []
    assert admin.audit(since="2000-01-01T00:00:00Z", action="token.revoke") != []


def test_api_errors_arrive_as_typed_exceptions_that_carry_the_json_error(
    connect: Connect, registry: Registry
) -> None:
    admin = registry
    missing = raises(NotFound, lambda: admin.model("Nowhere"))
    assert (missing.status, missing.code) == (404, "not_found")
    assert missing.message and str(missing).startswith("404 not_found: ")

    admin.create_model("Empty")
    admin.register_dataset("empty-set", hashlib.sha256(b"empty").hexdigest())
    admin.put_environment("QA")
    admin.put_policy("QA", "Empty", metric="f1", dataset="empty-set", reason="no runs yet")
    none = raises(NoEligibleModel, lambda: admin.champion("QA", "Empty"))
    assert isinstance(none, NotFound)
    assert (none.status, none.code) == (404, "no_eligible_model")

    taken = raises(Conflict, lambda: admin.create_model("Empty"))
    assert (taken.status, taken.code) == (409, "already_exists")

    invalid = raises(ValidationError, lambda: admin.create_model("bad name!"))
    assert (invalid.status, invalid.code) == (422, "validation_error")
    assert "name" in invalid.details

    stranger = connect("mr_not-a-token")
    unknown = raises(Unauthenticated, lambda: stranger.model("Empty"))
    assert (unknown.status, unknown.code) == (401, "unauthenticated")
    assert raises(Unauthenticated, connect(None).models).status == 401  # no token

    reader = connect(admin.create_token("errors-reader", "reader").secret)
    assert reader.model("Empty").name == "Empty"
    refused = raises(Forbidden, lambda: reader.create_model("Readers-cannot"))
    assert (refused.status, refused.code) == (403, "forbidden")
    assert refused.details["required"] == "ci"


def test_a_session_passed_in_carries_no_token_and_stays_open_after_close(app: Flask) -> None:
    shared = in_process(app, APP_URL)
    with Registry(APP_URL, ADMIN_TOKEN, session=shared) as admin:
        admin.create_model("Shared")
    assert "Authorization" not in shared.headers  # the token went with each request only
    anonymous = Registry(APP_URL, session=shared)  # the same session, still open
    assert raises(Unauthenticated, anonymous.models).status == 401
    assert Registry(APP_URL, ADMIN_TOKEN, session=shared).model("Shared").name == "Shared"
    shared.close()
