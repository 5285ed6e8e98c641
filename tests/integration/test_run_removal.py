"""Removing a run moves the champions it held, in the same transaction."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from tests.integration.conftest import Api, register_dataset

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
