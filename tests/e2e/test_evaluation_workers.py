"""Server-side evaluation end to end: real ``modelreg serve`` and ``modelreg worker``
processes, real HTTP, real sandboxed children.

The wine held-out split is uploaded with its content; runs are registered without
any metric, and what the service measures itself (``verified``) is compared with
scikit-learn's weighted F1 computed here. Workers are started, killed and
restarted as processes; hostile artifacts hang, end the interpreter or exhaust
memory in the sandbox while the server keeps answering.

Artifacts that must misbehave are pickles of ``eval(expr)``: loading one runs
``expr`` in the evaluation child, and whatever ``expr`` returns is the "model".
"""

from __future__ import annotations

import datetime as dt
import json
import pickle
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import joblib
import pytest
from sklearn.ensemble import RandomForestClassifier
from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool

from modelreg.db.models import Job
from tests.e2e.conftest import Server, StartServer, StartWorker, WorkerProcess
from tests.e2e.test_wine_scenario import Holdout, wine_holdout

pytestmark = pytest.mark.e2e

MODEL = "AImodel"
DATASET = "wine-holdout"
ENV = "INT"
ACTOR = "ci-e2e"
WAIT_S = 60.0
POLL_S = 0.05
F1_TOLERANCE = 1e-12
FAST_POLL = {"MODELREG_WORKER_POLL_MS": "20"}

T = TypeVar("T")


# -- artifacts ------------------------------------------------------------------------


class _Eval:
    """Pickles as ``eval(expr)``: nothing of this class is in the pickle."""

    def __init__(self, expr: str) -> None:
        self.expr = expr

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (eval, (self.expr,))


def forest(holdout: Holdout, n_estimators: int, seed: int) -> RandomForestClassifier:
    return RandomForestClassifier(
        n_estimators=n_estimators, max_features=0.5, random_state=seed
    ).fit(holdout.x_train, holdout.y_train)


def joblib_bytes(model: Any, tmp_path: Path, name: str) -> bytes:
    path = tmp_path / f"{name}.joblib"
    joblib.dump(model, path)
    return path.read_bytes()


def loads_after(seconds: float, model: Any) -> bytes:
    """A pickle that sleeps ``seconds`` while it is loaded, then gives ``model``."""
    inner = pickle.dumps(model)
    return pickle.dumps(
        _Eval(f"__import__('time').sleep({seconds}) or __import__('pickle').loads({inner!r})")
    )


# Sleeps "forever" (far beyond the 5 s limit of the test), but gives up when its
# parent is gone or after 120 s, so that no failed run of this test leaves it behind
# (the sandbox's child lives in a session of its own).
HANGS = pickle.dumps(
    _Eval(
        "(lambda os, time, parent: any(os.getppid() != parent or time.sleep(0.1)"
        " for _ in range(1200)))"
        "(__import__('os'), __import__('time'), __import__('os').getppid())"
    )
)
EXITS = pickle.dumps(_Eval("__import__('os')._exit(3)"))
# 64 MiB at a time until the address-space limit says no (calloc'd: untouched pages).
EATS_MEMORY = pickle.dumps(_Eval("[bytes(1 << 26) for _ in range(1 << 20)]"))


def f1_of(model: Any, holdout: Holdout) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(holdout.y_test, model.predict(holdout.x_test), average="weighted"))


# -- HTTP helpers ---------------------------------------------------------------------


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float = WAIT_S,
    logs: Callable[[], str] = lambda: "",
    every: Callable[[], None] = lambda: None,
) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``logs`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        every()
        last = probe()
        if last:
            return last
        time.sleep(POLL_S)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})\n{logs()}")


def upload_holdout(server: Server, holdout: Holdout) -> dict[str, Any]:
    """POST /datasets as multipart: the CSV content and its ``{name, target, task}``."""
    metadata = json.dumps({"name": DATASET, "target": "target", "task": "classification"})
    files: dict[str, tuple[str | None, bytes | str, str]] = {
        "file": (f"{DATASET}.csv", holdout.csv_bytes, "text/csv"),
        "metadata": (None, metadata, "application/json"),
    }
    revision: dict[str, Any] = server.expect(
        server.session.post(server.api("/datasets"), files=files), 201
    )
    assert revision["has_content"] is True
    assert revision["label"] == f"{DATASET}@1"
    assert revision["task"] == "classification" and revision["target"] == "target"
    return revision


def create_model_in_staging(server: Server) -> None:
    s = server.session
    server.expect(s.post(server.api("/models"), json={"name": MODEL}), 201)
    server.expect(s.post(server.api(f"/models/{MODEL}/versions"), json={"version": "1.0"}), 201)
    server.expect(
        s.post(
            server.api(f"/models/{MODEL}/versions/1.0/transitions"),
            json={"stage": "Staging", "reason": "e2e"},
        ),
        200,
    )


def create_verified_policy(server: Server) -> dict[str, Any]:
    s = server.session
    server.expect(s.put(server.api(f"/environments/{ENV}"), json={"description": ENV}), 201)
    return dict(
        server.expect(
            s.put(
                server.api(f"/environments/{ENV}/policies/{MODEL}"),
                json={
                    "versions": "<=1.0",
                    "stages": ["Staging", "Production"],
                    "metric": "f1",
                    "dataset": DATASET,
                    "require_verified": True,
                    "reason": "INT serves what the service measured itself",
                },
            ),
            201,
        )
    )


def prepare(server: Server, holdout: Holdout) -> None:
    """Dataset with content, AImodel 1.0 in Staging, INT policy requiring verified F1."""
    server.act_as(ACTOR, "release")
    upload_holdout(server, holdout)
    create_model_in_staging(server)
    policy = create_verified_policy(server)
    assert policy["require_verified"] is True and policy["dataset"] == f"{DATASET}@1"


def register(
    server: Server, artifact: bytes, filename: str, metadata: dict[str, Any] | None = None
) -> int:
    run = server.expect(
        server.register_run(MODEL, "1.0", artifact, metadata or {}, filename=filename), 201
    )
    return int(run["id"])


def list_jobs(server: Server, **query: Any) -> list[dict[str, Any]]:
    page = server.expect(
        server.session.get(server.api("/jobs"), params={"page_size": 500, **query}), 200
    )
    assert page["next_page_token"] is None
    return list(page["items"])


def job(server: Server, job_id: int) -> dict[str, Any]:
    return dict(server.expect(server.session.get(server.api(f"/jobs/{job_id}")), 200))


def run_detail(server: Server, run_id: int) -> dict[str, Any]:
    return dict(server.expect(server.session.get(server.api(f"/runs/{run_id}")), 200))


def verified(detail: dict[str, Any]) -> dict[str, float]:
    """The run's verified values, by metric; fails on a second value of one metric."""
    rows = [e for e in detail["evaluations"] if e["source"] == "verified"]
    values = {e["metric"]: float(e["value"]) for e in rows}
    assert len(values) == len(rows), f"duplicate verified evaluations: {rows}"
    assert {e["dataset"] for e in rows} <= {f"{DATASET}@1"}
    return values


def champion(server: Server) -> dict[str, Any] | None:
    response = server.session.get(server.api(f"/environments/{ENV}/models/{MODEL}"))
    if response.status_code == 404:
        return None
    return dict(server.expect(response, 200))


def all_jobs_done(server: Server, count: int) -> list[dict[str, Any]] | None:
    items = list_jobs(server)
    if len(items) == count and all(j["state"] not in ("pending", "running") for j in items):
        return items
    return None


def best_of(f1s: dict[int, float]) -> int:
    """The contract's ranking within one version: better F1, then higher run number."""
    return max(f1s, key=lambda run_id: (f1s[run_id], run_id))


def logs_of(server: Server, *workers: WorkerProcess) -> Callable[[], str]:
    def text() -> str:
        parts = [f"--- server log ---\n{server.log(60)}"]
        parts += [f"--- worker {w.name} log ---\n{w.log(60)}" for w in workers]
        return "\n".join(parts)

    return text


# -- tests ----------------------------------------------------------------------------


def test_the_embedded_default_server_measures_runs_by_itself_and_serves_the_verified_best(
    embedded_server: Server, tmp_path: Path
) -> None:
    server = embedded_server
    holdout = wine_holdout()
    server.act_as(ACTOR, "release")
    upload_holdout(server, holdout)
    create_model_in_staging(server)

    f1s: dict[int, float] = {}
    # Two retrains before the policy exists (its creation queues them), one after
    # (its registration queues it). No metric is ever sent.
    for n_estimators, seed in [(1, 0), (3, 1)]:
        model = forest(holdout, n_estimators, seed)
        run_id = register(server, joblib_bytes(model, tmp_path, f"rf{seed}"), f"rf{seed}.joblib")
        f1s[run_id] = f1_of(model, holdout)
    create_verified_policy(server)
    late = forest(holdout, 50, 2)
    late_id = register(server, joblib_bytes(late, tmp_path, "rf2"), "rf2.joblib")
    f1s[late_id] = f1_of(late, holdout)

    done = wait_for(
        "the serve's own worker to evaluate every run",
        lambda: all_jobs_done(server, len(f1s)),
        logs=lambda: server.log(80),
    )
    assert {j["run_id"]: j["trigger"] for j in done} == {
        **{run_id: "policy" for run_id in f1s if run_id != late_id},
        late_id: "run_registered",
    }
    assert all(j["state"] == "succeeded" and j["attempts"] == 1 for j in done), done
    assert all(j["dataset"] == f"{DATASET}@1" and j["actor"] == ACTOR for j in done), done

    for run_id, f1 in f1s.items():
        detail = run_detail(server, run_id)
        assert detail["pending_jobs"] == []
        values = verified(detail)
        assert abs(values["f1"] - f1) <= F1_TOLERANCE, (run_id, values, f1)
        assert 0.0 <= values["accuracy"] <= 1.0
        assert not [e for e in detail["evaluations"] if e["source"] != "verified"]

    best = best_of(f1s)
    served = champion(server)
    assert served is not None
    assert served["run_id"] == best
    assert served["metric"]["name"] == "f1"
    assert served["metric"]["dataset"] == f"{DATASET}@1"
    assert abs(served["metric"]["value"] - f1s[best]) <= F1_TOLERANCE
    assert served["reason"] == "best"

    history = server.expect(
        server.session.get(server.api(f"/environments/{ENV}/models/{MODEL}/history")), 200
    )["items"]
    assert history[0]["to_run_id"] == best
    assert history[0]["trigger"] == "verified_evaluation"
    assert history[0]["actor"] == ACTOR
    assert f"run {best} verified on {DATASET}@1" in history[0]["detail"]
    assert all(h["trigger"] == "verified_evaluation" for h in history), history


RACE_RUNS = 24
FINISHED = re.compile(r": job (\d+) succeeded in ")


def test_two_workers_never_take_the_same_job_and_store_each_run_s_values_once(
    start_server: StartServer, start_worker: StartWorker, tmp_path: Path
) -> None:
    server = start_server(args=["--no-evaluation-worker"])
    holdout = wine_holdout()
    prepare(server, holdout)

    f1s: dict[int, float] = {}
    for i in range(RACE_RUNS):
        model = forest(holdout, 1 + i % 4, i)
        run_id = register(server, joblib_bytes(model, tmp_path, f"rf{i}"), f"rf{i}.joblib")
        f1s[run_id] = f1_of(model, holdout)
    pending = list_jobs(server, state="pending")
    assert sorted(j["run_id"] for j in pending) == sorted(f1s)

    # Both claim a job as soon as they are up, long before their first evaluation
    # (which starts the sandbox's fork server) is over: each of them gets work.
    workers = [start_worker(server, env=FAST_POLL) for _ in range(2)]
    done = wait_for(
        f"two workers to finish {RACE_RUNS} jobs",
        lambda: all_jobs_done(server, RACE_RUNS),
        logs=logs_of(server, *workers),
    )
    assert all(j["state"] == "succeeded" for j in done), [j for j in done if j["error"]]
    assert [j for j in done if j["attempts"] != 1] == []
    by_worker = {w.name: sum(j["worker"] == w.name for j in done) for w in workers}
    assert set(by_worker.values()) & {0} == set(), f"a worker did nothing: {by_worker}"
    assert sum(by_worker.values()) == RACE_RUNS, by_worker
    # A job taken twice would show in the logs: two "succeeded", or a "lost" job.
    finished = [(w.name, int(m)) for w in workers for m in FINISHED.findall(w.log(tail=10_000))]
    assert sorted(job_id for _, job_id in finished) == sorted(j["id"] for j in done), finished
    assert set(finished) == {(j["worker"], j["id"]) for j in done}
    assert not [w.name for w in workers if "lost job" in w.log(tail=10_000)]
    assert sorted(j["run_id"] for j in done) == sorted(f1s)

    for run_id, f1 in f1s.items():
        detail = run_detail(server, run_id)
        assert detail["pending_jobs"] == []
        assert abs(verified(detail)["f1"] - f1) <= F1_TOLERANCE

    served = champion(server)
    assert served is not None and served["run_id"] == best_of(f1s)
    for w in workers:
        assert w.process.poll() is None, f"worker {w.name} died:\n{w.log()}"


def lease_of(database_url: str, job_id: int) -> dt.datetime | None:
    """The job's lease (UTC), read from the database: the API does not show it."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            lease = conn.execute(select(Job.lease_expires_at).where(Job.id == job_id)).scalar_one()
    finally:
        engine.dispose()
    return None if lease is None else lease.replace(tzinfo=lease.tzinfo or dt.UTC)


def test_a_job_whose_worker_was_killed_is_finished_by_the_next_worker_with_queued_ones(
    start_server: StartServer, start_worker: StartWorker, database_url: str, tmp_path: Path
) -> None:
    lease_s = 2
    env = {**FAST_POLL, "MODELREG_JOB_LEASE_SECONDS": str(lease_s)}
    server = start_server(args=["--no-evaluation-worker"])
    holdout = wine_holdout()
    prepare(server, holdout)

    strong = forest(holdout, 50, 0)
    slow_id = register(server, loads_after(2, strong), "slow.pkl")
    f1s = {slow_id: f1_of(strong, holdout)}
    [slow_job] = list_jobs(server, run_id=slow_id)

    first = start_worker(server, env=env)
    taken = wait_for(
        "the first worker to take the slow job",
        lambda: (j := job(server, slow_job["id"]))["state"] == "running" and j,
        logs=logs_of(server, first),
    )
    assert taken["worker"] == first.name and taken["attempts"] == 1
    claimed_lease = lease_of(database_url, slow_job["id"])
    assert claimed_lease is not None
    # A renewed lease means the sandbox's child is evaluating (loading sleeps 2 s).
    wait_for(
        "the first worker to renew its lease while it evaluates",
        lambda: (lease_of(database_url, slow_job["id"]) or claimed_lease) > claimed_lease,
        logs=logs_of(server, first),
    )
    first.kill()

    lease = lease_of(database_url, slow_job["id"])
    assert lease is not None

    # More runs while no worker runs: their jobs wait.
    for i in range(1, 4):
        model = forest(holdout, 1, i)
        run_id = register(server, joblib_bytes(model, tmp_path, f"rf{i}"), f"rf{i}.joblib")
        f1s[run_id] = f1_of(model, holdout)
    assert len(list_jobs(server, state="pending")) == 3
    assert champion(server) is None

    # Nobody renews the lease any more, and nobody takes the job over either.
    time.sleep(max(0.0, (lease - dt.datetime.now(dt.UTC)).total_seconds()) + 0.5)
    assert lease_of(database_url, slow_job["id"]) == lease
    orphan = job(server, slow_job["id"])
    assert (orphan["state"], orphan["attempts"], orphan["worker"]) == ("running", 1, first.name)

    second = start_worker(server, env=env)
    done = wait_for(
        "the second worker to finish every job",
        lambda: all_jobs_done(server, len(f1s)),
        logs=logs_of(server, first, second),
    )
    assert all(j["state"] == "succeeded" and j["worker"] == second.name for j in done), done
    assert {j["run_id"]: j["attempts"] for j in done} == {
        run_id: 2 if run_id == slow_id else 1 for run_id in f1s
    }
    for run_id, f1 in f1s.items():
        detail = run_detail(server, run_id)
        assert detail["pending_jobs"] == []
        assert abs(verified(detail)["f1"] - f1) <= F1_TOLERANCE

    best = best_of(f1s)
    served = champion(server)
    assert served is not None and served["run_id"] == best
    assert abs(served["metric"]["value"] - f1s[best]) <= F1_TOLERANCE


def test_hostile_artifacts_fail_their_jobs_with_the_cause_while_the_server_stays_healthy(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(
        args=["--evaluation-worker"],
        env={
            **FAST_POLL,
            "MODELREG_EVALUATION_TIMEOUT": "5",
            "MODELREG_EVALUATION_MEMORY_MB": "1024",
        },
    )
    holdout = wine_holdout()
    prepare(server, holdout)

    # Each hostile run claims a perfect F1; only a verified value may count.
    lie = {"evaluations": [{"dataset": DATASET, "metrics": {"f1": 1.0}}]}
    hostile = {
        register(server, HANGS, "hangs.pkl", lie): "wall-time limit of 5 s",
        register(server, EXITS, "exits.pkl", lie): "exited with status 3",
        register(server, EATS_MEMORY, "eats.pkl", lie): "memory limit of 1024 MiB",
    }
    good = forest(holdout, 20, 0)
    good_id = register(server, joblib_bytes(good, tmp_path, "good"), "good.joblib")

    def ready() -> None:
        response = server.session.get(f"{server.url}/readyz", timeout=5)
        assert response.status_code == 200, response.text

    done = wait_for(
        "the worker to get through the hostile runs and the good one",
        lambda: all_jobs_done(server, len(hostile) + 1),
        logs=lambda: server.log(80),
        every=ready,
    )
    states = {j["run_id"]: j for j in done}
    for run_id, cause in hostile.items():
        failed = states[run_id]
        assert failed["state"] == "failed", failed
        assert cause in failed["error"], failed
        assert failed["attempts"] == 1
        assert verified(run_detail(server, run_id)) == {}
    assert states[good_id]["state"] == "succeeded", states[good_id]

    served = champion(server)
    assert served is not None and served["run_id"] == good_id
    assert abs(served["metric"]["value"] - f1_of(good, holdout)) <= F1_TOLERANCE
    explain = server.expect(
        server.session.get(server.api(f"/environments/{ENV}/models/{MODEL}/explain")), 200
    )
    excluded = {c["run_id"]: c["reasons"] for c in explain["candidates"] if not c["eligible"]}
    # Their evaluations failed: excluded as such, whatever they reported.
    assert excluded == {run_id: ["evaluation_failed"] for run_id in hostile}
    failed_jobs = {c["run_id"]: c["evaluation"] for c in explain["candidates"] if not c["eligible"]}
    assert all(e is not None and e["state"] == "failed" for e in failed_jobs.values())
    ready()
