"""Registered models and their PEP 440 versions, through the HTTP API."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Api, assert_error, collect_pages, create_model, move_to

# -- models ------------------------------------------------------------------------------


def test_registering_a_model_answers_201_with_its_name_description_and_tags(api: Api) -> None:
    response = api.post(
        "/models", {"name": "AImodel", "description": "wine quality", "tags": {"team": "ml"}}
    )
    assert response.status_code == 201
    body = response.get_json()
    assert body["name"] == "AImodel"
    assert body["description"] == "wine quality"
    assert body["tags"] == {"team": "ml"}
    assert body["versions"] == []
    assert body["created_at"]

    got = api.get("/models/AImodel").get_json()
    assert got["name"] == "AImodel"
    assert got["description"] == "wine quality"
    assert got["tags"] == {"team": "ml"}


def test_a_model_name_is_unique_whatever_its_capitalisation(api: Api) -> None:
    create_model(api, "AImodel")
    for second in ("AImodel", "aimodel", "AIMODEL", "aImOdEl"):
        assert_error(api.post("/models", {"name": second}), 409, "already_exists")
    listed = api.get("/models").get_json()["items"]
    assert [m["name"] for m in listed] == ["AImodel"]


INVALID_NAMES = {
    "slash": "a/b",
    "leading dot": ".hidden",
    "101 characters": "a" * 101,
    "NUL": "bad\x00name",
    "tab": "tab\tname",
    "newline": "new\nline",
    "escape": "esc\x1bname",
    "empty": "",
    "leading dash": "-leading-dash",
    "space": "has space",
    "non-ASCII": "\u00e9-accent",
}


def test_an_invalid_model_name_is_refused_with_422_naming_the_name_field(api: Api) -> None:
    for label, name in INVALID_NAMES.items():
        response = api.post("/models", {"name": name})
        assert response.status_code == 422, label
        assert_error(response, 422, "validation_error", "name")
    assert_error(api.post("/models", {"name": 42}), 422, "validation_error", "name")
    assert_error(api.post("/models", {"description": "x"}), 422, "validation_error", "name")
    assert api.get("/models").get_json()["items"] == []


def test_a_model_name_of_exactly_100_characters_is_accepted(api: Api) -> None:
    name = "m" + "x" * 99
    assert api.post("/models", {"name": name}).status_code == 201
    assert api.get(f"/models/{name}").get_json()["name"] == name


def test_the_model_list_pages_cover_every_model_exactly_once_in_name_order(api: Api) -> None:
    # Sorted case-insensitively, whatever the order of registration.
    names = ["Alpha", "beta", "Gamma", "delta-1", "delta-2", "Epsilon", "zeta"]
    names.sort(key=str.lower)
    for name in reversed(names):
        create_model(api, name)
    items, pages = collect_pages(api, "/models", page_size=3)
    assert [m["name"] for m in items] == names
    assert pages == 3
    exact = api.get("/models?page_size=7").get_json()
    assert len(exact["items"]) == 7
    assert exact["next_page_token"] is None


def test_a_foreign_page_token_is_400_and_an_invalid_page_size_is_422(api: Api) -> None:
    create_model(api, "a")
    # garbage, base64 of non-JSON, {"o":-1}, and a history token {"k":1}
    for token in ("garbage!!", "bm90LWpzb24", "eyJvIjotMX0", "eyJrIjoxfQ"):
        assert_error(api.get(f"/models?page_token={token}"), 400, "bad_request")
    for size in ("0", "-1", "abc"):
        assert_error(api.get(f"/models?page_size={size}"), 422, "validation_error", "page_size")


# -- versions ----------------------------------------------------------------------------


def test_a_new_version_is_created_normalized_in_stage_none(api: Api) -> None:
    create_model(api, "m")
    response = api.post(
        "/models/m/versions", {"version": "1.0", "description": "first", "tags": {"k": "v"}}
    )
    assert response.status_code == 201
    body = response.get_json()
    assert body["model"] == "m"
    assert body["version"] == "1.0"
    assert body["stage"] == "None"
    assert body["description"] == "first"
    assert body["tags"] == {"k": "v"}
    assert body["is_prerelease"] is False
    assert body["normalized_from"] is None  # stored as written

    model = api.get("/models/m").get_json()
    assert [v["version"] for v in model["versions"]] == ["1.0"]

    normalized = api.post("/models/m/versions", {"version": "v2.0-RC1"}).get_json()
    assert normalized["version"] == "2.0rc1"
    assert normalized["is_prerelease"] is True


def test_a_version_stored_in_another_spelling_than_written_says_how_it_was_written(
    api: Api,
) -> None:
    create_model(api, "m")
    response = api.post("/models/m/versions", {"version": "v3", "description": "third"})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["version"], body["normalized_from"]) == ("3", "v3")
    # The version's own fields are all there, as in every version document.
    shown = api.get("/models/m/versions/3").get_json()
    assert {k: v for k, v in body.items() if k != "normalized_from"} == shown
    assert "normalized_from" not in shown

    for written, stored in (("V2.0-RC.1", "2.0rc1"), ("1.0.0", "1.0.0"), ("4.0", "4.0")):
        created = api.post("/models/m/versions", {"version": written}).get_json()
        assert created["version"] == stored
        assert created["normalized_from"] == (None if written == stored else written)


def test_an_equal_version_in_another_spelling_is_409_already_exists(api: Api) -> None:
    create_model(api, "m")
    for first, second in (("1.0", "1.0.0"), ("3", "3.0.0"), ("2.0rc1", "2.0.0rc1")):
        assert api.post("/models/m/versions", {"version": first}).status_code == 201
        assert_error(api.post("/models/m/versions", {"version": second}), 409, "already_exists")
    versions = api.get("/models/m/versions").get_json()["items"]
    assert [v["version"] for v in versions] == ["1.0", "2.0rc1", "3"]
    # Another model may have the same version.
    create_model(api, "other")
    assert api.post("/models/other/versions", {"version": "1.0"}).status_code == 201


def test_an_invalid_version_is_422_naming_the_version_field(api: Api) -> None:
    create_model(api, "m")
    for version in ("not-a-version", "1.0.x", "", "1..0", "latest"):
        assert_error(
            api.post("/models/m/versions", {"version": version}),
            422,
            "validation_error",
            "version",
        )
    assert api.get("/models/m/versions").get_json()["items"] == []


def _versions(api: Api, query: str = "") -> list[str]:
    response = api.get(f"/models/m/versions{query}")
    assert response.status_code == 200, response.get_json()
    return [v["version"] for v in response.get_json()["items"]]


ORDERED = ["1.0", "1.9", "1.10", "2.0rc1", "2.0", "2.0.post1", "10.0"]


@pytest.fixture
def many_versions(api: Api) -> Api:
    create_model(api, "m")
    for v in ["10.0", "2.0", "1.10", "2.0rc1", "1.0", "2.0.post1", "1.9"]:
        assert api.post("/models/m/versions", {"version": v}).status_code == 201
    return api


def test_versions_are_listed_in_pep_440_order(many_versions: Api) -> None:
    assert _versions(many_versions) == ORDERED
    model = many_versions.get("/models/m").get_json()
    assert [v["version"] for v in model["versions"]] == ORDERED


def test_version_pages_follow_pep_440_order_and_cover_every_version_once(
    many_versions: Api,
) -> None:
    items, pages = collect_pages(many_versions, "/models/m/versions", page_size=2)
    assert [v["version"] for v in items] == ORDERED
    assert pages == 4


def test_a_spec_filter_keeps_versions_inside_the_tolerance(many_versions: Api) -> None:
    assert _versions(many_versions, "?spec=<=2.0") == ["1.0", "1.9", "1.10", "2.0"]
    assert _versions(many_versions, "?spec=>1.9,<10") == ["1.10", "2.0", "2.0.post1"]
    assert _versions(many_versions, "?spec=") == ORDERED


def test_a_spec_filter_excludes_pre_releases_unless_asked(many_versions: Api) -> None:
    assert "2.0rc1" not in _versions(many_versions, "?spec=>=2.0rc1")
    assert _versions(many_versions, "?spec=<=2.0&prereleases=true") == [
        "1.0",
        "1.9",
        "1.10",
        "2.0rc1",
        "2.0",
    ]


def test_an_invalid_spec_is_422_naming_spec(many_versions: Api) -> None:
    for spec in ("<=x", "==", "~=1", "garbage"):
        assert_error(
            many_versions.get(f"/models/m/versions?spec={spec}"), 422, "validation_error", "spec"
        )


def test_a_stage_filter_keeps_versions_in_that_stage(many_versions: Api) -> None:
    api = many_versions
    for step in ("Staging", "Production"):
        assert move_to(api, "m", "1.0", step).status_code == 200
    assert move_to(api, "m", "2.0", "Staging").status_code == 200
    assert move_to(api, "m", "1.9", "Archived").status_code == 200
    assert _versions(api, "?stage=Production") == ["1.0"]
    assert _versions(api, "?stage=Staging") == ["2.0"]
    assert _versions(api, "?stage=Archived") == ["1.9"]
    assert _versions(api, "?stage=None") == ["1.10", "2.0rc1", "2.0.post1", "10.0"]
    assert _versions(api, "?spec=<=2.0&stage=Staging") == ["2.0"]
    assert _versions(api, "?spec=<2.0&stage=Staging") == []
    assert_error(api.get("/models/m/versions?stage=Prod"), 422, "validation_error", "stage")


def test_a_version_is_found_by_any_equal_spelling(api: Api) -> None:
    create_model(api, "m")
    api.post("/models/m/versions", {"version": "1.0"})
    for spelling in ("1.0", "1.0.0", "1", "v1.0"):
        response = api.get(f"/models/m/versions/{spelling}")
        assert response.status_code == 200, spelling
        assert response.get_json()["version"] == "1.0"


def test_an_unknown_model_or_version_is_404_and_an_invalid_version_is_422(api: Api) -> None:
    create_model(api, "m")
    assert_error(api.get("/models/nope"), 404, "not_found")
    assert_error(api.get("/models/m/versions/3.0"), 404, "not_found")
    assert_error(api.get("/models/nope/versions"), 404, "not_found")
    assert_error(api.get("/models/nope/versions/1.0"), 404, "not_found")
    assert_error(api.post("/models/nope/versions", {"version": "1.0"}), 404, "not_found")
    assert_error(api.get("/models/m/versions/nope"), 422, "validation_error", "version")
