"""Removing a run, or a version with its runs, moves the champions they held, in the same
transaction."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from tests.integration.conftest import Api, assert_error, bearer, register_dataset

F1_OF = {1: 0.80, 2: 0.95, 3: 0.90}


def _setup(api: Api) -> dict[int, int]:
    """AImodel 1.0 in Production with three evaluated runs; PROD takes it. Run ids by number."""
    api.post("/models", {"name": "AImodel"})
    api.post("/models/AImodel/versions", {"version": "1.0"})
    register_dataset(api, "holdout", b"h")
    ids = {}
    for number, f1 in F1_OF.items():
        meta = {"evaluations": [{"dataset": "holdout", "metrics": {"f1": f1}}]}
        got = api.upload_run("AImodel", "1.0", f"model {number}".encode(), meta)
        assert got.status_code == 201, got.json
        ids[number] = got.json["id"]
    for stage in ("Staging", "Production"):
        api.post("/models/AImodel/versions/1.0/transitions", {"stage": stage, "reason": "go"})
    api.put("/environments/PROD")
    policy = {
        "versions": "<=1.0",
        "stages": ["Production"],
        "metric": "f1",
        "dataset": "holdout",
        "reason": "serve 1.0",
    }
    assert api.put("/environments/PROD/policies/AImodel", policy).status_code == 201
    return ids


def test_removing_the_champion_run_promotes_the_next_best_and_records_why(api: Api) -> None:
    ids = _setup(api)
    assert api.get("/environments/PROD/models/AImodel").json["run_id"] == ids[2]

    removed = api.delete(f"/runs/{ids[2]}", {"reason": "trained on leaked data"})

    assert removed.status_code == 200, removed.json
    assert api.get(f"/runs/{ids[2]}").status_code == 404
    assert api.get("/environments/PROD/models/AImodel").json["run_id"] == ids[3]
    latest = api.get("/environments/PROD/models/AImodel/history").json["items"][0]
    assert (latest["from_run_id"], latest["to_run_id"]) == (ids[2], ids[3])
    assert latest["trigger"] == "run_removed"
    assert "leaked data" in latest["detail"]


def test_removing_the_last_eligible_run_is_refused_unless_forced(api: Api) -> None:
    ids = _setup(api)
    for number in (1, 3):
        assert api.delete(f"/runs/{ids[number]}").status_code == 200

    refused = api.delete(f"/runs/{ids[2]}")

    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "would_leave_no_model"
    assert api.get(f"/runs/{ids[2]}").status_code == 200
    assert api.get("/environments/PROD/models/AImodel").json["run_id"] == ids[2]

    assert api.delete(f"/runs/{ids[2]}", {"force": True}).status_code == 200
    gone = api.get("/environments/PROD/models/AImodel")
    assert gone.status_code == 404
    assert gone.json["error"]["code"] == "no_eligible_model"


def test_a_pin_on_a_removed_run_no_longer_holds_the_environment(api: Api) -> None:
    ids = _setup(api)
    pinned = api.put("/environments/PROD/models/AImodel/pin", {"run_id": ids[1], "reason": "rb"})
    assert pinned.status_code == 200
    assert api.get("/environments/PROD/models/AImodel").json["reason"] == "pinned"

    assert api.delete(f"/runs/{ids[1]}").status_code == 200

    champion = api.get("/environments/PROD/models/AImodel").json
    assert (champion["run_id"], champion["reason"]) == (ids[2], "best")
    assert api.delete("/environments/PROD/models/AImodel/pin", {"reason": "rb"}).status_code == 404


def test_a_removed_runs_artifact_is_deleted_unless_another_run_shares_it(
    api: Api, app: Flask
) -> None:
    api.post("/models", {"name": "m"})
    api.post("/models/m/versions", {"version": "1"})
    first = api.upload_run("m", "1", b"same bytes").json
    second = api.upload_run("m", "1", b"same bytes").json
    only = api.upload_run("m", "1", b"other bytes").json
    root = Path(app.extensions["modelreg"].settings.resolved_artifact_root)

    def stored(run: dict) -> bool:  # type: ignore[type-arg]
        sha = run["artifact"]["sha256"]
        return (root / "sha256" / sha[:2] / sha[2:4] / sha).is_file()

    assert api.delete(f"/runs/{first['id']}").status_code == 200
    assert stored(second), "content still used by another run must stay"
    assert api.get(f"/runs/{second['id']}/artifact").data == b"same bytes"
    assert api.delete(f"/runs/{only['id']}").status_code == 200
    assert not stored(only)


def test_run_numbers_are_never_reused_after_a_removal(api: Api) -> None:
    api.post("/models", {"name": "m"})
    api.post("/models/m/versions", {"version": "1"})
    runs = [api.upload_run("m", "1", bytes([i])).json for i in range(3)]
    api.delete(f"/runs/{runs[2]['id']}")

    assert api.upload_run("m", "1", b"again").json["number"] == 4


def test_a_removed_runs_id_is_never_given_to_a_new_run(api: Api) -> None:
    api.post("/models", {"name": "m"})
    api.post("/models/m/versions", {"version": "1"})
    last = api.upload_run("m", "1", b"a").json["id"]
    api.delete(f"/runs/{last}")

    assert api.upload_run("m", "1", b"b").json["id"] > last


# -- removing a version ------------------------------------------------------------------


def _stored(app: Flask, run: dict) -> bool:  # type: ignore[type-arg]
    root = Path(app.extensions["modelreg"].settings.resolved_artifact_root)
    sha = run["artifact"]["sha256"]
    return (root / "sha256" / sha[:2] / sha[2:4] / sha).is_file()


def _audit(api: Api, action: str) -> list[dict]:  # type: ignore[type-arg]
    rows: list[dict] = api.get("/audit", query_string={"action": action}).json["items"]  # type: ignore[type-arg]
    return rows


def test_a_version_without_runs_is_removed_with_204_and_can_be_registered_again(
    api: Api,
) -> None:
    api.post("/models", {"name": "m"})
    api.post("/models/m/versions", {"version": "1.0"})
    api.post("/models/m/versions", {"version": "2.0"})
    release = bearer(api, "release-eng", "release")

    removed = api.delete("/models/m/versions/2.0.0", {"reason": "typo"}, headers=release)

    assert removed.status_code == 204, removed.json
    assert removed.data == b""
    assert_error(api.get("/models/m/versions/2.0"), 404, "not_found")
    assert [v["version"] for v in api.get("/models/m").json["versions"]] == ["1.0"]
    (row,) = _audit(api, "version.delete")
    assert (row["actor"], row["target"], row["reason"]) == (
        "release-eng",
        "models/m/versions/2.0",
        "typo",
    )
    assert row["before"] == {"model": "m", "version": "2.0", "stage": "None", "runs": []}
    assert row["after"] == {"champions": []}
    assert api.post("/models/m/versions", {"version": "2.0"}).status_code == 201
    assert_error(api.delete("/models/m/versions/9.0"), 404, "not_found")
    ci = bearer(api, "pipeline", "ci")
    assert_error(api.delete("/models/m/versions/2.0", headers=ci), 403, "forbidden")


def test_a_version_with_runs_is_refused_with_409_conflict_and_nothing_changes(
    api: Api,
) -> None:
    ids = _setup(api)

    error = assert_error(api.delete("/models/AImodel/versions/1.0"), 409, "conflict")

    assert error["details"] == {"model": "AImodel", "version": "1.0", "runs": sorted(ids.values())}
    assert "force" in error["message"]
    assert all(api.get(f"/runs/{run_id}").status_code == 200 for run_id in ids.values())
    assert api.get("/environments/PROD/models/AImodel").json["run_id"] == ids[2]
    assert _audit(api, "version.delete") == []


def test_forcing_removes_the_runs_and_their_pin_and_moves_the_champion_once(
    api: Api, app: Flask
) -> None:
    ids = _setup(api)
    # An older version in Production that PROD also takes: the successor.
    api.post("/models/AImodel/versions", {"version": "0.9"})
    meta = {"evaluations": [{"dataset": "holdout", "metrics": {"f1": 0.5}}]}
    older = api.upload_run("AImodel", "0.9", b"model 0.9", meta).json
    for stage in ("Staging", "Production"):
        api.post("/models/AImodel/versions/0.9/transitions", {"stage": stage, "reason": "go"})
    pin = {"run_id": ids[1], "reason": "rollback"}
    assert api.put("/environments/PROD/models/AImodel/pin", pin).status_code == 200
    runs = {n: api.get(f"/runs/{run_id}").json for n, run_id in ids.items()}

    removed = api.delete("/models/AImodel/versions/1.0", {"reason": "bad data", "force": True})

    assert removed.status_code == 200, removed.json
    assert removed.json["runs"] == sorted(ids.values())
    assert (removed.json["model"], removed.json["version"], removed.json["deleted"]) == (
        "AImodel",
        "1.0",
        True,
    )
    moved = [
        (c["environment"], c["model"], c["before"], c["after"], c["reason"], c["changed"])
        for c in removed.json["champions"]
    ]
    assert moved == [("PROD", "AImodel", ids[1], older["id"], "best", True)]
    assert_error(api.get("/models/AImodel/versions/1.0"), 404, "not_found")
    assert all(api.get(f"/runs/{run_id}").status_code == 404 for run_id in ids.values())
    assert not any(_stored(app, run) for run in runs.values())
    champion = api.get("/environments/PROD/models/AImodel").json
    assert (champion["run_id"], champion["reason"]) == (older["id"], "best")
    assert_error(api.get("/environments/PROD/models/AImodel/pin"), 404, "not_found")
    # One history row, from the pinned run straight to the successor: no stop on a sibling.
    latest, before = api.get("/environments/PROD/models/AImodel/history").json["items"][:2]
    assert (latest["from_run_id"], latest["to_run_id"]) == (ids[1], older["id"])
    assert (latest["trigger"], before["to_run_id"]) == ("version_removed", ids[1])
    assert "bad data" in latest["detail"]
    (row,) = _audit(api, "version.delete")
    assert [r["id"] for r in row["before"]["runs"]] == sorted(ids.values())
    assert row["after"] == {
        "champions": [{"environment": "PROD", "from_run_id": ids[1], "to_run_id": older["id"]}]
    }


def test_forcing_may_leave_an_environment_with_nothing_to_serve_as_forcing_a_run_removal_does(
    api: Api,
) -> None:
    ids = _setup(api)

    removed = api.delete("/models/AImodel/versions/1.0", {"reason": "withdrawn", "force": True})

    assert removed.status_code == 200, removed.json
    assert [(c["before"], c["after"]) for c in removed.json["champions"]] == [(ids[2], None)]
    assert_error(api.get("/environments/PROD/models/AImodel"), 404, "no_eligible_model")
