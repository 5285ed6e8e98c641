# ruff: noqa: F811  (the fixtures wine and worker come from test_evaluation_jobs)
"""Rotating the test set: ``POST /models/{model}/evaluate`` on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from modelreg.evaluation.worker import Worker
from tests.integration.conftest import (
    Api,
    assert_error,
    bearer,
    create_run,
    create_version,
    register_dataset,
)
from tests.integration.test_evaluation_jobs import (  # noqa: F401 (fixtures)
    Split,
    setup_model,
    upload_dataset,
    wine,
    worker,
)


def score(api: Api, body: dict[str, Any], model: str = "AImodel", **kw: Any) -> dict[str, Any]:
    response = api.post(f"/models/{model}/evaluate", body, **kw)
    assert response.status_code == 202, response.get_json()
    result: dict[str, Any] = response.get_json()
    return result


def three_runs(api: Api) -> list[int]:
    setup_model(api)
    create_version(api, "AImodel", "2.0rc1", "Staging")
    register_dataset(api, "holdout")
    return [create_run(api, "AImodel", version)["id"] for version in ("1.0", "1.0", "2.0rc1")]


def test_scoring_a_model_on_a_new_revision_queues_a_job_per_run_once(api: Api, wine: Split) -> None:
    runs = three_runs(api)
    upload_dataset(api, "wine-holdout", wine.csv())

    first = score(api, {"dataset": "wine-holdout", "versions": "<2"})
    assert (first["jobs"], first["already_scored"], first["dataset"]) == (2, 0, "wine-holdout@1")
    assert first["versions"] == "<2" and first["pending_job_ids"] == []
    queued = {j["id"]: j for j in api.get("/jobs?state=pending").get_json()["items"]}
    assert sorted(queued) == sorted(first["job_ids"])
    assert {queued[i]["run_id"] for i in first["job_ids"]} == set(runs[:2])
    assert {j["trigger"] for j in queued.values()} == {"request"}

    rest = score(api, {"dataset": "wine-holdout@1"})
    assert (rest["jobs"], rest["already_scored"]) == (1, 2)
    assert rest["pending_job_ids"] == sorted(first["job_ids"])
    again = score(api, {"dataset": "wine-holdout"})
    assert (again["jobs"], again["already_scored"], again["job_ids"]) == (0, 3, [])
    assert len(api.get("/jobs").get_json()["items"]) == 3

    audited = api.get("/audit?action=evaluation.request").get_json()["items"]
    assert audited[0]["target"] == "models/AImodel/evaluations/wine-holdout@1"
    assert audited[0]["after"]["jobs"] == 0 and audited[-1]["after"]["jobs"] == 2


def test_a_run_whose_evaluation_failed_is_queued_again_and_scored_ones_are_not(
    api: Api, wine: Split, worker: Worker
) -> None:
    runs = three_runs(api)  # bytes, not models: every job fails
    upload_dataset(api, "wine-holdout", wine.csv())
    score(api, {"dataset": "wine-holdout"})
    worker.run(until_idle=True)
    assert {j["state"] for j in api.get("/jobs").get_json()["items"]} == {"failed"}

    retry = score(api, {"dataset": "wine-holdout"})
    assert (retry["jobs"], retry["already_scored"]) == (len(runs), 0)


def test_scoring_requests_that_cannot_be_served_are_clear_errors(api: Api, wine: Split) -> None:
    three_runs(api)
    upload_dataset(api, "wine-holdout", wine.csv())
    assert_error(api.post("/models/nope/evaluate", {"dataset": "wine-holdout"}), 404, "not_found")
    assert_error(api.post("/models/AImodel/evaluate", {"dataset": "nope"}), 404, "not_found")
    assert_error(
        api.post("/models/AImodel/evaluate", {"dataset": "wine-holdout@7"}), 404, "not_found"
    )
    digest_only = assert_error(
        api.post("/models/AImodel/evaluate", {"dataset": "holdout"}),
        422,
        "validation_error",
        "dataset",
    )
    assert "digest only" in digest_only["message"]
    assert_error(
        api.post("/models/AImodel/evaluate", {"dataset": "wine-holdout", "versions": "<=x"}),
        422,
        "validation_error",
        "versions",
    )
    assert_error(api.post("/models/AImodel/evaluate", {}), 422, "validation_error", "dataset")
    assert api.get("/jobs").get_json()["items"] == []


@pytest.mark.parametrize("role", ["reader", "ci"])
def test_only_release_engineers_and_admins_may_score_a_whole_model(
    api: Api, wine: Split, role: str
) -> None:
    three_runs(api)
    upload_dataset(api, "wine-holdout", wine.csv())
    refused = api.post(
        "/models/AImodel/evaluate", {"dataset": "wine-holdout"}, headers=bearer(api, role, role)
    )
    assert_error(refused, 403, "forbidden")
    assert api.get("/jobs").get_json()["items"] == []
    allowed = score(api, {"dataset": "wine-holdout"}, headers=bearer(api, "rel", "release"))
    assert allowed["jobs"] == 3
