"""The article's scenario, end to end over HTTP, on SQLite and PostgreSQL.

A wine classifier is retrained with different hyper-parameters; every retrain is
registered as a run of ``AImodel`` with its weighted F1 on a held-out split.
PROD tolerates versions ``<=1.0`` in Production, INT ``<=2.0`` in Staging or
Production; each serves its best eligible run. Which run that is, is computed
here from the F1 values, never hard-coded.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from packaging.version import Version
from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

MODEL = "AImodel"
DATASET = "wine-holdout"
SPLIT_SEED = 42
FOREST_SEED = 0
# (n_estimators, max_features) of every retrain, per version of the model's code.
RETRAINS: dict[str, list[tuple[int, float | str]]] = {
    "1.0": [(1, 0.1), (1, 0.5), (100, 0.5)],
    "2.0": [(20, "sqrt"), (200, "sqrt")],
}


@dataclass(frozen=True)
class Holdout:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    csv_bytes: bytes


@dataclass(frozen=True)
class Registered:
    run_id: int
    version: str
    number: int
    f1: float
    sha256: str
    params: dict[str, Any]


def wine_holdout() -> Holdout:
    data = load_wine()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.5, stratify=data.target, random_state=SPLIT_SEED
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*data.feature_names, "target"])
    for features, target in zip(x_test, y_test, strict=True):
        writer.writerow([*(repr(float(v)) for v in features), int(target)])
    return Holdout(x_train, y_train, x_test, y_test, out.getvalue().encode())


def weighted_f1(model: Any, holdout: Holdout) -> float:
    return float(f1_score(holdout.y_test, model.predict(holdout.x_test), average="weighted"))


def best(runs: list[Registered]) -> Registered:
    """The contract's ranking: better F1, then higher version, then higher run number."""
    return max(runs, key=lambda r: (r.f1, Version(r.version), r.number))


def train_and_register(
    server: Server, holdout: Holdout, version: str, tmp_path: Path
) -> list[Registered]:
    registered = []
    for n_estimators, max_features in RETRAINS[version]:
        forest = RandomForestClassifier(
            n_estimators=n_estimators, max_features=max_features, random_state=FOREST_SEED
        ).fit(holdout.x_train, holdout.y_train)
        f1 = weighted_f1(forest, holdout)
        path = tmp_path / f"forest-{version}-{n_estimators}-{max_features}.joblib"
        joblib.dump(forest, path)
        params = {
            "n_estimators": n_estimators,
            "max_features": max_features,
            "random_state": FOREST_SEED,
        }
        content = path.read_bytes()
        run = server.expect(
            server.register_run(
                MODEL,
                version,
                content,
                {
                    "params": params,
                    "tags": {"estimator": "RandomForestClassifier"},
                    "source": {"pipeline": "e2e-wine", "split_seed": SPLIT_SEED},
                    "expected_sha256": hashlib.sha256(content).hexdigest(),
                    "evaluations": [{"dataset": DATASET, "metrics": {"f1": f1}}],
                },
                filename=path.name,
            ),
            201,
        )
        assert run["artifact"]["sha256"] == hashlib.sha256(content).hexdigest()
        assert run["artifact"]["size"] == len(content)
        assert run["artifact"]["format"] == "joblib"
        registered.append(
            Registered(run["id"], version, run["number"], f1, run["artifact"]["sha256"], params)
        )
    assert [r.number for r in registered] == list(range(1, len(registered) + 1))
    return registered


def transition(server: Server, version: str, stage: str) -> dict[str, Any]:
    return server.expect(
        server.session.post(
            server.api(f"/models/{MODEL}/versions/{version}/transitions"),
            json={"stage": stage, "reason": f"e2e: {version} to {stage}"},
        ),
        200,
    )


def champion(server: Server, env: str) -> dict[str, Any]:
    return server.expect(server.session.get(server.api(f"/environments/{env}/models/{MODEL}")), 200)


def assert_serves(server: Server, env: str, expected: Registered, dataset_label: str) -> None:
    doc = champion(server, env)
    assert (doc["run_id"], doc["version"], doc["run_number"]) == (
        expected.run_id,
        expected.version,
        expected.number,
    ), f"{env} serves {doc}, expected run {expected}"
    assert doc["environment"] == env
    assert doc["model"] == MODEL
    assert doc["metric"] == {"name": "f1", "value": expected.f1, "dataset": dataset_label}
    assert doc["artifact"]["sha256"] == expected.sha256
    assert doc["artifact"]["url"].endswith(f"/runs/{expected.run_id}/artifact")
    assert doc["reason"] == "best"


def test_each_environment_serves_its_best_tolerated_wine_model_and_follows_promotions(
    server: Server, tmp_path: Path
) -> None:
    s = server.session
    holdout = wine_holdout()

    dataset = server.expect(
        s.post(
            server.api("/datasets"),
            json={
                "name": DATASET,
                "sha256": hashlib.sha256(holdout.csv_bytes).hexdigest(),
                "description": f"load_wine, stratified 50% held out, random_state={SPLIT_SEED}",
            },
        ),
        201,
    )
    label = dataset["label"]
    assert label == f"{DATASET}@1"
    server.expect(s.post(server.api("/models"), json={"name": MODEL}), 201)

    # Version 1.0 and its retrains, then None -> Staging -> Production.
    server.expect(s.post(server.api(f"/models/{MODEL}/versions"), json={"version": "1.0"}), 201)
    runs_1 = train_and_register(server, holdout, "1.0", tmp_path)
    assert transition(server, "1.0", "Staging")["version"]["stage"] == "Staging"
    assert transition(server, "1.0", "Production")["version"]["stage"] == "Production"

    # Version 2.0, better models, to Staging.
    server.expect(s.post(server.api(f"/models/{MODEL}/versions"), json={"version": "2.0"}), 201)
    runs_2 = train_and_register(server, holdout, "2.0", tmp_path)
    assert transition(server, "2.0", "Staging")["version"]["stage"] == "Staging"

    best_1, best_overall = best(runs_1), best(runs_1 + runs_2)
    # The data must make the scenario meaningful: 2.0 brings a better model.
    assert best_overall.version == "2.0" and best_overall.f1 > best_1.f1, (runs_1, runs_2)

    for env in ("PROD", "INT"):
        server.expect(s.put(server.api(f"/environments/{env}"), json={"description": env}), 201)
    prod_policy = {
        "versions": "<=1.0",
        "stages": ["Production"],
        "metric": "f1",
        "dataset": DATASET,
        "reason": "PROD serves released 1.x models",
    }
    created = server.expect(
        s.put(server.api(f"/environments/PROD/policies/{MODEL}"), json=prod_policy), 201
    )
    assert created["revision"] == 1
    assert created["dataset"] == label
    assert created["direction"] == "max"
    int_policy = {
        "versions": "<=2.0",
        "stages": ["Staging", "Production"],
        "metric": "f1",
        "dataset": DATASET,
        "reason": "INT tries release candidates",
    }
    server.expect(s.put(server.api(f"/environments/INT/policies/{MODEL}"), json=int_policy), 201)

    assert_serves(server, "PROD", best_1, label)
    assert_serves(server, "INT", best_overall, label)

    # The serving layer downloads PROD's champion and gets the very model that was scored.
    prod = champion(server, "PROD")
    download = s.get(server.absolute(prod["artifact"]["url"]))
    server.expect(download, 200)
    assert hashlib.sha256(download.content).hexdigest() == prod["artifact"]["sha256"]
    assert download.headers["ETag"].strip('"') == prod["artifact"]["sha256"]
    assert len(download.content) == prod["artifact"]["size"]
    downloaded = tmp_path / "prod-champion.joblib"
    downloaded.write_bytes(download.content)
    model = joblib.load(downloaded)
    assert model.get_params()["n_estimators"] == best_1.params["n_estimators"]
    assert weighted_f1(model, holdout) == best_1.f1 == prod["metric"]["value"]

    # Polling: an unchanged champion is a 304, also after a transition that does not move it.
    first = s.get(server.api(f"/environments/PROD/models/{MODEL}"))
    assert server.expect(first, 200)["run_id"] == best_1.run_id
    etag = first.headers["ETag"]
    unchanged = s.get(
        server.api(f"/environments/PROD/models/{MODEL}"), headers={"If-None-Match": etag}
    )
    assert unchanged.status_code == 304, unchanged.text
    assert unchanged.content == b""

    assert transition(server, "2.0", "Production")["version"]["stage"] == "Production"
    assert_serves(server, "PROD", best_1, label)  # still <=1.0
    assert_serves(server, "INT", best_overall, label)
    still = s.get(server.api(f"/environments/PROD/models/{MODEL}"), headers={"If-None-Match": etag})
    assert still.status_code == 304, still.text

    # The release engineer widens PROD, naming the revision they saw.
    current = s.get(server.api(f"/environments/PROD/policies/{MODEL}"))
    seen = server.expect(current, 200)["revision"]
    assert current.headers["ETag"] == f'"{seen}"'
    widened = server.expect(
        s.put(
            server.api(f"/environments/PROD/policies/{MODEL}"),
            json={**prod_policy, "versions": "<=2.0", "reason": "2.0 is released"},
            headers={"If-Match": current.headers["ETag"]},
        ),
        200,
    )
    assert widened["revision"] == seen + 1
    assert widened["versions"] == "<=2.0"
    assert widened["champion_changed"] is True
    assert widened["champion"]["run_id"] == best_overall.run_id
    # Someone who still holds the old revision is told so instead of overwriting.
    stale = s.put(
        server.api(f"/environments/PROD/policies/{MODEL}"),
        json={**prod_policy, "reason": "stale write"},
        headers={"If-Match": f'"{seen}"'},
    )
    assert server.expect(stale, 412)["error"]["code"] == "precondition_failed"

    assert_serves(server, "PROD", best_overall, label)
    changed = s.get(
        server.api(f"/environments/PROD/models/{MODEL}"), headers={"If-None-Match": etag}
    )
    server.expect(changed, 200)
    assert changed.headers["ETag"] != etag
    assert changed.json()["run_id"] == best_overall.run_id
    assert changed.json()["policy_revision"] == seen + 1

    # History, newest first: nothing -> best 1.0 (policy created), best 1.0 -> best 2.0 (widened).
    history = server.expect(s.get(server.api(f"/environments/PROD/models/{MODEL}/history")), 200)
    assert history["next_page_token"] is None
    moves = [(h["from_run_id"], h["to_run_id"]) for h in history["items"]]
    assert moves == [(best_1.run_id, best_overall.run_id), (None, best_1.run_id)]
    assert [h["reason"] for h in history["items"]] == ["best", "best"]
    assert history["items"][0]["at"] >= history["items"][1]["at"]

    # INT only ever moved once: straight to the best run overall.
    int_history = server.expect(s.get(server.api(f"/environments/INT/models/{MODEL}/history")), 200)
    assert [(h["from_run_id"], h["to_run_id"]) for h in int_history["items"]] == [
        (None, best_overall.run_id)
    ]

    # Every environment's champion, as the model's page shows it.
    champions = server.expect(s.get(server.api(f"/models/{MODEL}/champions")), 200)["items"]
    assert {c["environment"]: c["run_id"] for c in champions} == {
        "INT": best_overall.run_id,
        "PROD": best_overall.run_id,
    }
