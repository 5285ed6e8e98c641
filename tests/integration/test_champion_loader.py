"""The serving layer's ``ChampionLoader`` on the real app and database, in-process.

The loader's registry sends through a session of its own (tests/integration/in_process.py),
and its requests are counted with a response hook on that session, so "an unchanged
champion downloads nothing" is measured, not assumed. What needs real HTTP (an outage
and a restart, a download cut short, a stand-in registry) is in
tests/e2e/test_champion_loader.py.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from modelreg.client import ChampionLoader, FormatNotAllowed, NotFound, Registry
from tests.client_helpers import counted, f1_of, forest
from tests.e2e.test_wine_scenario import Holdout, wine_holdout

ENV = "PROD"
DATASET = "serving-holdout"

Connect = Callable[..., Registry]


@pytest.fixture(scope="module")
def holdout() -> Holdout:
    return wine_holdout()


class Publisher:
    """The CI and release side: one model served in ``PROD`` by its best f1."""

    def __init__(self, registry: Registry, model: str, holdout: Holdout) -> None:
        self.registry = registry
        self.model = model
        self.holdout = holdout
        self.registry.register_dataset(
            DATASET, hashlib.sha256(holdout.csv_bytes).hexdigest(), "wine, held out"
        )
        self.registry.put_environment(ENV)

    def publish(self, n_estimators: int, seed: int) -> tuple[int, RandomForestClassifier]:
        """A new run, scored on the held-out set; the policy is created with the first."""
        estimator = forest(self.holdout, n_estimators, seed)
        run = self.registry.register_run(
            self.model,
            "1.0",
            estimator,
            metrics={"f1": f1_of(estimator, self.holdout)},
            dataset=DATASET,
            progress=False,
        )
        try:
            self.registry.policy(ENV, self.model)
        except NotFound:
            self.registry.put_policy(
                ENV, self.model, metric="f1", dataset=DATASET, stages=["None"], reason="serve"
            )
        return run.id, estimator

    def serving(self) -> int:
        champion = self.registry.champion(ENV, self.model)
        assert champion.run_id is not None
        return champion.run_id


@pytest.fixture
def new_loader(connect: Connect) -> Callable[..., ChampionLoader]:
    """``new_loader(model, cache)``: a loader with a registry (and a session) of its own."""

    def make(model: str, cache: Path, **options: Any) -> ChampionLoader:
        registry = connect()
        return ChampionLoader(
            registry.url, ENV, model, registry=registry, cache_dir=cache, **options
        )

    return make


def same_predictions(a: Any, b: Any, holdout: Holdout) -> bool:
    return bool(np.array_equal(a.predict(holdout.x_test), b.predict(holdout.x_test)))


def test_load_returns_a_working_champion_and_an_unchanged_champion_downloads_nothing(
    registry: Registry, new_loader: Any, holdout: Holdout, tmp_path: Path
) -> None:
    publisher = Publisher(registry, "Served", holdout)
    run_id, estimator = publisher.publish(5, seed=0)
    loader = new_loader("Served", tmp_path / "cache")
    log = counted(loader, ENV)

    model = loader.load()
    assert same_predictions(model, estimator, holdout)
    assert loader.champion is not None and loader.champion.run_id == run_id
    assert loader.load() is model
    assert log.artifact_downloads() == 1

    for _ in range(3):
        assert loader.refresh() is False
    assert loader.load() is model
    assert log.artifact_downloads() == 1
    assert log.champion_polls() == [200, 304, 304, 304]

    sha = loader.champion.sha256
    cached = tmp_path / "cache" / "sha256" / sha
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha
    assert len(list((tmp_path / "cache").glob("champion-*.json"))) == 1


def test_a_better_run_is_picked_up_by_refresh_and_a_rollback_is_served_from_the_cache(
    registry: Registry, new_loader: Any, holdout: Holdout, tmp_path: Path
) -> None:
    publisher = Publisher(registry, "Improving", holdout)
    weak_id, weak = publisher.publish(1, seed=1)
    loader = new_loader("Improving", tmp_path / "cache")
    log = counted(loader, ENV)
    assert same_predictions(loader.load(), weak, holdout)

    strong_id, strong = publisher.publish(50, seed=2)
    assert publisher.serving() == strong_id, "the stronger run must win"
    assert loader.refresh() is True
    assert loader.champion is not None and loader.champion.run_id == strong_id
    assert same_predictions(loader.load(), strong, holdout)
    assert loader.refresh() is False
    assert log.artifact_downloads() == 2

    # A pin back to the weak run: its bytes are in the cache already.
    publisher.registry.pin(ENV, "Improving", weak_id, reason="rollback")
    assert loader.refresh() is True
    assert same_predictions(loader.load(), weak, holdout)
    publisher.registry.unpin(ENV, "Improving", reason="fixed")
    assert loader.refresh() is True
    assert same_predictions(loader.load(), strong, holdout)
    assert log.artifact_downloads() == 2
    assert sorted(p.name for p in (tmp_path / "cache" / "sha256").iterdir()) == sorted(
        {publisher.registry.run(weak_id).sha256, publisher.registry.run(strong_id).sha256}
    )


def test_a_corrupted_cached_artifact_is_downloaded_again_and_an_intact_one_is_reused(
    registry: Registry, new_loader: Any, holdout: Holdout, tmp_path: Path
) -> None:
    publisher = Publisher(registry, "Cached", holdout)
    _, estimator = publisher.publish(5, seed=0)
    cache = tmp_path / "cache"
    first = new_loader("Cached", cache)
    first.load()
    assert first.champion is not None
    sha = first.champion.sha256

    reused = new_loader("Cached", cache)
    reused_log = counted(reused, ENV)
    assert same_predictions(reused.load(), estimator, holdout)
    assert reused_log.artifact_downloads() == 0

    cached = cache / "sha256" / sha
    cached.write_bytes(b"not a model: flipped bits on disk")
    again = new_loader("Cached", cache)
    again_log = counted(again, ENV)
    assert same_predictions(again.load(), estimator, holdout)
    assert again_log.artifact_downloads() == 1
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha
    assert not [p for p in cached.parent.iterdir() if p.name != sha]  # no partial files


def test_eight_threads_loading_and_refreshing_at_once_share_one_model_and_one_download(
    registry: Registry, new_loader: Any, holdout: Holdout, tmp_path: Path
) -> None:
    publisher = Publisher(registry, "Threaded", holdout)
    run_id, estimator = publisher.publish(5, seed=0)
    loader = new_loader("Threaded", tmp_path / "cache")
    log = counted(loader, ENV)
    barrier = threading.Barrier(8)
    models: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def serve() -> None:
        try:
            barrier.wait(timeout=30)
            seen = [loader.load()]
            for _ in range(3):
                loader.refresh()
                seen.append(loader.load())
            with lock:
                models.extend(seen)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=serve) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(models) == 32
    assert len({id(m) for m in models}) == 1
    assert same_predictions(models[0], estimator, holdout)
    assert loader.champion is not None and loader.champion.run_id == run_id
    assert log.artifact_downloads() == 1


def test_the_served_champion_names_its_format_and_a_strict_loader_takes_only_skops(
    registry: Registry, new_loader: Any, holdout: Holdout, tmp_path: Path
) -> None:
    import skops.io as sio

    publisher = Publisher(registry, "Formats", holdout)
    publisher.publish(3, seed=0)
    strict = new_loader(
        "Formats",
        tmp_path / "cache",
        allow_pickle=False,
        skops_trusted=["sklearn.tree._tree.Tree"],
    )
    log = counted(strict, ENV)
    with pytest.raises(FormatNotAllowed, match="joblib artifact"):
        strict.load()
    assert log.artifact_downloads() == 0

    estimator = forest(holdout, 4, 1)
    path = tmp_path / "forest.skops"
    sio.dump(estimator, path)
    registry.register_run(
        "Formats", "1.0", path, metrics={"f1": 0.0}, dataset=DATASET, progress=False
    )
    registry.put_policy(
        ENV,
        "Formats",
        metric="f1",
        dataset=DATASET,
        stages=["None"],
        formats=["skops"],
        reason="no pickles in PROD",
        if_match=registry.policy(ENV, "Formats").revision,
    )
    served = registry.champion(ENV, "Formats")
    assert (served.format, served.allowed_formats) == ("skops", ("skops",))
    assert same_predictions(strict.load(), estimator, holdout)
