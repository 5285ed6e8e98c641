"""Server-side evaluation on SQLite and PostgreSQL: scheduling, the real sandbox, results.

Jobs are processed by a real :class:`Worker` with the real strict sandbox (a warm
host inside bubblewrap, one child per job), in the test's process; the estimators
are real scikit-learn models and the expected numbers are computed here with
``sklearn.metrics``. Hostile artifacts are also run at the ``process`` level.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import joblib
import pytest
from flask import Flask
from sklearn import metrics as skm
from sklearn.datasets import load_diabetes, load_wine
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from modelreg.db.models import Job
from modelreg.evaluation import queue as jobs
from modelreg.evaluation.confined import confined_for
from modelreg.evaluation.sandbox import Sandbox
from modelreg.evaluation.worker import Worker
from tests.integration.conftest import (
    Api,
    assert_error,
    champion,
    create_model,
    create_version,
    history,
    put_environment,
    put_policy,
    sha,
)

# -- data and models ---------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    X_train: Any
    X_test: Any
    y_train: Any
    y_test: Any

    def csv(self, target: str = "target") -> bytes:
        return self.X_test.assign(**{target: self.y_test}).to_csv(index=False).encode()


@pytest.fixture(scope="module")
def wine() -> Split:
    X, y = load_wine(return_X_y=True, as_frame=True)
    return Split(*train_test_split(X, y, test_size=0.3, stratify=y, random_state=0))


@pytest.fixture(scope="module")
def diabetes() -> Split:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    return Split(*train_test_split(X, y, test_size=0.3, random_state=0))


def dumped(model: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


class _Hang:
    def __reduce__(self) -> Any:
        return (time.sleep, (10_000,))


class _Exit:
    def __reduce__(self) -> Any:
        return (os._exit, (7,))


class _Hog:
    def __reduce__(self) -> Any:
        return (exec, ("chunks = []\nwhile True: chunks.append(bytearray(10**7))",))


# -- helpers -------------------------------------------------------------------------


TIGHT = {"evaluation_timeout": 4, "evaluation_cpu_seconds": 4, "evaluation_memory_mb": 1024}


@pytest.fixture
def worker(app: Flask) -> Iterator[Worker]:
    """A worker with the real strict sandbox and tight limits, so hostile models end fast."""
    c = app.extensions["modelreg"]
    executor = confined_for(replace(c.settings, **TIGHT))
    yield Worker(c.db, c.store, c.settings, executor=executor, name="test-worker")
    executor.close()


@pytest.fixture
def process_worker(app: Flask) -> Worker:
    """A worker at the process level (fork server, rlimits only), with tight limits."""
    c = app.extensions["modelreg"]
    sandbox = Sandbox(timeout=4, cpu_seconds=4, memory_mb=1024, renew_every=1)
    return Worker(c.db, c.store, c.settings, executor=sandbox, name="test-worker")


def upload_dataset(
    api: Api, name: str, content: bytes, target: str = "target", task: str = "classification"
) -> dict[str, Any]:
    response = api.client.post(
        "/api/v1/datasets",
        data={
            "file": (io.BytesIO(content), f"{name}.csv"),
            "metadata": json.dumps({"name": name, "target": target, "task": task}),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code in (200, 201), response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def register(
    api: Api, content: bytes, *, version: str = "1.0", filename: str = "model.joblib", **meta: Any
) -> dict[str, Any]:
    response = api.upload_run("AImodel", version, content, meta, filename=filename)
    assert response.status_code == 201, response.get_json()
    run: dict[str, Any] = response.get_json()
    return run


def setup_model(api: Api, stage: str = "Staging") -> None:
    create_model(api, "AImodel")
    create_version(api, "AImodel", "1.0", stage)
    put_environment(api, "INT")


def verified_values(api: Api, run_id: int) -> dict[str, float]:
    response = api.get(f"/runs/{run_id}")
    assert response.status_code == 200
    return {
        e["metric"]: e["value"]
        for e in response.get_json()["evaluations"]
        if e["source"] == "verified"
    }


def job_of(api: Api, run_id: int) -> dict[str, Any]:
    response = api.get(f"/jobs?run_id={run_id}")
    assert response.status_code == 200
    items = response.get_json()["items"]
    assert len(items) == 1, items
    job: dict[str, Any] = items[0]
    return job


def classification_expectations(model: Any, split: Split) -> dict[str, float]:
    y, X = split.y_test, split.X_test
    y_pred = model.predict(X)
    proba = model.predict_proba(X)
    return {
        "accuracy": skm.accuracy_score(y, y_pred),
        "f1": skm.f1_score(y, y_pred, average="weighted", zero_division=0),
        "f1_macro": skm.f1_score(y, y_pred, average="macro", zero_division=0),
        "precision": skm.precision_score(y, y_pred, average="weighted", zero_division=0),
        "recall": skm.recall_score(y, y_pred, average="weighted", zero_division=0),
        "roc_auc": skm.roc_auc_score(y, proba, multi_class="ovr", labels=model.classes_),
        "log_loss": skm.log_loss(y, proba, labels=model.classes_),
    }


def assert_close(actual: dict[str, float], expected: dict[str, float]) -> None:
    assert set(actual) == set(expected), (actual, expected)
    for name, value in expected.items():
        assert abs(actual[name] - value) <= 1e-12, (name, actual[name], value)


# -- the numbers ---------------------------------------------------------------------


def test_verified_metrics_of_forests_and_logistic_regression_on_wine_equal_scikit_learns(
    api: Api, worker: Worker, wine: Split
) -> None:
    setup_model(api)
    upload_dataset(api, "wine-holdout", wine.csv())
    put_policy(api, "INT", "AImodel", dataset="wine-holdout", require_verified=True)
    models = [
        RandomForestClassifier(n_estimators=1, max_features=0.1, random_state=0),
        RandomForestClassifier(n_estimators=100, max_features=0.5, random_state=0),
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    ]
    runs = []
    for model in models:
        model.fit(wine.X_train, wine.y_train)
        runs.append((register(api, dumped(model)), model))
    assert worker.run(until_idle=True) == len(models)

    for run, model in runs:
        assert_close(verified_values(api, run["id"]), classification_expectations(model, wine))
        job = job_of(api, run["id"])
        assert job["state"] == "succeeded" and job["trigger"] == "run_registered"
        assert job["result"]["skipped"] == {}

    best = max(runs, key=lambda rm: verified_values(api, rm[0]["id"])["f1"])
    served = champion(api, "INT", "AImodel")
    assert served is not None
    assert served["metric"]["value"] == verified_values(api, served["run_id"])["f1"]
    assert served["metric"]["value"] == verified_values(api, best[0]["id"])["f1"]


def test_verified_metrics_of_a_regressor_on_diabetes_equal_scikit_learns(
    api: Api, worker: Worker, diabetes: Split
) -> None:
    setup_model(api)
    upload_dataset(
        api, "diabetes-holdout", diabetes.csv("progression"), "progression", "regression"
    )
    put_policy(api, "INT", "AImodel", dataset="diabetes-holdout", metric="rmse")
    model = RandomForestRegressor(n_estimators=30, random_state=0).fit(
        diabetes.X_train, diabetes.y_train
    )
    run = register(api, dumped(model))
    assert worker.run(until_idle=True) == 1

    y_pred = model.predict(diabetes.X_test)
    expected = {
        "r2": skm.r2_score(diabetes.y_test, y_pred),
        "rmse": skm.root_mean_squared_error(diabetes.y_test, y_pred),
        "mae": skm.mean_absolute_error(diabetes.y_test, y_pred),
    }
    assert_close(verified_values(api, run["id"]), expected)
    served = champion(api, "INT", "AImodel")
    assert served is not None and served["run_id"] == run["id"]
    assert served["metric"] == {
        "name": "rmse",
        "value": expected["rmse"],
        "dataset": "diabetes-holdout@1",
    }


def test_metrics_that_cannot_be_computed_are_skipped_with_a_reason_never_stored(
    api: Api, worker: Worker, wine: Split
) -> None:
    setup_model(api)
    # A test set without class 2 cannot give a one-vs-rest ROC AUC for a 3-class model.
    partial = Split(
        wine.X_train, wine.X_test[wine.y_test != 2], wine.y_train, wine.y_test[wine.y_test != 2]
    )
    upload_dataset(api, "two-classes", partial.csv())
    put_policy(api, "INT", "AImodel", dataset="two-classes")
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(wine.X_train, wine.y_train)
    svm = make_pipeline(StandardScaler(), LinearSVC()).fit(wine.X_train, wine.y_train)
    forest_run, svm_run = register(api, dumped(forest)), register(api, dumped(svm))
    worker.run(until_idle=True)

    forest_job = job_of(api, forest_run["id"])
    assert forest_job["state"] == "succeeded"
    assert set(forest_job["result"]["skipped"]) == {"roc_auc"}
    assert "lacks class" in forest_job["result"]["skipped"]["roc_auc"]
    assert "roc_auc" not in verified_values(api, forest_run["id"])

    svm_job = job_of(api, svm_run["id"])
    assert svm_job["state"] == "succeeded"
    assert set(svm_job["result"]["skipped"]) == {"roc_auc", "log_loss"}
    assert all("predict_proba" in r for r in svm_job["result"]["skipped"].values())
    values = verified_values(api, svm_run["id"])
    assert values["f1"] == skm.f1_score(
        partial.y_test, svm.predict(partial.X_test), average="weighted", zero_division=0
    )


# -- when jobs are scheduled ------------------------------------------------------------


def test_registering_a_run_schedules_one_job_per_dataset_its_models_policies_name(
    api: Api, wine: Split
) -> None:
    setup_model(api)
    put_environment(api, "PROD")
    upload_dataset(api, "wine-holdout", wine.csv())
    upload_dataset(api, "other", wine.csv("label"), target="label")
    put_policy(api, "INT", "AImodel", dataset="wine-holdout")
    put_policy(api, "PROD", "AImodel", dataset="other")
    api.post("/datasets", {"name": "digest-only", "sha256": "a" * 64})

    run = register(api, b"not even a model")
    pending = run["pending_jobs"]
    assert sorted(j["dataset"] for j in pending) == ["other@1", "wine-holdout@1"]
    assert {j["state"] for j in pending} == {"pending"}
    assert api.get(f"/runs/{run['id']}").get_json()["pending_jobs"] == pending


def test_a_policy_that_starts_naming_a_revision_schedules_every_unscored_run_once(
    api: Api, wine: Split, worker: Worker
) -> None:
    setup_model(api)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(wine.X_train, wine.y_train)
    runs = [register(api, dumped(forest) + bytes([i])) for i in range(3)]
    assert all(r["pending_jobs"] == [] for r in runs)  # no policy names a dataset yet
    upload_dataset(api, "wine-holdout", wine.csv())

    plan = api.post(
        "/environments/INT/policies/AImodel/plan",
        {"versions": "", "stages": ["Staging"], "metric": "f1", "dataset": "wine-holdout"},
    )
    assert plan.get_json()["evaluations_scheduled"] == 3
    assert api.get("/jobs").get_json()["items"] == []  # a plan stores nothing

    created = put_policy(api, "INT", "AImodel", dataset="wine-holdout")
    assert created.get_json()["evaluations_scheduled"] == 3
    again = put_policy(api, "INT", "AImodel", dataset="wine-holdout", min_improvement=0.01)
    assert again.get_json()["evaluations_scheduled"] == 0
    assert {j["trigger"] for j in api.get("/jobs").get_json()["items"]} == {"policy"}
    worker.run(until_idle=True)

    # Back and forth between revisions never scores a run twice on one revision.
    upload_dataset(api, "wine-holdout", wine.csv() + b"\n")
    # Nothing is scored on @2 yet: the switch is taken and the champion holds for the jobs.
    served = api.get("/environments/INT/models/AImodel").get_json()
    switched = put_policy(api, "INT", "AImodel", dataset="wine-holdout@2")
    assert switched.status_code == 200, switched.get_json()
    assert switched.get_json()["evaluations_scheduled"] == 3
    held = api.get("/environments/INT/models/AImodel").get_json()
    assert (held["run_id"], held["metric"]["dataset"]) == (served["run_id"], "wine-holdout@1")
    assert (held["held"], held["pending_evaluations"]) == (True, 3)
    back = put_policy(api, "INT", "AImodel", dataset="wine-holdout@1")
    assert back.get_json()["evaluations_scheduled"] == 0


def test_evaluation_on_request_answers_202_then_200_with_the_job_that_did_it(
    api: Api, wine: Split, worker: Worker
) -> None:
    setup_model(api)
    upload_dataset(api, "wine-holdout", wine.csv())
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(wine.X_train, wine.y_train)
    run = register(api, dumped(forest))

    first = api.post(f"/runs/{run['id']}/evaluate", {"dataset": "wine-holdout"})
    assert first.status_code == 202, first.get_json()
    job = first.get_json()
    assert first.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert (job["state"], job["trigger"], job["dataset"]) == (
        "pending",
        "request",
        "wine-holdout@1",
    )
    repeat = api.post(f"/runs/{run['id']}/evaluate", {"dataset": "wine-holdout@1"})
    assert repeat.status_code == 202 and repeat.get_json()["id"] == job["id"]

    worker.run(until_idle=True)
    done = api.get(f"/jobs/{job['id']}").get_json()
    assert done["state"] == "succeeded" and done["attempts"] == 1
    assert done["worker"] == "test-worker" and done["finished_at"] is not None
    after = api.post(f"/runs/{run['id']}/evaluate", {"dataset": "wine-holdout"})
    assert after.status_code == 200 and after.get_json()["id"] == job["id"]


def test_evaluation_requests_that_cannot_be_served_are_clear_errors(api: Api) -> None:
    setup_model(api)
    run = register(api, b"bytes")
    api.post("/datasets", {"name": "digest-only", "sha256": "b" * 64})
    error = assert_error(
        api.post(f"/runs/{run['id']}/evaluate", {"dataset": "digest-only"}),
        422,
        "validation_error",
        "dataset",
    )
    assert "digest only" in error["message"]
    assert_error(
        api.post(f"/runs/{run['id']}/evaluate", {"dataset": "nope"}),
        422,
        "validation_error",
        "dataset",
    )
    assert_error(api.post("/runs/999/evaluate", {"dataset": "digest-only"}), 404, "not_found")
    assert_error(api.post(f"/runs/{run['id']}/evaluate", {}), 422, "validation_error", "dataset")
    assert_error(api.get("/jobs/12345"), 404, "not_found")
    assert_error(api.get("/jobs?state=exploded"), 422, "validation_error")
    assert api.get("/jobs").get_json()["items"] == []


# -- champions and policies --------------------------------------------------------------


def test_verified_values_move_the_champion_with_history_in_the_same_transaction(
    api: Api, wine: Split, worker: Worker
) -> None:
    setup_model(api)
    upload_dataset(api, "wine-holdout", wine.csv())
    put_policy(api, "INT", "AImodel", dataset="wine-holdout", require_verified=True)
    weak = RandomForestClassifier(n_estimators=1, max_features=0.1, random_state=0)
    weak.fit(wine.X_train, wine.y_train)
    weak_f1 = skm.f1_score(wine.y_test, weak.predict(wine.X_test), average="weighted")
    # The client claims a perfect score; only the verified value counts.
    run = register(
        api, dumped(weak), evaluations=[{"dataset": "wine-holdout", "metrics": {"f1": 1.0}}]
    )
    assert champion(api, "INT", "AImodel") is None
    explain = api.get("/environments/INT/models/AImodel/explain").get_json()
    assert explain["candidates"][0]["reasons"] == ["unverified"]

    worker.run(until_idle=True)
    served = champion(api, "INT", "AImodel")
    assert served is not None and served["run_id"] == run["id"]
    assert served["metric"]["value"] == weak_f1
    change = history(api, "INT", "AImodel")[0]
    assert (change["to_run_id"], change["trigger"]) == (run["id"], "verified_evaluation")
    candidate = api.get("/environments/INT/models/AImodel/explain").get_json()["candidates"][0]
    assert candidate["eligible"] and candidate["reasons"] == []
    assert candidate["warnings"] == ["reported_mismatch"]
    assert (candidate["reported"], candidate["verified"]) == (1.0, weak_f1)


def test_a_reported_value_within_a_millionth_of_the_verified_one_is_no_mismatch(
    api: Api, wine: Split, worker: Worker
) -> None:
    setup_model(api)
    upload_dataset(api, "wine-holdout", wine.csv())
    put_policy(api, "INT", "AImodel", dataset="wine-holdout")
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(wine.X_train, wine.y_train)
    honest = skm.f1_score(wine.y_test, forest.predict(wine.X_test), average="weighted")
    register(
        api,
        dumped(forest),
        evaluations=[{"dataset": "wine-holdout", "metrics": {"f1": honest + 5e-7}}],
    )
    worker.run(until_idle=True)
    candidate = api.get("/environments/INT/models/AImodel/explain").get_json()["candidates"][0]
    assert candidate["warnings"] == []
    assert candidate["value"] == honest  # the verified value wins over the reported one


# -- hostile and broken artifacts ----------------------------------------------------------


@pytest.mark.parametrize("level", ["strict", "process"])
def test_hostile_artifacts_fail_their_jobs_and_a_good_run_after_them_is_evaluated(
    api: Api, wine: Split, level: str, request: pytest.FixtureRequest
) -> None:
    worker: Worker = request.getfixturevalue("worker" if level == "strict" else "process_worker")
    setup_model(api)
    upload_dataset(api, "wine-holdout", wine.csv())
    put_policy(api, "INT", "AImodel", dataset="wine-holdout")
    hostile = {
        "hang": (_Hang(), "wall-time limit"),
        "exit": (_Exit(), "exited with status 7"),
        "hog": (_Hog(), "memory limit"),
    }
    runs = {
        name: register(api, pickle.dumps(obj), filename=f"{name}.pkl")
        for name, (obj, _) in hostile.items()
    }
    good_model = RandomForestClassifier(n_estimators=10, random_state=0)
    good_model.fit(wine.X_train, wine.y_train)
    good = register(api, dumped(good_model))

    assert worker.run(until_idle=True) == 4
    for name, (_, cause) in hostile.items():
        job = job_of(api, runs[name]["id"])
        assert job["state"] == "failed", job
        assert cause in job["error"], job
        assert verified_values(api, runs[name]["id"]) == {}
    assert job_of(api, good["id"])["state"] == "succeeded"
    served = champion(api, "INT", "AImodel")
    assert served is not None and served["run_id"] == good["id"]


@pytest.mark.parametrize("level", ["strict", "process"])
def test_a_job_on_a_file_that_is_no_model_fails_saying_it_is_not_one_of_that_format(
    api: Api, wine: Split, level: str, request: pytest.FixtureRequest
) -> None:
    worker: Worker = request.getfixturevalue("worker" if level == "strict" else "process_worker")
    setup_model(api)
    upload_dataset(api, "wine-holdout", wine.csv())
    put_policy(api, "INT", "AImodel", dataset="wine-holdout")
    noise = random.Random(0).randbytes(4096)
    text = b"n_estimators=100, trained on 2026-12-01; the model itself is elsewhere\n"
    expected = {
        "noise.joblib": (noise, "this file is not a joblib/pickle model (KeyError: "),
        "notes.pkl": (text, "this file is not a joblib/pickle model ("),
        "noise.skops": (noise[::-1], "this file is not a skops file (BadZipFile: "),
        "notes.skops": (text + b"!", "this file is not a skops file (BadZipFile: "),
    }
    runs = {name: register(api, content, filename=name) for name, (content, _) in expected.items()}

    assert worker.run(until_idle=True) == 4
    explained = api.get("/environments/INT/models/AImodel/explain").get_json()
    evaluation_of = {c["run_id"]: c["evaluation"] for c in explained["candidates"]}
    for name, (_, says) in expected.items():
        job = job_of(api, runs[name]["id"])
        assert job["state"] == "failed", job
        assert job["error"].startswith(says) and job["error"].endswith(")"), (name, job)
        assert "Traceback" not in job["error"]
        assert evaluation_of[runs[name]["id"]]["error"] == job["error"]
    assert champion(api, "INT", "AImodel") is None


def test_an_artifact_changed_in_the_store_is_never_loaded(
    app: Flask, api: Api, wine: Split, worker: Worker
) -> None:
    setup_model(api)
    upload_dataset(api, "wine-holdout", wine.csv())
    put_policy(api, "INT", "AImodel", dataset="wine-holdout")
    run = register(api, pickle.dumps(_Exit()), filename="evil.pkl")
    # Someone with access to the disk swaps the bytes behind the digest.
    store = app.extensions["modelreg"].store
    store.path_for(run["artifact"]["sha256"]).write_bytes(pickle.dumps(_Hang()))

    worker.run(until_idle=True)
    job = job_of(api, run["id"])
    assert job["state"] == "failed"
    assert "does not match its sha256" in job["error"]


def test_skops_artifacts_load_only_when_every_type_is_trusted(
    api: Api, wine: Split, worker: Worker, tmp_path: Any
) -> None:
    import skops.io as sio

    setup_model(api)
    upload_dataset(api, "wine-holdout", wine.csv())
    put_policy(api, "INT", "AImodel", dataset="wine-holdout")
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(wine.X_train, wine.y_train)
    trusted = register(api, sio.dumps(forest), filename="forest.skops")
    untrusted = register(api, sio.dumps({"f": _Hang}), filename="evil.skops")
    worker.run(until_idle=True)

    assert job_of(api, trusted["id"])["state"] == "succeeded"
    assert_close(verified_values(api, trusted["id"]), classification_expectations(forest, wine))
    job = job_of(api, untrusted["id"])
    assert job["state"] == "failed" and "not trusted" in job["error"]


# -- jobs survive workers -----------------------------------------------------------------


def test_a_job_whose_worker_died_is_taken_over_and_the_dead_worker_cannot_finish_it(
    app: Flask, api: Api, wine: Split, worker: Worker
) -> None:
    setup_model(api)
    upload_dataset(api, "wine-holdout", wine.csv())
    put_policy(api, "INT", "AImodel", dataset="wine-holdout")
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(wine.X_train, wine.y_train)
    run = register(api, dumped(forest))
    db = app.extensions["modelreg"].db

    dead = jobs.claim(db, "dead-worker", lease_seconds=1)
    assert dead is not None
    assert jobs.claim(db, "other", lease_seconds=1) is None  # held: nobody else takes it
    time.sleep(1.2)  # the dead worker never renews
    assert worker.run_once() is not None
    assert not jobs.renew(db, dead, 30)  # the old claim lost the job

    job = job_of(api, run["id"])
    assert (job["state"], job["attempts"], job["worker"]) == ("succeeded", 2, "test-worker")
    assert len(verified_values(api, run["id"])) == 7


def test_a_job_abandoned_by_every_attempt_fails_instead_of_looping(
    app: Flask, api: Api, wine: Split
) -> None:
    setup_model(api)
    upload_dataset(api, "wine-holdout", wine.csv())
    put_policy(api, "INT", "AImodel", dataset="wine-holdout")
    run = register(api, b"whatever")
    db = app.extensions["modelreg"].db
    attempts = app.extensions["modelreg"].settings.job_max_attempts
    assert attempts == 2  # the default: a job that kills its worker twice is failed
    for attempt in range(attempts):
        assert jobs.claim(db, f"doomed-{attempt}", lease_seconds=0) is not None
        time.sleep(0.01)
    assert jobs.claim(db, "late", lease_seconds=30) is None
    job = job_of(api, run["id"])
    assert job["state"] == "failed" and "abandoned after 2 attempt(s)" in job["error"]


def test_removing_a_run_cancels_its_pending_jobs(api: Api, wine: Split, worker: Worker) -> None:
    setup_model(api)
    upload_dataset(api, "wine-holdout", wine.csv())
    put_policy(api, "INT", "AImodel", dataset="wine-holdout")
    run = register(api, b"whatever")
    assert api.delete(f"/runs/{run['id']}", {"reason": "mistake"}).status_code == 200
    job = job_of(api, run["id"])
    assert job["state"] == "cancelled" and job["error"] == "run removed"
    assert worker.run(until_idle=True) == 0
    assert api.get("/jobs?state=cancelled").get_json()["items"][0]["id"] == job["id"]


def test_jobs_are_listed_newest_first_and_filtered_by_state_and_run(
    app: Flask, api: Api, wine: Split
) -> None:
    setup_model(api)
    upload_dataset(api, "wine-holdout", wine.csv())
    put_policy(api, "INT", "AImodel", dataset="wine-holdout")
    runs = [register(api, f"model {i}".encode()) for i in range(5)]
    with app.extensions["modelreg"].db.unit_of_work() as session:
        assert session.query(Job).count() == 5
    ids = [j["id"] for j in api.get("/jobs?page_size=2").get_json()["items"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 2
    assert [j["run_id"] for j in api.get(f"/jobs?run_id={runs[2]['id']}").get_json()["items"]] == [
        runs[2]["id"]
    ]
    assert len(api.get("/jobs?state=pending").get_json()["items"]) == 5
    assert api.get("/jobs?state=succeeded").get_json()["items"] == []


def test_content_arriving_for_a_revision_a_policy_names_schedules_its_runs(
    api: Api, wine: Split, worker: Worker
) -> None:
    setup_model(api)
    csv = wine.csv()
    digest = api.post("/datasets", {"name": "wine-holdout", "sha256": sha(csv)})
    assert digest.status_code == 201
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(wine.X_train, wine.y_train)
    run = register(
        api, dumped(forest), evaluations=[{"dataset": "wine-holdout", "metrics": {"f1": 0.5}}]
    )
    put_policy(api, "INT", "AImodel", dataset="wine-holdout")
    assert api.get("/jobs").get_json()["items"] == []  # nothing to evaluate on yet

    attached = upload_dataset(api, "wine-holdout", csv)
    assert attached["revision"] == 1 and attached["has_content"]
    job = job_of(api, run["id"])
    assert (job["trigger"], job["dataset"]) == ("dataset_content", "wine-holdout@1")
    worker.run(until_idle=True)
    served = champion(api, "INT", "AImodel")
    expected = skm.f1_score(wine.y_test, forest.predict(wine.X_test), average="weighted")
    assert served is not None and served["metric"]["value"] == expected
