"""Stage transitions, and the guard against leaving an environment with nothing to serve."""

from __future__ import annotations

from tests.integration.conftest import (
    Api,
    assert_error,
    bearer,
    champion,
    create_model,
    create_run,
    create_version,
    history,
    move_to,
    put_environment,
    put_policy,
    register_dataset,
)

ALLOWED = [
    ("None", "Staging"),
    ("None", "Archived"),
    ("Staging", "Production"),
    ("Staging", "Archived"),
    ("Staging", "None"),
    ("Production", "Staging"),
    ("Production", "Archived"),
    ("Archived", "Staging"),
]
STAGES = ["None", "Staging", "Production", "Archived"]


def _stage(api: Api, model: str, version: str) -> str:
    stage: str = api.get(f"/models/{model}/versions/{version}").get_json()["stage"]
    return stage


def test_every_allowed_transition_of_the_design_table_works(api: Api) -> None:
    create_model(api, "m")
    for i, (source, target) in enumerate(ALLOWED):
        version = f"1.{i}"
        create_version(api, "m", version, stage=source)
        assert _stage(api, "m", version) == source
        response = move_to(api, "m", version, target)
        assert response.status_code == 200, (source, target, response.get_json())
        assert response.get_json()["version"]["stage"] == target
        assert _stage(api, "m", version) == target, (source, target)


def test_every_transition_outside_the_table_is_409_invalid_transition(api: Api) -> None:
    create_model(api, "m")
    create_version(api, "m", "0.1")
    error = assert_error(move_to(api, "m", "0.1", "Production"), 409, "invalid_transition")
    assert error["details"]["allowed"] == ["Staging", "Archived"]
    assert _stage(api, "m", "0.1") == "None"
    forbidden = [(s, t) for s in STAGES for t in STAGES if (s, t) not in ALLOWED]
    assert ("None", "Production") in forbidden
    for i, (source, target) in enumerate(forbidden):
        version = f"2.{i}"
        create_version(api, "m", version, stage=source)
        error = assert_error(move_to(api, "m", version, target), 409, "invalid_transition")
        assert error["details"]["from"] == source
        assert error["details"]["to"] == target
        assert _stage(api, "m", version) == source, (source, target)


def test_a_transition_to_an_unknown_or_missing_stage_is_422_naming_stage(api: Api) -> None:
    create_model(api, "m")
    create_version(api, "m", "1.0")
    assert_error(move_to(api, "m", "1.0", "Prod"), 422, "validation_error", "stage")
    response = api.post("/models/m/versions/1.0/transitions", {"reason": "x"})
    assert_error(response, 422, "validation_error", "stage")
    assert _stage(api, "m", "1.0") == "None"


def test_a_transition_finds_its_version_by_any_equal_spelling_or_is_404(api: Api) -> None:
    create_model(api, "m")
    assert_error(move_to(api, "m", "9.0", "Staging"), 404, "not_found")
    assert_error(move_to(api, "nope", "1.0", "Staging"), 404, "not_found")
    create_version(api, "m", "1.0")
    assert move_to(api, "m", "1.0.0", "Staging").status_code == 200
    assert _stage(api, "m", "1.0") == "Staging"


def _served_setup(api: Api) -> int:
    """PROD serves m 1.0 (its only Production version)."""
    create_model(api, "m")
    register_dataset(api)
    create_version(api, "m", "1.0", stage="Production")
    run = create_run(api, "m", "1.0", {"f1": 0.8})
    put_environment(api, "PROD")
    assert put_policy(api, "PROD", "m", versions="<=1.0", stages=["Production"]).status_code == 201
    served = champion(api, "PROD", "m")
    assert served is not None and served["run_id"] == run["id"]
    return int(run["id"])


def test_a_transition_that_leaves_prod_without_a_model_is_refused_and_changes_nothing(
    api: Api,
) -> None:
    run_id = _served_setup(api)
    before = history(api, "PROD", "m")
    error = assert_error(move_to(api, "m", "1.0", "Archived"), 409, "would_leave_no_model")
    assert error["details"]["environments"] == ["PROD"]
    assert _stage(api, "m", "1.0") == "Production"
    served = champion(api, "PROD", "m")
    assert served is not None and served["run_id"] == run_id
    assert history(api, "PROD", "m") == before
    # Demoting it to Staging would strand PROD just the same.
    assert_error(move_to(api, "m", "1.0", "Staging"), 409, "would_leave_no_model")
    assert _stage(api, "m", "1.0") == "Production"


def test_with_force_the_transition_proceeds_and_history_shows_the_champion_gone(
    api: Api,
) -> None:
    run_id = _served_setup(api)
    response = api.post(
        "/models/m/versions/1.0/transitions",
        {"stage": "Archived", "reason": "retire", "force": True},
        headers=bearer(api, "release-eng", "release"),
    )
    assert response.status_code == 200, response.get_json()
    outcomes = response.get_json()["champions"]
    assert outcomes == [
        {
            "environment": "PROD",
            "model": "m",
            "before": run_id,
            "after": None,
            "reason": "no_eligible_model",
            "changed": True,
        }
    ]
    assert _stage(api, "m", "1.0") == "Archived"
    assert champion(api, "PROD", "m") is None
    latest = history(api, "PROD", "m")[0]
    assert latest["from_run_id"] == run_id
    assert latest["to_run_id"] is None
    assert latest["reason"] == "no_eligible_model"
    assert latest["actor"] == "release-eng"


def test_a_transition_is_allowed_when_another_version_can_take_over(api: Api) -> None:
    old = _served_setup(api)
    create_version(api, "m", "0.9", stage="Production")
    other = create_run(api, "m", "0.9", {"f1": 0.5})
    served = champion(api, "PROD", "m")
    assert served is not None and served["run_id"] == old
    response = move_to(api, "m", "1.0", "Archived")
    assert response.status_code == 200, response.get_json()
    served = champion(api, "PROD", "m")
    assert served is not None and served["run_id"] == other["id"]
    assert served["version"] == "0.9"


def test_a_transition_is_not_refused_for_an_environment_that_had_no_champion(api: Api) -> None:
    create_model(api, "m")
    register_dataset(api)
    create_version(api, "m", "1.0", stage="Staging")
    create_run(api, "m", "1.0", {"f1": 0.8})
    put_environment(api, "PROD")
    assert put_policy(api, "PROD", "m", stages=["Production"]).status_code == 201
    assert champion(api, "PROD", "m") is None
    assert move_to(api, "m", "1.0", "Archived").status_code == 200


def test_promoting_a_version_makes_its_runs_eligible_in_the_same_request(api: Api) -> None:
    create_model(api, "m")
    register_dataset(api)
    create_version(api, "m", "1.0", stage="Staging")
    run = create_run(api, "m", "1.0", {"f1": 0.8})
    put_environment(api, "PROD")
    put_policy(api, "PROD", "m", stages=["Production"])
    assert champion(api, "PROD", "m") is None
    response = move_to(api, "m", "1.0", "Production")
    assert response.status_code == 200
    assert response.get_json()["champions"][0]["after"] == run["id"]
    served = champion(api, "PROD", "m")
    assert served is not None
    assert served["run_id"] == run["id"]
    assert served["stage"] == "Production"
