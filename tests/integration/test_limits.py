"""Configurable input limits: names, metrics per evaluation, evaluations per run, pages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelreg.config import load_settings
from modelreg.errors import ConfigError
from tests.integration.conftest import (
    Api,
    assert_error,
    create_model,
    create_run,
    create_version,
    evaluate,
    register_dataset,
)


def blobs(tmp_path: Path) -> list[Path]:
    """Every file in the artifact store: blobs (``sha256/``) and uploads in flight (``tmp/``)."""
    root = tmp_path / "artifacts"
    return sorted(p for d in ("sha256", "tmp") for p in (root / d).rglob("*") if p.is_file())


def metrics(count: int) -> dict[str, float]:
    return {f"m{i}": 0.5 for i in range(count)}


def a_version_and_a_dataset(api: Api) -> None:
    create_model(api, "m")
    create_version(api, "m", "1.0")
    register_dataset(api, "holdout")


def runs_of(api: Api) -> list[Any]:
    items: list[Any] = api.get("/models/m/versions/1.0/runs").get_json()["items"]
    return items


# -- metrics per evaluation ---------------------------------------------------------------


def test_an_evaluation_with_max_metrics_per_evaluation_metrics_is_recorded_one_more_is_422(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(max_metrics_per_evaluation=3)
    a_version_and_a_dataset(api)
    run = create_run(api, "m", "1.0")

    assert evaluate(api, run["id"], metrics(3)).status_code == 201
    refused = evaluate(api, run["id"], {f"x{i}": 0.5 for i in range(4)})

    error = assert_error(refused, 422, "validation_error", "metrics")
    assert "at most 3 metrics (max_metrics_per_evaluation)" in str(error["details"])
    stored = api.get(f"/runs/{run['id']}/evaluations").get_json()["items"]
    assert sorted(e["metric"] for e in stored) == ["m0", "m1", "m2"]


def test_the_default_allows_100_metrics_in_one_evaluation_and_refuses_101(api: Api) -> None:
    a_version_and_a_dataset(api)
    run = create_run(api, "m", "1.0")

    assert_error(evaluate(api, run["id"], metrics(101)), 422, "validation_error", "metrics")
    assert api.get(f"/runs/{run['id']}/evaluations").get_json()["items"] == []
    assert evaluate(api, run["id"], metrics(100)).status_code == 201


def test_a_run_reporting_too_many_metrics_is_refused_before_its_artifact_is_stored(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    api = make_api(max_metrics_per_evaluation=2)
    a_version_and_a_dataset(api)

    refused = api.upload_run(
        "m", "1.0", b"weights", {"evaluations": [{"dataset": "holdout", "metrics": metrics(3)}]}
    )

    error = assert_error(refused, 422, "validation_error", "evaluations")
    assert "max_metrics_per_evaluation" in str(error["details"])
    assert runs_of(api) == []
    assert blobs(tmp_path) == []
    accepted = create_run(api, "m", "1.0", metrics(2))
    assert len(api.get(f"/runs/{accepted['id']}/evaluations").get_json()["items"]) == 2


# -- evaluations per run registration ----------------------------------------------------


def test_a_run_with_max_evaluations_per_run_evaluations_is_registered_one_more_is_422(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    api = make_api(max_evaluations_per_run=2)
    a_version_and_a_dataset(api)
    register_dataset(api, "other", b"other rows")
    register_dataset(api, "third", b"third rows")
    three = [{"dataset": d, "metrics": {"f1": 0.5}} for d in ("holdout", "other", "third")]

    refused = api.upload_run("m", "1.0", b"weights", {"evaluations": three})

    error = assert_error(refused, 422, "validation_error", "evaluations")
    assert error["details"]["evaluations"] == ["at most 2 evaluations (max_evaluations_per_run)"]
    assert runs_of(api) == []
    assert blobs(tmp_path) == []
    assert api.upload_run("m", "1.0", b"weights", {"evaluations": three[:2]}).status_code == 201


# -- name lengths -------------------------------------------------------------------------


def test_names_of_max_name_length_characters_are_accepted_everywhere(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(max_name_length=10)
    name = "n" * 10

    assert api.post("/models", {"name": name}).status_code == 201
    assert api.put(f"/environments/{name}", {}).status_code == 201
    register_dataset(api, name)
    assert api.post("/tokens", {"name": name, "role": "reader"}).status_code == 201
    create_version(api, name, "1.0")
    run = create_run(api, name, "1.0")
    assert evaluate(api, run["id"], {name: 0.5}, dataset=name).status_code == 201


def test_a_name_one_character_over_max_name_length_is_422_and_nothing_is_created(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(max_name_length=10)
    long = "n" * 11
    message = "at most 10 characters (max_name_length)"

    for response in (
        api.post("/models", {"name": long}),
        api.put(f"/environments/{long}", {}),
        api.post("/datasets", {"name": long, "sha256": "a" * 64}),
        api.post("/tokens", {"name": long, "role": "reader"}),
    ):
        error = assert_error(response, 422, "validation_error", "name")
        assert message in str(error["details"]["name"])

    assert api.get("/models").get_json()["items"] == []
    assert api.get("/environments").get_json()["items"] == []
    assert api.get("/datasets").get_json()["items"] == []
    assert all(t["name"] != long for t in api.get("/tokens").get_json()["items"])


def test_a_metric_name_over_max_name_length_is_422_and_no_value_is_stored(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(max_name_length=10)
    a_version_and_a_dataset(api)
    run = create_run(api, "m", "1.0")

    error = assert_error(
        evaluate(api, run["id"], {"f1": 0.5, "x" * 11: 0.5}), 422, "validation_error", "metrics"
    )

    assert "max_name_length" in str(error["details"])
    assert api.get(f"/runs/{run['id']}/evaluations").get_json()["items"] == []


def test_by_default_a_100_character_name_is_accepted_and_101_is_refused(api: Api) -> None:
    assert api.post("/models", {"name": "a" * 100}).status_code == 201
    assert_error(api.post("/models", {"name": "b" * 101}), 422, "validation_error", "name")
    assert_error(api.put(f"/environments/{'e' * 101}", {}), 422, "validation_error", "name")


# -- page sizes ---------------------------------------------------------------------------


def test_a_page_size_above_max_page_size_is_served_as_max_page_size(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(max_page_size=2, default_page_size=1)
    for name in ("alpha", "beta", "gamma"):
        create_model(api, name)

    assert len(api.get("/models").get_json()["items"]) == 1
    exact = api.get("/models?page_size=2").get_json()
    over = api.get("/models?page_size=3").get_json()

    assert len(exact["items"]) == len(over["items"]) == 2
    assert over["next_page_token"]


# -- the settings themselves --------------------------------------------------------------


def test_the_limits_default_to_100_and_can_be_set_by_the_environment() -> None:
    defaults = load_settings(environ={})
    assert (
        defaults.max_name_length,
        defaults.max_metrics_per_evaluation,
        defaults.max_evaluations_per_run,
    ) == (100, 100, 100)

    settings = load_settings(
        environ={"MODELREG_MAX_NAME_LENGTH": "40", "MODELREG_MAX_METRICS_PER_EVALUATION": "7"}
    )
    assert (settings.max_name_length, settings.max_metrics_per_evaluation) == (40, 7)


@pytest.mark.parametrize(
    "overrides",
    [
        {"max_name_length": 0},
        {"max_name_length": 101},
        {"max_metrics_per_evaluation": 0},
        {"max_evaluations_per_run": 0},
        {"max_page_size": 0},
        {"default_page_size": 0},
        {"default_page_size": 501},
        {"max_json_bytes": 0},
        {"max_artifact_bytes": 0},
    ],
)
def test_a_limit_out_of_its_bounds_is_refused_at_start(overrides: dict[str, int]) -> None:
    with pytest.raises(ConfigError, match=next(iter(overrides)).replace("max_", "")):
        load_settings(environ={}, **overrides)
