"""External test sets and the reported metric values of runs on them."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import (
    Api,
    assert_error,
    champion,
    create_model,
    create_run,
    create_version,
    evaluate,
    put_environment,
    put_policy,
    register_dataset,
    sha,
)

# -- datasets ----------------------------------------------------------------------------


def test_a_new_dataset_is_registered_as_revision_1(api: Api) -> None:
    response = api.post(
        "/datasets", {"name": "wine-holdout", "sha256": sha(b"v1"), "description": "first cut"}
    )
    assert response.status_code == 201
    body = response.get_json()
    assert body["dataset"] == "wine-holdout"
    assert body["revision"] == 1
    assert body["label"] == "wine-holdout@1"
    assert body["sha256"] == sha(b"v1")
    assert body["description"] == "first cut"


def test_the_same_content_again_answers_200_with_the_same_revision(api: Api) -> None:
    first = api.post("/datasets", {"name": "d", "sha256": sha(b"v1")})
    again = api.post("/datasets", {"name": "d", "sha256": sha(b"v1")})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.get_json()["revision"] == 1
    upper = api.post("/datasets", {"name": "d", "sha256": sha(b"v1").upper()})
    assert upper.status_code == 200
    assert upper.get_json()["revision"] == 1
    assert len(api.get("/datasets/d").get_json()["revisions"]) == 1


def test_new_content_becomes_the_next_revision(api: Api) -> None:
    register_dataset(api, "d", b"v1")
    response = api.post("/datasets", {"name": "d", "sha256": sha(b"v2")})
    assert response.status_code == 201
    assert response.get_json()["revision"] == 2
    assert response.get_json()["label"] == "d@2"
    # Old content registered again is still revision 1, not a third revision.
    assert api.post("/datasets", {"name": "d", "sha256": sha(b"v1")}).get_json()["revision"] == 1


def test_a_dataset_name_is_case_insensitive(api: Api) -> None:
    register_dataset(api, "Wine", b"v1")
    response = api.post("/datasets", {"name": "wine", "sha256": sha(b"v2")})
    assert response.status_code == 201
    assert response.get_json()["revision"] == 2
    assert response.get_json()["dataset"] == "Wine"


def test_an_invalid_digest_or_name_is_422_naming_that_field(api: Api) -> None:
    for digest in ("abc", "z" * 64, sha(b"x") + "0", ""):
        assert_error(
            api.post("/datasets", {"name": "d", "sha256": digest}),
            422,
            "validation_error",
            "sha256",
        )
    for name in ("a/b", ".x", "", "a" * 101):
        assert_error(
            api.post("/datasets", {"name": name, "sha256": sha(b"x")}),
            422,
            "validation_error",
            "name",
        )
    assert_error(api.get("/datasets/d"), 404, "not_found")
    assert api.get("/datasets").get_json()["items"] == []


def test_a_dataset_lists_its_revisions_in_order(api: Api) -> None:
    for content in (b"v1", b"v2", b"v3"):
        register_dataset(api, "d", content)
    response = api.get("/datasets/d")
    assert response.status_code == 200
    body = response.get_json()
    assert body["name"] == "d"
    assert [(r["revision"], r["sha256"], r["label"]) for r in body["revisions"]] == [
        (1, sha(b"v1"), "d@1"),
        (2, sha(b"v2"), "d@2"),
        (3, sha(b"v3"), "d@3"),
    ]


def test_datasets_are_listed_and_an_unknown_one_is_404(api: Api) -> None:
    register_dataset(api, "b")
    register_dataset(api, "a")
    items = api.get("/datasets").get_json()["items"]
    assert [d["name"] for d in items] == ["a", "b"]
    assert_error(api.get("/datasets/missing"), 404, "not_found")


# -- evaluations -------------------------------------------------------------------------


def _run(api: Api) -> int:
    create_model(api, "m")
    create_version(api, "m", "1.0")
    register_dataset(api, "d", b"v1")
    return int(create_run(api, "m", "1.0")["id"])


def _stored(api: Api, run_id: int) -> dict[tuple[str, str], float]:
    response = api.get(f"/runs/{run_id}/evaluations")
    assert response.status_code == 200
    return {(e["dataset"], e["metric"]): e["value"] for e in response.get_json()["items"]}


def test_reported_metrics_are_stored_with_201(api: Api) -> None:
    run_id = _run(api)
    response = evaluate(api, run_id, {"f1": 0.8, "accuracy": 0.9}, dataset="d")
    assert response.status_code == 201
    items = response.get_json()["items"]
    assert {(e["metric"], e["value"], e["dataset"], e["source"]) for e in items} == {
        ("f1", 0.8, "d@1", "reported"),
        ("accuracy", 0.9, "d@1", "reported"),
    }
    assert _stored(api, run_id) == {("d@1", "f1"): 0.8, ("d@1", "accuracy"): 0.9}
    detail = api.get(f"/runs/{run_id}").get_json()
    assert {e["metric"] for e in detail["evaluations"]} == {"f1", "accuracy"}


def test_a_bare_dataset_name_means_its_latest_revision(api: Api) -> None:
    run_id = _run(api)
    register_dataset(api, "d", b"v2")
    assert evaluate(api, run_id, {"f1": 0.7}, dataset="d").status_code == 201
    assert evaluate(api, run_id, {"f1": 0.6}, dataset="d@1").status_code == 201
    assert _stored(api, run_id) == {("d@2", "f1"): 0.7, ("d@1", "f1"): 0.6}


def test_a_duplicate_metric_is_409_and_none_of_the_request_is_stored(api: Api) -> None:
    run_id = _run(api)
    assert evaluate(api, run_id, {"f1": 0.8}, dataset="d").status_code == 201
    response = evaluate(api, run_id, {"accuracy": 0.9, "f1": 0.85, "recall": 0.7}, dataset="d@1")
    error = assert_error(response, 409, "already_exists")
    assert error["details"]["metrics"] == ["f1"]
    assert _stored(api, run_id) == {("d@1", "f1"): 0.8}


def test_the_same_metric_on_another_revision_is_not_a_duplicate(api: Api) -> None:
    run_id = _run(api)
    evaluate(api, run_id, {"f1": 0.8}, dataset="d")
    register_dataset(api, "d", b"v2")
    assert evaluate(api, run_id, {"f1": 0.5}, dataset="d").status_code == 201


def _raw(api: Api, run_id: int, text: str) -> Any:
    return api.client.post(
        f"/api/v1/runs/{run_id}/evaluations", data=text, content_type="application/json"
    )


def test_nan_infinity_and_numbers_too_large_for_a_float_are_422_and_nothing_is_stored(
    api: Api,
) -> None:
    run_id = _run(api)
    for literal in ("NaN", "Infinity", "-Infinity"):
        text = '{"dataset": "d", "metrics": {"accuracy": 0.5, "f1": ' + literal + "}}"
        assert_error(_raw(api, run_id, text), 422, "validation_error", "metrics")
    huge = _raw(api, run_id, '{"dataset": "d", "metrics": {"f1": 1e400}}')
    assert_error(huge, 422, "validation_error", "metrics")
    assert _stored(api, run_id) == {}


def test_a_metric_that_is_not_a_named_number_is_422_and_nothing_is_stored(api: Api) -> None:
    run_id = _run(api)
    for value in ("high", None, [1], True):
        response = evaluate(api, run_id, {"f1": value}, dataset="d")  # type: ignore[dict-item]
        assert_error(response, 422, "validation_error", "metrics")
    for metrics in ({"f 1": 0.5}, {}):
        response = evaluate(api, run_id, metrics, dataset="d")
        assert_error(response, 422, "validation_error", "metrics")
    assert _stored(api, run_id) == {}


def test_an_unknown_dataset_is_422_naming_dataset(api: Api) -> None:
    run_id = _run(api)
    for label in ("missing", "d@7", "d@"):
        assert_error(
            evaluate(api, run_id, {"f1": 0.5}, dataset=label), 422, "validation_error", "dataset"
        )
    assert _stored(api, run_id) == {}


def test_an_evaluation_of_an_unknown_run_is_404(api: Api) -> None:
    register_dataset(api, "d")
    assert_error(evaluate(api, 4242, {"f1": 0.5}, dataset="d"), 404, "not_found")
    assert_error(api.get("/runs/4242/evaluations"), 404, "not_found")


def test_a_new_evaluation_moves_the_champion_in_the_same_request(api: Api) -> None:
    run_id = _run(api)
    put_environment(api, "INT")
    put_policy(api, "INT", "m", stages=["None"], dataset="d")
    assert champion(api, "INT", "m") is None
    assert evaluate(api, run_id, {"f1": 0.8}, dataset="d").status_code == 201
    served = champion(api, "INT", "m")
    assert served is not None and served["run_id"] == run_id


def test_an_evaluation_on_another_revision_does_not_count_for_a_pinned_revision(
    api: Api,
) -> None:
    run_id = _run(api)
    put_environment(api, "INT")
    put_policy(api, "INT", "m", stages=["None"], dataset="d@1")
    register_dataset(api, "d", b"v2")
    assert evaluate(api, run_id, {"f1": 0.8}, dataset="d@2").status_code == 201
    assert champion(api, "INT", "m") is None
