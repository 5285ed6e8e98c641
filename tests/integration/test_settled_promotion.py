"""When champions move: settling while runs are scored, and upkeep that does not re-rank.

A burst of retrains is scored by a real worker (process level: isolation is not
the subject here) and the champion moves once; a change held past the settle
limit is decided over what is scored. The incremental upkeep is cross-checked
against a full ranking (``explain``) after every step of a long random sequence.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sklearn import metrics as skm
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

from modelreg.environments import settling
from modelreg.evaluation.sandbox import Sandbox
from modelreg.evaluation.worker import Worker
from tests.integration.conftest import (
    Api,
    champion,
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
from tests.integration.test_evaluation_jobs import (
    Split,
    dumped,
    register,
    setup_model,
    upload_dataset,
)
from tests.integration.test_evaluation_jobs import wine as wine  # a fixture


@pytest.fixture
def worker(app: Flask) -> Iterator[Worker]:
    c = app.extensions["modelreg"]
    sandbox = Sandbox(timeout=20, cpu_seconds=20, memory_mb=2048, renew_every=1)
    yield Worker(c.db, c.store, c.settings, executor=sandbox, name="test-worker")


def ascending_models(wine: Split, n: int) -> list[tuple[Any, float]]:
    """``n`` classifiers with distinct weighted F1 on the held-out split, worst first."""
    found: dict[float, Any] = {}
    for depth in range(1, 12):
        for model in (
            DecisionTreeClassifier(max_depth=depth, random_state=0),
            RandomForestClassifier(n_estimators=depth, max_depth=depth, random_state=0),
        ):
            model.fit(wine.X_train, wine.y_train)
            f1 = skm.f1_score(wine.y_test, model.predict(wine.X_test), average="weighted")
            found.setdefault(round(f1, 9), model)
    values = sorted(found)
    picked = [values[round(i * (len(values) - 1) / (n - 1))] for i in range(n)]
    assert len(set(picked)) == n, values
    return [(found[v], v) for v in picked]


def test_a_burst_of_retrains_moves_the_champion_once_to_the_best(
    api: Api, worker: Worker, wine: Split
) -> None:
    setup_model(api)
    upload_dataset(api, "wine-holdout", wine.csv())
    put_policy(api, "INT", "AImodel", dataset="wine-holdout")
    models = ascending_models(wine, 4)
    runs = [register(api, dumped(m) + bytes([i])) for i, (m, _) in enumerate(models)]

    waiting = api.get("/environments/INT/models/AImodel")
    assert waiting.status_code == 404
    assert waiting.get_json()["error"]["details"]["pending_evaluations"] == 4
    explained = api.get("/environments/INT/models/AImodel/explain").get_json()
    assert explained["pending_evaluations"] == 4

    # Scored one by one, worst first: each result alone would have moved the champion.
    assert worker.run(until_idle=True) == 4

    moves = history(api, "INT", "AImodel")
    assert [(h["from_run_id"], h["to_run_id"]) for h in moves] == [(None, runs[-1]["id"])]
    served = champion(api, "INT", "AImodel")
    assert served is not None
    assert served["run_id"] == runs[-1]["id"]
    assert abs(served["metric"]["value"] - models[-1][1]) < 1e-9
    assert (served["held"], served["pending_evaluations"]) == (False, 0)


def test_a_change_held_past_the_settle_limit_is_decided_over_what_is_scored(
    app: Flask, api: Api, worker: Worker, wine: Split
) -> None:
    db = app.extensions["modelreg"].db
    db.settle_seconds = 1
    setup_model(api)
    upload_dataset(api, "wine-holdout", wine.csv())
    put_policy(api, "INT", "AImodel", dataset="wine-holdout")
    (worst, _), (better, _), (best, _) = ascending_models(wine, 3)
    first = register(api, dumped(worst))
    worker.run(until_idle=True)
    before = champion(api, "INT", "AImodel")
    assert before is not None and before["run_id"] == first["id"]

    challenger = register(api, dumped(better))
    register(api, dumped(best))  # its job stays pending: no worker takes it
    processed = worker.run_once()
    assert processed is not None and processed.state == "succeeded"

    held = champion(api, "INT", "AImodel")
    assert held is not None
    assert (held["run_id"], held["held"], held["pending_evaluations"]) == (first["id"], True, 1)
    explained = api.get("/environments/INT/models/AImodel/explain").get_json()
    assert explained["champion"] == first["id"]
    assert explained["decision"]["champion"] == challenger["id"]

    time.sleep(1.2)
    assert settling.release_expired_holds(db, actor="test") == 1

    after = champion(api, "INT", "AImodel")
    assert after is not None
    assert (after["run_id"], after["held"], after["pending_evaluations"]) == (
        challenger["id"],
        False,
        1,
    )
    latest = history(api, "INT", "AImodel")[0]
    assert latest["to_run_id"] == challenger["id"]
    assert "settle limit of 1 s reached with 1 evaluation(s) pending" in latest["detail"]


def test_a_pin_is_never_held_by_pending_evaluations(api: Api, worker: Worker, wine: Split) -> None:
    setup_model(api)
    upload_dataset(api, "wine-holdout", wine.csv())
    put_policy(api, "INT", "AImodel", dataset="wine-holdout")
    (weak, _), (strong, _) = ascending_models(wine, 2)
    rollback = register(api, dumped(weak))
    register(api, dumped(strong))
    worker.run(until_idle=True)
    register(api, dumped(strong) + b"retrain")  # pending

    pinned = api.put(
        "/environments/INT/models/AImodel/pin", {"run_id": rollback["id"], "reason": "incident"}
    )

    assert pinned.status_code == 200, pinned.get_json()
    served = champion(api, "INT", "AImodel")
    assert served is not None and served["run_id"] == rollback["id"]
    assert served["held"] is False


# -- incremental upkeep against a full ranking --------------------------------------------


def assert_upkeep_matches_a_full_ranking(api: Api, env: str) -> None:
    served = champion(api, env, "AImodel")
    full = api.get(f"/environments/{env}/models/AImodel/explain").get_json()
    assert (served["run_id"] if served else None) == full["decision"]["champion"], full


@pytest.mark.parametrize("seed", [1, 2])
def test_incremental_upkeep_chooses_what_a_full_ranking_chooses_at_every_step(
    api: Api, seed: int
) -> None:
    rng = random.Random(seed)
    create_model(api, "AImodel")
    versions = ["1.0", "1.1", "2.0", "2.1rc1"]
    for v in versions:
        create_version(api, "AImodel", v, "Staging")
    register_dataset(api)
    for env in ("INT", "PROD"):
        put_environment(api, env)
    put_policy(api, "INT", "AImodel", min_improvement=0.02, allow_prereleases=True)
    put_policy(api, "PROD", "AImodel", versions="<2.0", stages=["Production"], min_value=0.3)
    stages = dict.fromkeys(versions, "Staging")
    unevaluated: list[int] = []
    runs: list[int] = []
    for _ in range(70):
        step = rng.random()
        if step < 0.45 or not runs:  # a retrain, usually with its reported value
            value = {"f1": round(rng.uniform(0.2, 0.95), 2)} if rng.random() < 0.8 else None
            run = create_run(api, "AImodel", rng.choice(versions), value)
            runs.append(run["id"])
            if value is None:
                unevaluated.append(run["id"])
        elif step < 0.65 and unevaluated:  # its value arrives later
            run_id = unevaluated.pop(rng.randrange(len(unevaluated)))
            response = evaluate(api, run_id, {"f1": round(rng.uniform(0.2, 0.95), 2)})
            assert response.status_code == 201, response.get_json()
        elif step < 0.85:  # a release engineer moves a version
            version = rng.choice(versions[:3])
            stage = "Staging" if stages[version] == "Production" else "Production"
            moved = move_to(api, "AImodel", version, stage, force=True)
            assert moved.status_code == 200, moved.get_json()
            stages[version] = stage
        elif step < 0.95:  # a run is removed
            run_id = runs.pop(rng.randrange(len(runs)))
            if run_id in unevaluated:
                unevaluated.remove(run_id)
            response = api.delete(f"/runs/{run_id}", {"reason": "cleanup", "force": True})
            assert response.status_code in (200, 204), response.get_json()
        else:  # the tolerance moves
            tolerance = rng.choice(["<2.0", "", "<=1.0"])
            changed = put_policy(
                api,
                "PROD",
                "AImodel",
                versions=tolerance,
                stages=["Production"],
                min_value=0.3,
                force=True,
            )
            assert changed.status_code == 200, changed.get_json()
        for env in ("INT", "PROD"):
            assert_upkeep_matches_a_full_ranking(api, env)
