"""Environment policies (revisions, If-Match, validation) and dry-run plans."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import (
    Api,
    assert_error,
    bearer,
    champion,
    create_model,
    create_run,
    create_version,
    history,
    policy_body,
    put_environment,
    put_policy,
    register_dataset,
)

POLICY_FIELDS = {
    "environment",
    "model",
    "versions",
    "stages",
    "metric",
    "dataset",
    "direction",
    "min_value",
    "min_improvement",
    "allow_prereleases",
    "require_verified",
    "revision",
    "updated_at",
}


@pytest.fixture
def base(api: Api) -> Api:
    create_model(api, "m")
    register_dataset(api, "holdout", b"v1")
    put_environment(api, "PROD")
    return api


def _policy(api: Api, env: str = "PROD", model: str = "m") -> dict[str, Any]:
    response = api.get(f"/environments/{env}/policies/{model}")
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def test_a_new_policy_is_201_revision_1_and_reads_back_with_the_design_shape(base: Api) -> None:
    created = put_policy(
        base,
        "PROD",
        "m",
        versions="<=1.0",
        stages=["Production"],
        metric="f1",
        min_value=0.5,
        min_improvement=0.01,
    )
    assert created.status_code == 201
    assert created.headers["ETag"] == '"1"'
    assert created.get_json()["revision"] == 1
    response = base.get("/environments/PROD/policies/m")
    assert response.status_code == 200
    assert response.headers["ETag"] == '"1"'
    body = response.get_json()
    assert set(body) >= POLICY_FIELDS
    assert body["environment"] == "PROD"
    assert body["model"] == "m"
    assert body["versions"] == "<=1.0"
    assert body["stages"] == ["Production"]
    assert body["metric"] == "f1"
    assert body["dataset"] == "holdout@1"
    assert body["direction"] == "max"
    assert body["min_value"] == 0.5
    assert body["min_improvement"] == 0.01
    assert body["allow_prereleases"] is False
    assert body["require_verified"] is False
    assert body["revision"] == 1
    assert _policy(base, "prod", "M") == body


def test_replacing_a_policy_with_a_change_bumps_its_revision(base: Api) -> None:
    put_policy(base, "PROD", "m", versions="<=1.0")
    response = put_policy(base, "PROD", "m", versions="<=2.0")
    assert response.status_code == 200
    assert response.get_json()["revision"] == 2
    assert response.headers["ETag"] == '"2"'
    body = _policy(base)
    assert body["revision"] == 2
    assert body["versions"] == "<=2.0"


def test_replacing_a_policy_with_the_same_body_keeps_its_revision(base: Api) -> None:
    put_policy(base, "PROD", "m", versions="<=1.0")
    response = put_policy(base, "PROD", "m", versions="<=1.0")
    assert response.status_code == 200
    assert response.get_json()["revision"] == 1


def test_a_stale_if_match_is_412_and_the_policy_is_unchanged(base: Api) -> None:
    put_policy(base, "PROD", "m", versions="<=1.0")
    put_policy(base, "PROD", "m", versions="<=1.5")
    response = base.put(
        "/environments/PROD/policies/m",
        policy_body(versions="<=2.0"),
        headers={"If-Match": '"1"'},
    )
    error = assert_error(response, 412, "precondition_failed")
    assert error["details"]["revision"] == 2
    body = _policy(base)
    assert body["revision"] == 2
    assert body["versions"] == "<=1.5"


def test_the_current_if_match_replaces_the_policy(base: Api) -> None:
    put_policy(base, "PROD", "m", versions="<=1.0")
    for i, header in enumerate(('"1"', "2", 'W/"3"'), start=1):
        response = base.put(
            "/environments/PROD/policies/m",
            policy_body(versions=f"<=1.{i}"),
            headers={"If-Match": header},
        )
        assert response.status_code == 200, (header, response.get_json())
    assert _policy(base)["revision"] == 4
    bad = base.put("/environments/PROD/policies/m", policy_body(), headers={"If-Match": '"x"'})
    assert_error(bad, 400, "bad_request")
    assert _policy(base)["revision"] == 4


def test_if_match_on_a_policy_that_does_not_exist_yet_is_412(base: Api) -> None:
    response = base.put("/environments/PROD/policies/m", policy_body(), headers={"If-Match": "1"})
    assert_error(response, 412, "precondition_failed")
    assert_error(base.get("/environments/PROD/policies/m"), 404, "not_found")


def test_an_invalid_version_specifier_is_422_naming_versions(base: Api) -> None:
    for spec in ("<=x", "==", "1.0"):
        assert_error(
            put_policy(base, "PROD", "m", versions=spec), 422, "validation_error", "versions"
        )
    assert_error(base.get("/environments/PROD/policies/m"), 404, "not_found")


def test_an_unknown_metric_without_direction_is_422_naming_direction(base: Api) -> None:
    assert_error(
        put_policy(base, "PROD", "m", metric="latency_ms"), 422, "validation_error", "direction"
    )
    assert_error(
        put_policy(base, "PROD", "m", metric="latency_ms", direction="up"),
        422,
        "validation_error",
        "direction",
    )
    response = put_policy(base, "PROD", "m", metric="latency_ms", direction="min")
    assert response.status_code == 201
    assert _policy(base)["direction"] == "min"


def test_every_invalid_policy_field_is_422_naming_that_field(base: Api) -> None:
    for overrides, field in (
        ({"stages": ["Prod"]}, "stages"),
        ({"stages": []}, "stages"),
        ({"min_improvement": -0.1}, "min_improvement"),
        ({"min_value": "high"}, "min_value"),
        ({"allow_prereleases": "maybe"}, "allow_prereleases"),
        ({"metric": "bad metric"}, "metric"),
    ):
        response = put_policy(base, "PROD", "m", **overrides)
        assert_error(response, 422, "validation_error", field)
    response = base.put("/environments/PROD/policies/m", {"versions": "<=1.0"})
    error = assert_error(response, 422, "validation_error")
    assert {"stages", "metric", "dataset"} <= set(error["details"])
    assert_error(base.get("/environments/PROD/policies/m"), 404, "not_found")


def test_known_metrics_get_their_default_direction(base: Api) -> None:
    create_model(base, "other")
    put_policy(base, "PROD", "m", metric="rmse")
    put_policy(base, "PROD", "other", metric="F1_macro")
    assert _policy(base, "PROD", "m")["direction"] == "min"
    assert _policy(base, "PROD", "other")["direction"] == "max"


def test_a_bare_dataset_name_pins_its_latest_revision_and_an_explicit_one_is_kept(
    base: Api,
) -> None:
    register_dataset(base, "holdout", b"v2")
    put_policy(base, "PROD", "m", dataset="holdout")
    assert _policy(base)["dataset"] == "holdout@2"
    register_dataset(base, "holdout", b"v3")
    body = _policy(base)
    assert body["dataset"] == "holdout@2"
    assert body["revision"] == 1
    put_policy(base, "PROD", "m", dataset="holdout@1")
    assert _policy(base)["dataset"] == "holdout@1"


def test_an_unknown_dataset_or_revision_is_422_naming_dataset(base: Api) -> None:
    for label in ("missing", "holdout@9"):
        assert_error(
            put_policy(base, "PROD", "m", dataset=label), 422, "validation_error", "dataset"
        )


def test_a_policy_for_an_unknown_environment_or_model_is_404(base: Api) -> None:
    assert_error(put_policy(base, "NOPE", "m"), 404, "not_found")
    assert_error(put_policy(base, "PROD", "nope"), 404, "not_found")
    assert_error(base.get("/environments/NOPE/policies/m"), 404, "not_found")
    assert_error(base.get("/environments/PROD/policies/m"), 404, "not_found")


def test_a_policy_change_records_who_made_it_and_why(base: Api) -> None:
    response = base.put(
        "/environments/PROD/policies/m",
        policy_body(reason="widen for 2.x"),
        headers=bearer(base, "alice", "release"),
    )
    assert response.status_code == 201
    body = _policy(base)
    assert body["reason"] == "widen for 2.x"
    assert body["updated_by"] == "alice"


def test_environments_are_created_then_updated_and_names_are_checked(api: Api) -> None:
    created = api.put("/environments/INT", {"description": "integration"})
    assert created.status_code == 201
    assert created.get_json()["name"] == "INT"
    updated = api.put("/environments/int", {"description": "integration tests"})
    assert updated.status_code == 200
    assert updated.get_json()["name"] == "INT"
    assert api.get("/environments/INT").get_json()["description"] == "integration tests"
    assert_error(api.put("/environments/.bad", {}), 422, "validation_error", "name")


# -- policy changes and the champion -----------------------------------------------------


def _two_versions(api: Api) -> tuple[int, int]:
    create_version(api, "m", "1.0", stage="Production")
    create_version(api, "m", "2.0", stage="Production")
    old = create_run(api, "m", "1.0", {"f1": 0.7})["id"]
    new = create_run(api, "m", "2.0", {"f1": 0.9})["id"]
    return old, new


def test_widening_a_policy_moves_the_champion_in_the_same_request(base: Api) -> None:
    old, new = _two_versions(base)
    put_policy(base, "PROD", "m", versions="<=1.0", stages=["Production"])
    assert champion(base, "PROD", "m")["run_id"] == old  # type: ignore[index]
    response = put_policy(base, "PROD", "m", versions="<=2.0", stages=["Production"])
    assert response.status_code == 200
    body = response.get_json()
    assert body["champion_changed"] is True
    assert body["champion"]["run_id"] == new
    served = champion(base, "PROD", "m")
    assert served is not None
    assert served["run_id"] == new
    assert served["policy_revision"] == 2


def test_a_policy_change_that_leaves_no_model_is_409_and_nothing_changes(base: Api) -> None:
    old, _ = _two_versions(base)
    put_policy(base, "PROD", "m", versions="<=1.0", stages=["Production"])
    before = history(base, "PROD", "m")
    response = put_policy(base, "PROD", "m", versions=">=3.0", stages=["Production"])
    error = assert_error(response, 409, "would_leave_no_model")
    assert error["details"]["environments"] == ["PROD"]
    body = _policy(base)
    assert body["revision"] == 1
    assert body["versions"] == "<=1.0"
    assert champion(base, "PROD", "m")["run_id"] == old  # type: ignore[index]
    assert history(base, "PROD", "m") == before


def test_a_forced_policy_change_may_leave_no_model(base: Api) -> None:
    old, _ = _two_versions(base)
    put_policy(base, "PROD", "m", versions="<=1.0", stages=["Production"])
    response = put_policy(base, "PROD", "m", versions=">=3.0", stages=["Production"], force=True)
    assert response.status_code == 200
    assert response.get_json()["champion"] is None
    assert _policy(base)["revision"] == 2
    assert champion(base, "PROD", "m") is None
    latest = history(base, "PROD", "m")[0]
    assert (latest["from_run_id"], latest["to_run_id"]) == (old, None)


# -- plan --------------------------------------------------------------------------------


def _plan(api: Api, **overrides: Any) -> dict[str, Any]:
    response = api.post("/environments/PROD/policies/m/plan", policy_body(**overrides))
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def test_a_plan_reports_current_and_proposed_champion_and_stores_nothing(base: Api) -> None:
    old, new = _two_versions(base)
    put_policy(base, "PROD", "m", versions="<=1.0", stages=["Production"])
    policy_before = _policy(base)
    history_before = history(base, "PROD", "m")
    champion_before = champion(base, "PROD", "m")

    plan = _plan(base, versions="<=2.0", stages=["Production"])
    assert plan["current"]["run_id"] == old
    assert plan["proposed"]["run_id"] == new
    assert plan["proposed"]["version"] == "2.0"
    assert plan["changes"] is True
    assert plan["eligible_count"] == 2

    assert _policy(base) == policy_before
    assert history(base, "PROD", "m") == history_before
    assert champion(base, "PROD", "m") == champion_before


def test_a_plan_that_changes_nothing_says_so(base: Api) -> None:
    old, _ = _two_versions(base)
    put_policy(base, "PROD", "m", versions="<=1.0", stages=["Production"])
    plan = _plan(base, versions="<1.5", stages=["Production"])
    assert plan["current"]["run_id"] == old
    assert plan["proposed"]["run_id"] == old
    assert plan["changes"] is False
    assert plan["eligible_count"] == 1


def test_a_plan_for_a_policy_that_does_not_exist_yet_has_no_current_champion(
    base: Api,
) -> None:
    _, new = _two_versions(base)
    plan = _plan(base, stages=["Production"])
    assert plan["current"] is None
    assert plan["proposed"]["run_id"] == new
    assert plan["changes"] is True
    assert plan["eligible_count"] == 2
    assert_error(base.get("/environments/PROD/policies/m"), 404, "not_found")
    assert_error(base.get("/environments/PROD/models/m"), 404, "not_found")


def test_a_plan_that_would_leave_no_model_is_shown_not_refused(base: Api) -> None:
    old, _ = _two_versions(base)
    put_policy(base, "PROD", "m", versions="<=1.0", stages=["Production"])
    plan = _plan(base, versions=">=3.0", stages=["Production"])
    assert plan["current"]["run_id"] == old
    assert plan["proposed"] is None
    assert plan["changes"] is True
    assert plan["eligible_count"] == 0
    assert plan["would_leave_no_model"] is True
    assert champion(base, "PROD", "m")["run_id"] == old  # type: ignore[index]
    assert _policy(base)["revision"] == 1


def test_a_plan_validates_its_body_like_a_put(base: Api) -> None:
    response = base.post("/environments/PROD/policies/m/plan", policy_body(versions="<=x"))
    assert_error(response, 422, "validation_error", "versions")
    response = base.post("/environments/PROD/policies/m/plan", policy_body(metric="latency"))
    assert_error(response, 422, "validation_error", "direction")
