# ruff: noqa: F811  (the fixtures wine and worker come from test_evaluation_jobs)
"""What counts for selection, on SQLite and PostgreSQL: failed evaluations, verified
values by default on test sets with content, and the artifact formats a policy allows.

Evaluations run in a real :class:`Worker` with the real sandbox, as in
``test_evaluation_jobs.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sklearn.ensemble import RandomForestClassifier

from modelreg.evaluation.worker import Worker
from tests.integration.conftest import (
    Api,
    assert_error,
    champion,
    create_model,
    create_run,
    create_version,
    history,
    put_environment,
    put_policy,
    register_dataset,
)
from tests.integration.test_evaluation_jobs import (  # noqa: F401 (fixtures)
    Split,
    dumped,
    register,
    setup_model,
    upload_dataset,
    wine,
    worker,
)

NOT_A_MODEL = b"this file is no model at all"


def explain(api: Api, env: str = "INT", model: str = "AImodel") -> dict[str, Any]:
    response = api.get(f"/environments/{env}/models/{model}/explain")
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def candidate(api: Api, run_id: int) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in explain(api)["candidates"] if c["run_id"] == run_id)
    return found


def forest(split: Split) -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=5, random_state=0).fit(split.X_train, split.y_train)


# -- failed evaluations ------------------------------------------------------------------


def test_a_file_that_is_no_model_never_wins_on_its_reported_score_under_a_default_policy(
    api: Api, wine: Split, worker: Worker
) -> None:
    setup_model(api)
    upload_dataset(api, "wine-holdout", wine.csv())
    created = put_policy(api, "INT", "AImodel", dataset="wine-holdout")
    assert created.status_code == 201 and created.get_json()["require_verified"] is True
    claims = [{"dataset": "wine-holdout", "metrics": {"f1": 1.0}}]
    bogus = register(api, NOT_A_MODEL, evaluations=claims)
    good = register(api, dumped(forest(wine)))

    worker.run(until_idle=True)

    served = champion(api, "INT", "AImodel")
    assert served is not None and served["run_id"] == good["id"]
    seen = candidate(api, bogus["id"])
    assert seen["eligible"] is False and seen["reasons"] == ["evaluation_failed"]
    assert (seen["reported"], seen["verified"], seen["value"]) == (1.0, None, None)
    job = api.get(f"/jobs?run_id={bogus['id']}").get_json()["items"][0]
    assert seen["evaluation"]["job_id"] == job["id"]
    assert seen["evaluation"]["state"] == "failed"
    error = seen["evaluation"]["error"]
    assert error and "\n" not in error and error in job["error"]
    assert candidate(api, good["id"])["evaluation"]["state"] == "succeeded"


def test_with_require_verified_false_a_reported_value_waits_for_its_evaluation_and_never_serves(
    api: Api, wine: Split, worker: Worker
) -> None:
    setup_model(api)
    upload_dataset(api, "wine-holdout", wine.csv())
    put_policy(api, "INT", "AImodel", dataset="wine-holdout", require_verified=False)
    claims = [{"dataset": "wine-holdout", "metrics": {"f1": 1.0}}]
    bogus = register(api, NOT_A_MODEL, evaluations=claims)
    # Its claim would make it champion, but its own evaluation is still to come.
    assert champion(api, "INT", "AImodel") is None
    explained = api.get("/environments/INT/models/AImodel/explain").get_json()
    assert (explained["held"], explained["pending_evaluations"]) == (True, 1)
    assert explained["decision"]["champion"] == bogus["id"]
    pending = candidate(api, bogus["id"])["evaluation"]
    assert pending is not None and pending["state"] == "pending" and pending["error"] is None

    worker.run(until_idle=True)

    assert champion(api, "INT", "AImodel") is None
    assert candidate(api, bogus["id"])["reasons"] == ["evaluation_failed"]
    assert history(api, "INT", "AImodel") == []  # it never served


def test_without_settling_a_reported_value_serves_until_the_evaluation_fails(
    app: Flask, api: Api, wine: Split, worker: Worker
) -> None:
    app.extensions["modelreg"].db.settle_seconds = 0
    setup_model(api)
    upload_dataset(api, "wine-holdout", wine.csv())
    put_policy(api, "INT", "AImodel", dataset="wine-holdout", require_verified=False)
    claims = [{"dataset": "wine-holdout", "metrics": {"f1": 1.0}}]
    bogus = register(api, NOT_A_MODEL, evaluations=claims)
    served = champion(api, "INT", "AImodel")
    assert served is not None and served["run_id"] == bogus["id"]
    assert served["held"] is False and served["pending_evaluations"] == 1
    assert "settle limit" not in history(api, "INT", "AImodel")[0]["detail"]

    worker.run(until_idle=True)

    assert champion(api, "INT", "AImodel") is None
    assert candidate(api, bogus["id"])["reasons"] == ["evaluation_failed"]
    change = history(api, "INT", "AImodel")[0]
    assert (change["from_run_id"], change["to_run_id"]) == (bogus["id"], None)
    assert change["trigger"] == "evaluation_failed"


def test_require_verified_defaults_to_whether_the_revision_has_content_and_false_is_kept(
    api: Api, wine: Split
) -> None:
    setup_model(api)
    put_environment(api, "PROD")
    upload_dataset(api, "wine-holdout", wine.csv())
    register_dataset(api, "holdout")

    on_content = put_policy(api, "INT", "AImodel", dataset="wine-holdout")
    digest_only = put_policy(api, "PROD", "AImodel", dataset="holdout")
    assert on_content.get_json()["require_verified"] is True
    assert digest_only.get_json()["require_verified"] is False
    explicit = put_policy(api, "INT", "AImodel", dataset="wine-holdout", require_verified=False)
    assert explicit.status_code == 200 and explicit.get_json()["require_verified"] is False
    plan = api.post(
        "/environments/PROD/policies/AImodel/plan",
        {"stages": ["Staging"], "metric": "f1", "dataset": "wine-holdout"},
    )
    assert plan.status_code == 200, plan.get_json()


def test_reported_values_alone_still_serve_on_a_revision_registered_by_digest_only(
    api: Api,
) -> None:
    setup_model(api)
    register_dataset(api, "holdout")
    put_policy(api, "INT", "AImodel")
    run = create_run(api, "AImodel", "1.0", {"f1": 0.8})

    served = champion(api, "INT", "AImodel")
    assert served is not None and served["run_id"] == run["id"]
    seen = candidate(api, run["id"])
    assert seen["evaluation"] is None and (seen["reported"], seen["verified"]) == (0.8, None)


# -- artifact formats --------------------------------------------------------------------


def formats_setup(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
    setup_model(api)
    register_dataset(api, "holdout")
    metrics = {"evaluations": [{"dataset": "holdout", "metrics": {"f1": 0.9}}]}
    pickled = register(api, b"pickled", filename="model.joblib", **metrics)
    metrics = {"evaluations": [{"dataset": "holdout", "metrics": {"f1": 0.7}}]}
    safe = register(api, b"skops", filename="model.skops", **metrics)
    return pickled, safe


def test_a_policy_allowing_only_skops_excludes_joblib_runs_and_says_so_to_serving_layers(
    api: Api,
) -> None:
    pickled, safe = formats_setup(api)
    served_any = put_policy(api, "INT", "AImodel")
    assert served_any.get_json()["formats"] == []
    doc = champion(api, "INT", "AImodel")
    assert doc is not None and doc["run_id"] == pickled["id"]
    assert doc["artifact"]["format"] == "joblib" and doc["allowed_formats"] == []

    changed = put_policy(api, "INT", "AImodel", formats=["skops", "ONNX"])
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["formats"] == ["onnx", "skops"]

    doc = champion(api, "INT", "AImodel")
    assert doc is not None and doc["run_id"] == safe["id"]
    assert doc["artifact"]["format"] == "skops"
    assert doc["allowed_formats"] == ["onnx", "skops"]
    seen = candidate(api, pickled["id"])
    assert seen["reasons"] == ["format_not_allowed"] and seen["format"] == "joblib"
    assert explain(api)["formats"] == ["onnx", "skops"]


def test_a_pin_cannot_serve_a_format_the_policy_forbids(api: Api) -> None:
    pickled, safe = formats_setup(api)
    put_policy(api, "INT", "AImodel", formats=["skops"])
    pinned = api.put(
        "/environments/INT/models/AImodel/pin", {"run_id": pickled["id"], "reason": "rollback"}
    )
    assert pinned.status_code == 200, pinned.get_json()
    doc = champion(api, "INT", "AImodel")
    assert doc is not None and doc["run_id"] == safe["id"]


def test_the_servers_allowed_formats_are_the_default_and_the_limit_of_every_policy(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(allowed_formats="skops, onnx")
    formats_setup(api)

    created = put_policy(api, "INT", "AImodel")
    assert created.status_code == 201 and created.get_json()["formats"] == ["onnx", "skops"]
    doc = champion(api, "INT", "AImodel")
    assert doc is not None and doc["artifact"]["format"] == "skops"
    assert_error(
        put_policy(api, "INT", "AImodel", formats=["skops", "joblib"]),
        422,
        "validation_error",
        "formats",
    )
    narrower = put_policy(api, "INT", "AImodel", formats=["skops"])
    assert narrower.status_code == 200 and narrower.get_json()["formats"] == ["skops"]


@pytest.mark.parametrize("formats", ["skops", ["sk ops"], [""]])
def test_formats_that_are_no_list_of_format_names_are_a_422(api: Api, formats: Any) -> None:
    create_model(api, "AImodel")
    create_version(api, "AImodel", "1.0", "Staging")
    put_environment(api, "INT")
    register_dataset(api, "holdout")
    assert_error(
        put_policy(api, "INT", "AImodel", formats=formats), 422, "validation_error", "formats"
    )
