"""Lists that grow with use come page by page: runs, evaluations, champions."""

from __future__ import annotations

from tests.integration.conftest import Api, register_dataset


def _runs(api: Api, count: int) -> list[int]:
    api.post("/models", {"name": "m"})
    api.post("/models/m/versions", {"version": "1.0"})
    return [api.upload_run("m", "1.0", bytes([i])).json["id"] for i in range(count)]


def _numbers(api: Api, page_size: int) -> list[list[int]]:
    pages, token = [], None
    for _ in range(20):
        query = {"page_size": page_size, **({"page_token": token} if token else {})}
        page = api.get("/models/m/versions/1.0/runs", query_string=query).json
        pages.append([r["number"] for r in page["items"]])
        token = page["next_page_token"]
        if token is None:
            return pages
    raise AssertionError("pagination did not end")


def test_pages_list_every_run_once_in_number_order(api: Api) -> None:
    _runs(api, 5)

    assert _numbers(api, 2) == [[1, 2], [3, 4], [5]]


def test_a_run_removed_between_pages_shifts_nothing_on_the_next_page(api: Api) -> None:
    ids = _runs(api, 5)
    first = api.get("/models/m/versions/1.0/runs", query_string={"page_size": 2}).json

    api.delete(f"/runs/{ids[0]}")
    second = api.get(
        "/models/m/versions/1.0/runs",
        query_string={"page_size": 2, "page_token": first["next_page_token"]},
    ).json

    assert [r["number"] for r in second["items"]] == [3, 4]


def test_a_runs_evaluations_come_in_pages(api: Api) -> None:
    (run,) = _runs(api, 1)
    register_dataset(api, "d", b"d")
    metrics = {f"m{i}": i / 10 for i in range(5)}
    assert (
        api.post(f"/runs/{run}/evaluations", {"dataset": "d", "metrics": metrics}).status_code
        == 201
    )

    first = api.get(f"/runs/{run}/evaluations", query_string={"page_size": 3}).json
    rest = api.get(
        f"/runs/{run}/evaluations",
        query_string={"page_size": 3, "page_token": first["next_page_token"]},
    ).json

    names = [e["metric"] for e in first["items"] + rest["items"]]
    assert sorted(names) == sorted(metrics)
    assert rest["next_page_token"] is None


def test_a_models_champions_come_in_pages(api: Api) -> None:
    (run,) = _runs(api, 1)
    register_dataset(api, "d", b"d")
    api.post(f"/runs/{run}/evaluations", {"dataset": "d", "metrics": {"f1": 0.9}})
    policy = {"versions": "", "stages": ["None"], "metric": "f1", "dataset": "d", "reason": "t"}
    for env in ("INT", "PROD", "QA"):
        api.put(f"/environments/{env}")
        assert api.put(f"/environments/{env}/policies/m", policy).status_code == 201

    first = api.get("/models/m/champions", query_string={"page_size": 2}).json
    rest = api.get(
        "/models/m/champions",
        query_string={"page_size": 2, "page_token": first["next_page_token"]},
    ).json

    assert [c["environment"] for c in first["items"] + rest["items"]] == ["INT", "PROD", "QA"]
    assert rest["next_page_token"] is None
