"""The Python client (``modelreg.client.Registry``) against a live ``modelreg serve``.

One server per database serves the whole module (each test uses names of its own);
on SQLite it runs its embedded evaluation worker, on PostgreSQL the evaluation test
starts a ``modelreg worker``. Every ``Registry`` method is called at least once, and
every API error arrives as its typed exception carrying the JSON error.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import joblib
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import f1_score

from modelreg.client import (
    ChampionLoader,
    Conflict,
    Forbidden,
    NoEligibleModel,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    Registry,
    RegistryError,
    Unauthenticated,
    Unavailable,
    Unreachable,
    ValidationError,
)
from modelreg.client.transport import MultipartStream, TerminalProgress, progress_for
from tests.conftest import drop_postgres_database, new_postgres_database
from tests.e2e.conftest import (
    ADMIN_TOKEN,
    Server,
    StartWorker,
    clean_environ,
    free_port,
    serve_in,
)
from tests.e2e.test_wine_scenario import Holdout, wine_holdout

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
JOB_WAIT_S = 90.0
FAST_POLL = {"MODELREG_WORKER_POLL_MS": "20"}
BIG_MIB = 50
T = TypeVar("T")


# -- one server per database for the module ----------------------------------------------


def module_database(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
) -> Iterator[str]:
    """A migrated database of the module's own: a copy of the SQLite template, or a
    PostgreSQL database cloned from the template (dropped afterwards)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("client-db") / "modelreg.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    url = new_postgres_database(request.getfixturevalue("postgres_template"))
    try:
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
) -> Iterator[str]:
    """Overrides the per-test database: one database for the whole module, so that one
    server serves every test (they use names of their own)."""
    yield from module_database(request, tmp_path_factory, sqlite_template)


def start_live_server(database_url: str, base: Path) -> tuple[Server, dict[str, str]]:
    """A ``modelreg serve`` on ``database_url`` with its data in ``base``, and its environ."""
    artifacts = base / "artifacts"
    environ = clean_environ(
        MODELREG_DATABASE_URL=database_url,
        MODELREG_ARTIFACT_ROOT=str(artifacts),
        MODELREG_WORKER_POLL_MS=FAST_POLL["MODELREG_WORKER_POLL_MS"],
    )
    server = serve_in(base, environ, database_url=database_url, artifact_root=artifacts)
    return server, environ


@pytest.fixture(scope="module")
def live(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server, _ = start_live_server(database_url, tmp_path_factory.mktemp("client-server"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def admin(live: Server) -> Iterator[Registry]:
    with Registry(live.url, ADMIN_TOKEN, timeout=60) as registry:
        yield registry


def is_postgres(server: Server) -> bool:
    return server.database_url.startswith("postgresql")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def raises(kind: type[RegistryError], call: Callable[[], Any]) -> RegistryError:
    """The ``kind`` exception ``call`` raises (exactly that class, not a subclass)."""
    with pytest.raises(kind) as caught:
        call()
    assert type(caught.value) is kind, f"{type(caught.value).__name__}: {caught.value}"
    return caught.value


def forest(holdout: Holdout, n_estimators: int = 5, seed: int = 0) -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=n_estimators, random_state=seed).fit(
        holdout.x_train, holdout.y_train
    )


def f1_of(model: Any, holdout: Holdout) -> float:
    return float(f1_score(holdout.y_test, model.predict(holdout.x_test), average="weighted"))


def artifact_file(tmp_path: Path, name: str, content: bytes | None = None) -> Path:
    path = tmp_path / name
    path.write_bytes(content if content is not None else f"artifact {name}".encode())
    return path


@pytest.fixture(scope="module")
def holdout() -> Holdout:
    return wine_holdout()


# -- no server needed ----------------------------------------------------------------------


class FakeStream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def shown(terminal: FakeStream) -> str:
    """What a terminal shows of what was written to it: the text, without escape codes."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal.getvalue())


def test_the_progress_bar_draws_on_a_terminal_only_a_few_times_and_ends_its_line() -> None:
    terminal = FakeStream(tty=True)
    bar = TerminalProgress("uploading m.joblib", stream=terminal)
    total = 100 * 2**20
    for done in range(0, total + 1, 2**16):  # 1,601 chunks, in a few milliseconds
        bar(done, total)
    drawn = terminal.getvalue()
    assert drawn.count("uploading m.joblib") < 20, drawn  # redrawn at most every 0.1 s
    seen = shown(terminal)
    final = seen.rstrip("\n").rsplit("\r", 1)[-1]
    assert "uploading m.joblib" in final and "100%" in final and "104.9/104.9 MB" in final
    assert seen.endswith("\n")
    assert drawn.rfind("\x1b[?25h") > drawn.rfind("\x1b[?25l")  # the cursor is shown again
    bar(total, total)  # once ended, it stays quiet
    assert terminal.getvalue() == drawn

    jobs = FakeStream(tty=True)
    with TerminalProgress("evaluating AImodel on wine@2", stream=jobs, unit="jobs") as waits:
        waits(3, 12)
    assert "3/12 jobs" in shown(jobs) and shown(jobs).endswith("\n")  # closed: line ended

    pipe = FakeStream(tty=False)
    quiet = TerminalProgress("uploading m.joblib", stream=pipe)
    quiet(0, 10)
    quiet(10, 10)
    assert pipe.getvalue() == ""

    calls: list[tuple[int, int]] = []

    def record(done: int, total: int) -> None:
        calls.append((done, total))

    assert progress_for("x", False) is None
    assert progress_for("x", record) is record
    assert isinstance(progress_for("x", None), TerminalProgress)
    assert isinstance(progress_for("x", True), TerminalProgress)


def test_an_upload_body_is_sent_with_its_length_and_not_chunked(tmp_path: Path) -> None:
    path = artifact_file(tmp_path, "m.bin", os.urandom(100_000))
    body = MultipartStream({"metadata": "{}"}, "artifact", path, path.name)
    try:
        prepared = requests.Request(
            "POST", "http://127.0.0.1:9/", data=body, headers={"Content-Type": body.content_type}
        ).prepare()
        assert prepared.headers.get("Content-Length") == str(len(body))
        assert "Transfer-Encoding" not in prepared.headers
        sent = b"".join(iter(lambda: body.read(16384), b""))
    finally:
        body.close()
    assert len(sent) == len(body)
    assert path.read_bytes() in sent


def test_an_unreachable_registry_is_not_ready_and_raises_unreachable() -> None:
    closed = Registry(f"http://127.0.0.1:{free_port()}", ADMIN_TOKEN, timeout=5)
    assert closed.ready() is False
    error = raises(Unreachable, closed.models)
    assert error.status is None
    assert "cannot reach" in str(error)


# -- against the live server ----------------------------------------------------------------


def test_health_and_the_openapi_document_answer(live: Server, admin: Registry) -> None:
    assert Registry(live.url).ready() is True  # /readyz needs no token
    doc = admin.openapi()
    assert doc["openapi"].startswith("3")
    assert any(path.endswith("/environments/{env}/models/{model}") for path in doc["paths"])


def test_models_and_versions_are_registered_listed_and_ensured_idempotently(
    admin: Registry,
) -> None:
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


def test_eight_clients_ensuring_the_same_model_and_version_at_once_create_each_once(
    live: Server,
) -> None:
    barrier = threading.Barrier(8)
    results: list[tuple[str, str] | BaseException] = []
    lock = threading.Lock()

    def ensure(i: int) -> None:
        registry = Registry(live.url, ADMIN_TOKEN, timeout=60)
        try:
            barrier.wait(timeout=30)
            model = registry.ensure_model("Raced")
            version = registry.ensure_version("Raced", "1.0.0" if i % 2 else "1.0")
            outcome: tuple[str, str] | BaseException = (model.name, version.version)
        except BaseException as exc:
            outcome = exc
        finally:
            registry.close()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=ensure, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert not any(t.is_alive() for t in threads)
    # Whoever won keeps their spelling: 1.0 and 1.0.0 are one version.
    assert len(set(results)) == 1, results
    assert results[0] in {("Raced", "1.0"), ("Raced", "1.0.0")}, results
    admin = Registry(live.url, ADMIN_TOKEN)
    assert [v.version for v in admin.versions("Raced")] == [results[0][1]]
    assert [m.name for m in admin.models()].count("Raced") == 1


def test_transitions_check_the_stage_the_caller_saw_the_allowed_moves_and_the_role(
    live: Server, admin: Registry
) -> None:
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
    ci = Registry(live.url, live.token("staged-ci", "ci"))
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
    admin: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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
    admin: Registry, holdout: Holdout, tmp_path: Path
) -> None:
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
    admin: Registry, tmp_path: Path
) -> None:
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
    admin: Registry, holdout: Holdout, tmp_path: Path
) -> None:
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
    live: Server,
    admin: Registry,
    holdout: Holdout,
    tmp_path: Path,
    start_worker: StartWorker,
) -> None:
    if is_postgres(live):  # SQLite: the server's embedded worker evaluates
        start_worker(live, env=FAST_POLL)
    csv_path = artifact_file(tmp_path, "eval.csv", holdout.csv_bytes)
    admin.upload_dataset("eval-set", csv_path, target="target", task="classification")
    model = forest(holdout, seed=3)
    run = admin.register_run("Evaluated", "1.0", model, progress=False)

    job = admin.evaluate(run.id, "eval-set")
    assert (job.run_id, job.dataset, job.trigger) == (run.id, "eval-set@1", "request")
    done = admin.wait_for_job(job.id, timeout=JOB_WAIT_S, poll=0.1)
    assert done.state == "succeeded", done.raw
    assert done.result is not None
    assert done.result["metrics"]["f1"] == pytest.approx(f1_of(model, holdout), abs=1e-12)
    assert admin.job(job.id).state == "succeeded"
    assert [j.id for j in admin.jobs(run_id=run.id)] == [job.id]
    assert job.id in {j.id for j in admin.jobs(state="succeeded")}
    verified = {e.metric: e.value for e in admin.evaluations(run.id) if e.source == "verified"}
    assert verified["f1"] == done.result["metrics"]["f1"]
    assert admin.evaluate(run.id, "eval-set").id == job.id  # scored: the job that did it

    other = admin.register_run("Evaluated", "1.0", forest(holdout, seed=4), progress=False)
    pending = admin.evaluate(other.id, "eval-set")
    with pytest.raises(TimeoutError, match="still"):  # loading a model takes longer than 0 s
        admin.wait_for_job(pending.id, timeout=0, poll=0)


def test_a_release_plans_and_puts_policies_with_if_match_and_reads_champions(
    live: Server, admin: Registry, tmp_path: Path
) -> None:
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
    live: Server, admin: Registry
) -> None:
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

    reader = Registry(live.url, created.secret)
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
    live: Server, admin: Registry
) -> None:
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

    stranger = Registry(live.url, "mr_not-a-token")
    unknown = raises(Unauthenticated, lambda: stranger.model("Empty"))
    assert (unknown.status, unknown.code) == (401, "unauthenticated")
    assert raises(Unauthenticated, Registry(live.url).models).status == 401  # no token

    reader = Registry(live.url, live.token("errors-reader", "reader"))
    assert reader.model("Empty").name == "Empty"
    refused = raises(Forbidden, lambda: reader.create_model("Readers-cannot"))
    assert (refused.status, refused.code) == (403, "forbidden")
    assert refused.details["required"] == "ci"

    closed = Registry(f"http://127.0.0.1:{free_port()}", ADMIN_TOKEN)
    assert raises(Unreachable, lambda: closed.model("Empty")).code == "error"


def test_a_50_mib_upload_streams_without_the_client_holding_it_in_memory(
    live: Server, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with big.open("wb") as fh:
        for _ in range(BIG_MIB):
            chunk = os.urandom(2**20)
            digest.update(chunk)
            fh.write(chunk)
    small = artifact_file(tmp_path, "small.bin")
    script = """
import json, resource, sys
from modelreg.client import Registry

url, token, big, small = sys.argv[1:]
registry = Registry(url, token)
registry.create_run("Big", "1.0", small, progress=False)  # warm-up: imports, connection
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
seen = {"calls": 0, "last": None, "ordered": True}

def progress(done, total):
    seen["ordered"] = seen["ordered"] and (seen["last"] is None or done >= seen["last"][0])
    seen["calls"] += 1
    seen["last"] = (done, total)

run = registry.create_run("Big", "1.0", big, progress=progress)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_kib": after - before, "run": run.raw, **seen}))
"""
    admin = Registry(live.url, ADMIN_TOKEN)
    admin.ensure_model("Big")
    admin.ensure_version("Big", "1.0")
    done = subprocess.run(
        [sys.executable, "-c", script, live.url, ADMIN_TOKEN, str(big), str(small)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    artifact = report["run"]["artifact"]
    assert (artifact["sha256"], artifact["size"]) == (digest.hexdigest(), BIG_MIB * 2**20)
    growth_mib = report["growth_kib"] / 1024
    assert growth_mib < 16, f"the client's peak memory grew by {growth_mib:.1f} MiB"
    assert report["ordered"] and report["calls"] > 1
    done_bytes, total = report["last"]
    assert done_bytes == total > BIG_MIB * 2**20


# -- a stored artifact changed on disk --------------------------------------------------


def blob_path(server: Server, digest: str) -> Path:
    """Where the server stores the bytes of ``digest`` (modelreg.storage.artifacts)."""
    return server.artifact_root / "sha256" / digest[:2] / digest[2:4] / digest


def tamper_same_length(path: Path) -> None:
    """The same number of bytes, one of them different: only hashing can tell."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def integrity_failures(server: Server) -> float:
    """``modelreg_artifact_integrity_failures_total`` of the server (all its workers)."""
    response = server.session.get(f"{server.url}/metrics")
    assert response.status_code == 200, response.text[:500]
    return sum(
        s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.name == "modelreg_artifact_integrity_failures_total"
    )


def test_a_tampered_artifact_is_never_returned_and_is_audited_counted_and_repaired(
    live: Server, admin: Registry, tmp_path: Path
) -> None:
    content = os.urandom(3 * 1024 * 1024 + 7)  # several chunks
    path = artifact_file(tmp_path, "tampered.bin", content)
    run = admin.register_run("Tampered", "1.0", path, progress=False)
    failures = integrity_failures(live)
    tamper_same_length(blob_path(live, run.sha256))

    out = tmp_path / "dl" / "tampered.bin"
    with pytest.raises(RegistryError) as broken:
        admin.download_artifact(run.id, out)
    assert not isinstance(broken.value, Unavailable)  # the transfer itself broke
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no partial file either

    quarantined = raises(Unavailable, lambda: admin.download_artifact(run.id, out))
    assert (quarantined.status, quarantined.code) == (503, "unavailable")
    assert quarantined.details == {"sha256": run.sha256, "quarantined": True}
    assert not out.exists()

    audited = [e for e in admin.audit(action="artifact.corrupt") if e.target.endswith(run.sha256)]
    assert [(e.target, e.before) for e in audited] == [
        (f"blobs/{run.sha256}", {"sha256": run.sha256, "size": len(content)})
    ]
    assert integrity_failures(live) >= failures + 1

    admin.register_run("Tampered", "1.0", path, progress=False)  # the same bytes again

    assert admin.download_artifact(run.id, out).read_bytes() == content
    repairs = [e.target for e in admin.audit(action="artifact.repair")]
    assert f"blobs/{run.sha256}" in repairs


def test_the_champion_loader_refuses_a_tampered_champion_and_loads_it_once_repaired(
    live: Server, admin: Registry, holdout: Holdout, tmp_path: Path
) -> None:
    estimator = forest(holdout)
    admin.register_dataset("tamper-set", hashlib.sha256(b"tamper-set").hexdigest())
    run = admin.register_run(
        "TamperedChampion",
        "1.0",
        estimator,
        metrics={"f1": f1_of(estimator, holdout)},
        dataset="tamper-set",
        progress=False,
    )
    admin.transition("TamperedChampion", "1.0", "Staging")
    admin.transition("TamperedChampion", "1.0", "Production", reason="serve it")
    admin.put_environment("TAMPER")
    admin.put_policy("TAMPER", "TamperedChampion", metric="f1", dataset="tamper-set", reason="t")
    assert admin.champion("TAMPER", "TamperedChampion").run_id == run.id
    blob = blob_path(live, run.sha256)
    original = blob.read_bytes()
    tamper_same_length(blob)

    loaded: list[bytes] = []

    def deserialize(path: Path) -> Any:
        loaded.append(path.read_bytes())
        return joblib.load(path)

    cache = tmp_path / "cache"
    loader = ChampionLoader(
        live.url, "TAMPER", "TamperedChampion", token=ADMIN_TOKEN, cache_dir=cache,
        deserialize=deserialize, timeout=30,
    )  # fmt: skip
    with pytest.raises(RegistryError):
        loader.load()  # the transfer breaks
    assert raises(Unavailable, loader.load).details["sha256"] == run.sha256  # quarantined
    assert loaded == []
    assert loader.champion is None
    assert [p.name for p in cache.rglob("*") if p.is_file()] == []  # nothing cached

    repaired = artifact_file(tmp_path, "model.joblib", original)
    admin.register_run("TamperedChampion", "1.0", repaired, progress=False)

    served = loader.load()
    assert loaded == [original]
    assert loader.champion is not None and loader.champion.sha256 == run.sha256
    assert (served.predict(holdout.x_test) == estimator.predict(holdout.x_test)).all()
