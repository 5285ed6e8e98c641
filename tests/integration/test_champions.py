"""Champion selection through the API: tolerance, ranking, hysteresis, pins, and reading it."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from tests.integration.conftest import (
    Api,
    assert_error,
    bearer,
    champion,
    collect_pages,
    create_model,
    create_run,
    create_version,
    evaluate,
    history,
    move_to,
    put_environment,
    put_policy,
    register_dataset,
)

CHAMPION_FIELDS = {
    "environment",
    "model",
    "version",
    "stage",
    "run_id",
    "run_number",
    "metric",
    "artifact",
    "selected_at",
    "reason",
    "policy_revision",
}


@pytest.fixture
def base(api: Api) -> Api:
    create_model(api, "AImodel")
    register_dataset(api, "holdout", b"v1")
    put_environment(api, "PROD")
    put_environment(api, "INT")
    return api


def _served(api: Api, env: str, model: str = "AImodel") -> dict[str, Any]:
    doc = champion(api, env, model)
    assert doc is not None, f"{env} serves nothing"
    return doc


def _pin(api: Api, run_id: int, env: str = "PROD", **kw: Any) -> Any:
    return api.put(
        f"/environments/{env}/models/AImodel/pin", {"run_id": run_id, "reason": "rollback"}, **kw
    )


def _explain(api: Api, env: str) -> dict[str, Any]:
    response = api.get(f"/environments/{env}/models/AImodel/explain")
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


@pytest.fixture
def tolerant(base: Api) -> dict[str, int]:
    """PROD takes <=1.0 in Production, INT <=2.0 in Staging or Production; 2.0 is better."""
    create_version(base, "AImodel", "1.0", stage="Production")
    create_version(base, "AImodel", "2.0", stage="Staging")
    runs = {
        "1.0#1": create_run(base, "AImodel", "1.0", {"f1": 0.80})["id"],
        "1.0#2": create_run(base, "AImodel", "1.0", {"f1": 0.82})["id"],
        "2.0#1": create_run(base, "AImodel", "2.0", {"f1": 0.95})["id"],
    }
    assert (
        put_policy(base, "PROD", "AImodel", versions="<=1.0", stages=["Production"]).status_code
        == 201
    )
    assert (
        put_policy(
            base, "INT", "AImodel", versions="<=2.0", stages=["Staging", "Production"]
        ).status_code
        == 201
    )
    return runs


# -- selection ---------------------------------------------------------------------------


def test_prod_serves_the_best_run_inside_its_tolerance(base: Api, tolerant: dict[str, int]) -> None:
    served = _served(base, "PROD")
    assert served["run_id"] == tolerant["1.0#2"]
    assert served["version"] == "1.0"
    assert served["run_number"] == 2
    assert served["reason"] == "best"


def test_prod_never_sees_a_version_above_its_tolerance(base: Api, tolerant: dict[str, int]) -> None:
    # Even in Production and far better, 2.0 stays out of PROD's <=1.0.
    for step in ("Production",):
        assert move_to(base, "AImodel", "2.0", step).status_code == 200
    better = create_run(base, "AImodel", "2.0", {"f1": 0.99})["id"]
    served = _served(base, "PROD")
    assert served["version"] == "1.0"
    assert served["run_id"] == tolerant["1.0#2"]
    reasons = {c["run_id"]: c["reasons"] for c in _explain(base, "PROD")["candidates"]}
    assert reasons[better] == ["version_out_of_range"]
    assert reasons[tolerant["2.0#1"]] == ["version_out_of_range"]


def test_int_serves_the_best_run_of_any_version_in_its_tolerance(
    base: Api, tolerant: dict[str, int]
) -> None:
    served = _served(base, "INT")
    assert served["run_id"] == tolerant["2.0#1"]
    assert served["version"] == "2.0"
    assert served["stage"] == "Staging"


def test_the_champion_document_has_the_design_shape(base: Api, tolerant: dict[str, int]) -> None:
    served = _served(base, "INT")
    assert set(served) >= CHAMPION_FIELDS
    assert served["environment"] == "INT"
    assert served["model"] == "AImodel"
    assert served["metric"] == {"name": "f1", "value": 0.95, "dataset": "holdout@1"}
    run = base.get(f"/runs/{served['run_id']}").get_json()
    assert served["artifact"]["sha256"] == run["artifact"]["sha256"]
    assert served["artifact"]["size"] == run["artifact"]["size"]
    assert served["artifact"]["url"] == f"/api/v1/runs/{served['run_id']}/artifact"
    download = base.client.get(served["artifact"]["url"])
    assert download.status_code == 200
    assert download.headers["ETag"].strip('"') == served["artifact"]["sha256"]
    assert served["policy_revision"] == 1
    assert served["selected_at"].endswith(("Z", "+00:00"))
    assert _served(base, "int", "aimodel") == served


def test_a_tie_on_the_metric_goes_to_the_higher_version_then_run_number(base: Api) -> None:
    for v in ("1.0", "1.10", "1.9"):
        create_version(base, "AImodel", v, stage="Staging")
    ids = {v: create_run(base, "AImodel", v, {"f1": 0.9})["id"] for v in ("1.9", "1.10", "1.0")}
    put_policy(base, "INT", "AImodel", stages=["Staging"])
    assert _served(base, "INT")["run_id"] == ids["1.10"]
    ranks = {c["run_id"]: c["rank"] for c in _explain(base, "INT")["candidates"]}
    assert ranks == {ids["1.10"]: 1, ids["1.9"]: 2, ids["1.0"]: 3}
    # Within one version, the higher run number wins the tie.
    retrain = create_run(base, "AImodel", "1.10", {"f1": 0.9})["id"]
    served = _served(base, "INT")
    assert (served["run_id"], served["run_number"]) == (retrain, 2)


def test_a_metric_to_minimize_serves_the_lowest_value(base: Api) -> None:
    create_version(base, "AImodel", "1.0", stage="Staging")
    low = create_run(base, "AImodel", "1.0", {"rmse": 1.5})["id"]
    create_run(base, "AImodel", "1.0", {"rmse": 2.5})
    put_policy(base, "INT", "AImodel", stages=["Staging"], metric="rmse")
    served = _served(base, "INT")
    assert served["run_id"] == low
    assert served["metric"]["name"] == "rmse"


def test_hysteresis_keeps_the_incumbent_when_the_challenger_is_not_better_enough(
    base: Api,
) -> None:
    create_version(base, "AImodel", "1.0", stage="Staging")
    incumbent = create_run(base, "AImodel", "1.0", {"f1": 0.80})["id"]
    put_policy(base, "INT", "AImodel", stages=["Staging"], min_improvement=0.05)
    assert _served(base, "INT")["run_id"] == incumbent

    challenger = create_run(base, "AImodel", "1.0", {"f1": 0.83})["id"]
    served = _served(base, "INT")
    assert served["run_id"] == incumbent
    assert served["reason"] == "incumbent_kept"
    explained = _explain(base, "INT")
    assert explained["reason"] == "incumbent_kept"
    assert explained["champion"] == incumbent
    ranks = {c["run_id"]: c["rank"] for c in explained["candidates"]}
    assert ranks[challenger] == 1  # ranked first, yet not served

    winner = create_run(base, "AImodel", "1.0", {"f1": 0.86})["id"]
    served = _served(base, "INT")
    assert served["run_id"] == winner
    assert served["reason"] == "best"


def test_min_value_excludes_runs_below_it(base: Api) -> None:
    create_version(base, "AImodel", "1.0", stage="Staging")
    low = create_run(base, "AImodel", "1.0", {"f1": 0.4})["id"]
    put_policy(base, "INT", "AImodel", stages=["Staging"], min_value=0.5)
    assert champion(base, "INT", "AImodel") is None
    reasons = {c["run_id"]: c["reasons"] for c in _explain(base, "INT")["candidates"]}
    assert reasons[low] == ["below_min_value"]
    ok = create_run(base, "AImodel", "1.0", {"f1": 0.5})["id"]
    assert _served(base, "INT")["run_id"] == ok


def test_pre_releases_are_served_only_when_the_policy_allows_them(base: Api) -> None:
    create_version(base, "AImodel", "1.0", stage="Staging")
    create_version(base, "AImodel", "2.0rc1", stage="Staging")
    stable = create_run(base, "AImodel", "1.0", {"f1": 0.7})["id"]
    rc = create_run(base, "AImodel", "2.0rc1", {"f1": 0.9})["id"]
    put_policy(base, "INT", "AImodel", versions="<=2.0", stages=["Staging"])
    assert _served(base, "INT")["run_id"] == stable
    reasons = {c["run_id"]: c["reasons"] for c in _explain(base, "INT")["candidates"]}
    assert reasons[rc] == ["prerelease_not_allowed"]

    put_policy(base, "INT", "AImodel", versions="<=2.0", stages=["Staging"], allow_prereleases=True)
    assert _served(base, "INT")["run_id"] == rc


def test_a_policy_on_another_dataset_revision_ignores_values_on_other_revisions(
    base: Api,
) -> None:
    create_version(base, "AImodel", "1.0", stage="Staging")
    old_rev = create_run(base, "AImodel", "1.0", {"f1": 0.99})["id"]
    register_dataset(base, "holdout", b"v2")
    new_rev = create_run(base, "AImodel", "1.0", {"f1": 0.6}, dataset="holdout@2")["id"]
    put_policy(base, "INT", "AImodel", stages=["Staging"], dataset="holdout")
    served = _served(base, "INT")
    assert served["run_id"] == new_rev
    assert served["metric"]["dataset"] == "holdout@2"
    reasons = {c["run_id"]: c["reasons"] for c in _explain(base, "INT")["candidates"]}
    assert reasons[old_rev] == ["not_evaluated"]


# -- explain -----------------------------------------------------------------------------


def test_explain_lists_every_run_with_its_reasons_and_ranks(base: Api) -> None:
    create_version(base, "AImodel", "0.9", stage="Production")
    create_version(base, "AImodel", "1.0", stage="Staging")
    create_version(base, "AImodel", "1.0rc1", stage="Production")
    create_version(base, "AImodel", "2.0", stage="Production")
    best = create_run(base, "AImodel", "0.9", {"f1": 0.9})["id"]
    second = create_run(base, "AImodel", "0.9", {"f1": 0.8})["id"]
    low = create_run(base, "AImodel", "0.9", {"f1": 0.2})["id"]
    unevaluated = create_run(base, "AImodel", "0.9")["id"]
    staging = create_run(base, "AImodel", "1.0", {"f1": 0.99})["id"]
    prerelease = create_run(base, "AImodel", "1.0rc1", {"f1": 0.99})["id"]
    too_new = create_run(base, "AImodel", "2.0", {"f1": 0.99})["id"]
    put_policy(base, "PROD", "AImodel", versions="<=1.0", stages=["Production"], min_value=0.5)

    explained = _explain(base, "PROD")
    assert explained["environment"] == "PROD"
    assert explained["model"] == "AImodel"
    assert explained["champion"] == best
    assert explained["reason"] == "best"
    assert explained["policy_revision"] == 1
    by_run = {c["run_id"]: c for c in explained["candidates"]}
    assert set(by_run) == {best, second, low, unevaluated, staging, prerelease, too_new}
    for c in explained["candidates"]:
        assert set(c) >= {
            "run_id",
            "version",
            "run_number",
            "stage",
            "value",
            "eligible",
            "rank",
            "reasons",
        }
    assert (by_run[best]["eligible"], by_run[best]["rank"], by_run[best]["reasons"]) == (
        True,
        1,
        [],
    )
    assert (by_run[second]["rank"], by_run[second]["value"]) == (2, 0.8)
    expected = {
        low: ["below_min_value"],
        unevaluated: ["not_evaluated"],
        staging: ["stage_not_allowed"],
        prerelease: ["prerelease_not_allowed"],
        too_new: ["version_out_of_range"],
    }
    for run_id, reasons in expected.items():
        assert by_run[run_id]["eligible"] is False
        assert by_run[run_id]["rank"] is None
        assert by_run[run_id]["reasons"] == reasons, run_id
    # Eligible runs first, in rank order.
    assert [c["run_id"] for c in explained["candidates"][:2]] == [best, second]


def test_explain_lists_every_failed_rule_of_a_run(base: Api) -> None:
    create_version(base, "AImodel", "3.0", stage="Staging")
    run = create_run(base, "AImodel", "3.0")["id"]
    put_policy(base, "PROD", "AImodel", versions="<=1.0", stages=["Production"])
    (candidate,) = _explain(base, "PROD")["candidates"]
    assert candidate["run_id"] == run
    assert candidate["reasons"] == ["version_out_of_range", "stage_not_allowed", "not_evaluated"]


# -- pins --------------------------------------------------------------------------------


def test_a_pin_wins_over_ranking_even_for_an_ineligible_run(
    base: Api, tolerant: dict[str, int]
) -> None:
    ineligible = tolerant["2.0#1"]  # out of PROD's tolerance and stage
    response = _pin(base, ineligible)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["run_id"] == ineligible
    assert response.get_json()["champion"]["run_id"] == ineligible
    served = _served(base, "PROD")
    assert served["run_id"] == ineligible
    assert served["reason"] == "pinned"
    explained = _explain(base, "PROD")
    assert explained["pinned_run_id"] == ineligible
    assert explained["reason"] == "pinned"
    reasons = {c["run_id"]: c["reasons"] for c in explained["candidates"]}
    assert reasons[ineligible] == ["version_out_of_range", "stage_not_allowed"]


def test_a_pin_to_an_older_run_is_a_rollback(base: Api, tolerant: dict[str, int]) -> None:
    assert _pin(base, tolerant["1.0#1"]).status_code == 200
    served = _served(base, "PROD")
    assert (served["run_id"], served["reason"]) == (tolerant["1.0#1"], "pinned")
    # A better run arriving later does not displace the pin.
    create_run(base, "AImodel", "1.0", {"f1": 0.99})
    assert _served(base, "PROD")["run_id"] == tolerant["1.0#1"]


def test_unpinning_returns_the_environment_to_ranking(base: Api, tolerant: dict[str, int]) -> None:
    _pin(base, tolerant["1.0#1"])
    response = base.delete("/environments/PROD/models/AImodel/pin", {"reason": "fixed"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["run_id"] is None
    served = _served(base, "PROD")
    assert served["run_id"] == tolerant["1.0#2"]
    assert served["reason"] == "best"
    assert _explain(base, "PROD")["pinned_run_id"] is None
    assert_error(
        base.delete("/environments/PROD/models/AImodel/pin", {"reason": "again"}), 404, "not_found"
    )


def test_a_pin_to_a_run_of_another_model_or_no_run_is_422_naming_run_id(
    base: Api, tolerant: dict[str, int]
) -> None:
    create_model(base, "other")
    create_version(base, "other", "1.0")
    foreign = create_run(base, "other", "1.0")["id"]
    assert_error(_pin(base, foreign), 422, "validation_error", "run_id")
    assert_error(_pin(base, 99999), 422, "validation_error", "run_id")
    response = base.put("/environments/PROD/models/AImodel/pin", {"reason": "x"})
    assert_error(response, 422, "validation_error", "run_id")
    response = base.put("/environments/PROD/models/AImodel/pin", {"run_id": "1"})
    assert_error(response, 422, "validation_error", "run_id")
    served = _served(base, "PROD")
    assert (served["run_id"], served["reason"]) == (tolerant["1.0#2"], "best")


def test_a_reader_sees_the_pin_its_run_reason_who_and_since_when(
    base: Api, tolerant: dict[str, int]
) -> None:
    pin_path = "/environments/PROD/models/AImodel/pin"
    releaser = bearer(base, "releaser", role="release")
    reader = bearer(base, "dashboard", role="reader")
    set_ = base.put(pin_path, {"run_id": tolerant["1.0#1"], "reason": "rollback"}, headers=releaser)
    assert set_.status_code == 200, set_.get_json()

    got = base.get(pin_path, headers=reader)
    assert got.status_code == 200, got.get_json()
    pin = got.get_json()
    assert (pin["environment"], pin["model"]) == ("PROD", "AImodel")
    assert (pin["run_id"], pin["reason"], pin["actor"]) == (
        tolerant["1.0#1"],
        "rollback",
        "releaser",
    )
    assert pin["pinned_at"] == set_.get_json()["pinned_at"] and pin["pinned_at"].endswith("Z")
    assert (pin["champion"]["run_id"], pin["champion"]["reason"]) == (tolerant["1.0#1"], "pinned")

    # Pinning another run is a new pin: new run, reason, actor and time.
    base.put(pin_path, {"run_id": tolerant["1.0#2"], "reason": "the fix"})
    again = base.get(pin_path, headers=reader).get_json()
    assert (again["run_id"], again["reason"], again["actor"]) == (
        tolerant["1.0#2"],
        "the fix",
        "admin-token",
    )
    assert again["pinned_at"] >= pin["pinned_at"]

    # INT has no pin, and once unpinned neither has PROD: a 404 saying so.
    error = assert_error(
        base.get("/environments/INT/models/AImodel/pin", headers=reader), 404, "not_found"
    )
    assert error["message"] == "INT has no pin for AImodel; its policy decides"
    base.delete(pin_path, {"reason": "fixed"})
    assert_error(base.get(pin_path, headers=reader), 404, "not_found")
    assert_error(base.get("/environments/PROD/models/nope/pin"), 404, "not_found")


def test_a_pin_moves_only_its_own_environment(base: Api, tolerant: dict[str, int]) -> None:
    _pin(base, tolerant["1.0#1"], env="PROD")
    assert _served(base, "INT")["run_id"] == tolerant["2.0#1"]


# -- 404s --------------------------------------------------------------------------------


def test_no_eligible_model_is_a_404_distinct_from_not_found(base: Api) -> None:
    create_version(base, "AImodel", "1.0")
    create_run(base, "AImodel", "1.0", {"f1": 0.9})
    put_policy(base, "PROD", "AImodel", stages=["Production"])
    error = assert_error(base.get("/environments/PROD/models/AImodel"), 404, "no_eligible_model")
    assert error["details"] == {"environment": "PROD", "model": "AImodel", "pending_evaluations": 0}

    assert_error(base.get("/environments/NOPE/models/AImodel"), 404, "not_found")
    assert_error(base.get("/environments/PROD/models/nope"), 404, "not_found")
    create_model(base, "nopolicy")
    assert_error(base.get("/environments/PROD/models/nopolicy"), 404, "not_found")


def test_everything_about_a_missing_policy_environment_or_model_is_404_not_found(
    base: Api,
) -> None:
    create_version(base, "AImodel", "1.0")
    run = create_run(base, "AImodel", "1.0")["id"]
    for path in ("", "/explain", "/history"):
        assert_error(base.get(f"/environments/PROD/models/AImodel{path}"), 404, "not_found")
        assert_error(base.get(f"/environments/NOPE/models/AImodel{path}"), 404, "not_found")
        assert_error(base.get(f"/environments/PROD/models/nope{path}"), 404, "not_found")
    assert_error(_pin(base, run), 404, "not_found")
    assert_error(base.get("/models/nope/champions"), 404, "not_found")
    assert_error(base.get("/environments/NOPE"), 404, "not_found")


# -- ETag --------------------------------------------------------------------------------


def test_a_serving_layer_polls_cheaply_with_if_none_match(
    base: Api, tolerant: dict[str, int]
) -> None:
    first = base.get("/environments/PROD/models/AImodel")
    etag = first.headers["ETag"]
    assert etag
    again = base.get("/environments/PROD/models/AImodel", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    assert base.get("/environments/PROD/models/AImodel").headers["ETag"] == etag


def test_the_etag_changes_when_the_champion_changes(base: Api, tolerant: dict[str, int]) -> None:
    etag = base.get("/environments/PROD/models/AImodel").headers["ETag"]
    better = create_run(base, "AImodel", "1.0", {"f1": 0.9})["id"]
    response = base.get("/environments/PROD/models/AImodel", headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert response.get_json()["run_id"] == better
    assert response.headers["ETag"] != etag


def test_an_unrelated_change_keeps_the_etag(base: Api, tolerant: dict[str, int]) -> None:
    etag = base.get("/environments/PROD/models/AImodel").headers["ETag"]
    create_run(base, "AImodel", "1.0", {"f1": 0.1})
    create_run(base, "AImodel", "2.0", {"f1": 0.99})
    response = base.get("/environments/PROD/models/AImodel", headers={"If-None-Match": etag})
    assert response.status_code == 304


# -- history -----------------------------------------------------------------------------


def test_history_lists_champion_changes_newest_first_with_actor_and_reason(base: Api) -> None:
    create_version(base, "AImodel", "1.0", stage="Staging")
    put_policy(base, "INT", "AImodel", stages=["Staging"])
    headers = bearer(base, "ci-pipeline", "ci")
    first = base.upload_run("AImodel", "1.0", b"a", _evals(0.7))
    second = base.client.post(
        "/api/v1/models/AImodel/versions/1.0/runs",
        data=_multipart(b"b", _evals(0.8)),
        content_type="multipart/form-data",
        headers=headers,
    )
    first_id, second_id = first.get_json()["id"], second.get_json()["id"]
    _pin(base, first_id, env="INT", headers=bearer(base, "release-eng", "release"))

    items = history(base, "INT", "AImodel")
    assert [(i["from_run_id"], i["to_run_id"]) for i in items] == [
        (second_id, first_id),
        (first_id, second_id),
        (None, first_id),
    ]
    assert [i["reason"] for i in items] == ["pinned", "best", "best"]
    assert [i["actor"] for i in items] == ["release-eng", "ci-pipeline", "admin-token"]
    assert all(i["at"] for i in items)
    assert items[0]["at"] >= items[1]["at"] >= items[2]["at"]


def test_a_self_declared_actor_header_is_ignored_in_favour_of_the_token(base: Api) -> None:
    create_version(base, "AImodel", "1.0", stage="Staging")
    create_run(base, "AImodel", "1.0", {"f1": 0.7})
    base.put(
        "/environments/INT/policies/AImodel",
        {"stages": ["Staging"], "metric": "f1", "dataset": "holdout", "reason": "r"},
        headers={"X-Modelreg-Actor": "someone-else", **bearer(base, "carol", "release")},
    )
    assert history(base, "INT", "AImodel")[0]["actor"] == "carol"


def test_history_pages_cover_every_change_once(base: Api) -> None:
    create_version(base, "AImodel", "1.0", stage="Staging")
    put_policy(base, "INT", "AImodel", stages=["Staging"])
    ids = [create_run(base, "AImodel", "1.0", {"f1": 0.1 * i})["id"] for i in range(1, 6)]
    items, pages = collect_pages(base, "/environments/INT/models/AImodel/history", page_size=2)
    assert [i["to_run_id"] for i in items] == list(reversed(ids))
    assert pages == 3


def _evals(f1: float) -> dict[str, Any]:
    return {"evaluations": [{"dataset": "holdout", "metrics": {"f1": f1}}]}


def _multipart(content: bytes, metadata: dict[str, Any]) -> dict[str, Any]:
    return {"artifact": (io.BytesIO(content), "m.joblib"), "metadata": json.dumps(metadata)}


# -- champions of a model, environments --------------------------------------------------


def test_a_model_lists_its_champion_in_every_environment(
    base: Api, tolerant: dict[str, int]
) -> None:
    response = base.get("/models/AImodel/champions")
    assert response.status_code == 200
    items = response.get_json()["items"]
    assert [(c["environment"], c["run_id"]) for c in items] == [
        ("INT", tolerant["2.0#1"]),
        ("PROD", tolerant["1.0#2"]),
    ]
    assert all(set(c) >= CHAMPION_FIELDS for c in items)


def test_an_environment_without_a_champion_is_left_out_of_a_models_champions(
    base: Api, tolerant: dict[str, int]
) -> None:
    put_environment(base, "QA")
    put_policy(base, "QA", "AImodel", stages=["Archived"])
    envs = [c["environment"] for c in base.get("/models/AImodel/champions").get_json()["items"]]
    assert envs == ["INT", "PROD"]


def test_environments_list_the_champion_of_every_model(base: Api, tolerant: dict[str, int]) -> None:
    create_model(base, "other")
    put_environment(base, "EMPTY")
    response = base.get("/environments")
    assert response.status_code == 200
    by_env = {e["name"]: e for e in response.get_json()["items"]}
    assert list(by_env) == ["EMPTY", "INT", "PROD"]
    assert by_env["EMPTY"]["champions"] == []
    assert [c["run_id"] for c in by_env["PROD"]["champions"]] == [tolerant["1.0#2"]]
    assert [c["run_id"] for c in by_env["INT"]["champions"]] == [tolerant["2.0#1"]]
    one = base.get("/environments/PROD").get_json()
    assert one["champions"] == by_env["PROD"]["champions"]
    items, pages = collect_pages(base, "/environments", page_size=2)
    assert [e["name"] for e in items] == ["EMPTY", "INT", "PROD"]
    assert pages == 2


def test_evaluating_a_run_later_updates_every_environment_it_matters_to(
    base: Api, tolerant: dict[str, int]
) -> None:
    create_version(base, "AImodel", "0.5", stage="Production")
    run = create_run(base, "AImodel", "0.5")["id"]
    assert evaluate(base, run, {"f1": 0.97}).status_code == 201
    assert _served(base, "PROD")["run_id"] == run
    assert _served(base, "INT")["run_id"] == run
