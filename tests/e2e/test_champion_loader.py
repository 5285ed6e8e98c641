"""The serving layer's ``ChampionLoader`` where real HTTP matters.

Loading, refreshing, caching and format checks on the real app are in-process in
tests/integration/test_champion_loader.py. Here: an outage (the test stops its own
``modelreg serve``, then starts a new one on the same port, database and artifact
store), and a stand-in registry on a socket that cuts a download short or serves a
champion in a format its policy forbids. Requests are counted with a response hook
on the loader's own session.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from modelreg.client import ChampionLoader, FormatNotAllowed, NotFound, Registry, Unreachable
from tests.client_helpers import counted, f1_of, forest
from tests.e2e.conftest import ADMIN_TOKEN, Server, TimeoutSession, launch
from tests.e2e.test_client import module_database, start_live_server
from tests.e2e.test_wine_scenario import Holdout, wine_holdout

pytestmark = pytest.mark.e2e

ENV = "PROD"
DATASET = "serving-holdout"
LOGGER = "modelreg.loader"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
) -> Iterator[str]:
    """Overrides the per-test database: one database for the module's tests."""
    yield from module_database(request, tmp_path_factory, sqlite_template)


@pytest.fixture(scope="module")
def holdout() -> Holdout:
    return wine_holdout()


def new_loader(server: Server, model: str, cache: Path) -> ChampionLoader:
    return ChampionLoader(server.url, ENV, model, token=ADMIN_TOKEN, cache_dir=cache, timeout=10)


class Publisher:
    """The CI and release side: one model served in ``PROD`` by its best f1."""

    def __init__(self, server: Server, model: str, holdout: Holdout) -> None:
        self.registry = Registry(server.url, ADMIN_TOKEN)
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


def same_predictions(a: Any, b: Any, holdout: Holdout) -> bool:
    return bool(np.array_equal(a.predict(holdout.x_test), b.predict(holdout.x_test)))


def test_during_a_registry_outage_the_cached_champion_is_served_and_polling_resumes_after(
    database_url: str,
    holdout: Holdout,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    base = tmp_path_factory.mktemp("outage-server")
    server, environ = start_live_server(database_url, base)
    restarted: Server | None = None
    try:
        publisher = Publisher(server, "Resilient", holdout)
        run_id, estimator = publisher.publish(5, seed=0)
        cache = tmp_path / "cache"
        loader = new_loader(server, "Resilient", cache)
        model = loader.load()
        publisher.registry.close()

        os.killpg(server.proc.process.pid, signal.SIGKILL)  # the registry crashes
        server.close()  # reaps it; nothing is left to stop
        caplog.clear()
        assert loader.refresh() is False
        assert loader.offline is True
        assert loader.load() is model
        assert same_predictions(model, estimator, holdout)
        warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
        assert warnings and "unreachable" in warnings[0].getMessage(), caplog.text
        assert str(run_id) in warnings[0].getMessage()

        # A serving process that starts now serves the last champion it knew, from disk.
        caplog.clear()
        started = new_loader(server, "Resilient", cache)
        assert same_predictions(started.load(), estimator, holdout)
        assert started.champion is not None and started.champion.run_id == run_id
        assert started.offline is True
        assert "serving cached" in caplog.text and "unreachable" in caplog.text
        # ... but never a cache it cannot verify, nor nothing at all.
        with pytest.raises(Unreachable):
            new_loader(server, "Resilient", tmp_path / "empty-cache").load()
        broken = tmp_path / "broken-cache"
        new_cache_file = broken / "sha256" / started.champion.sha256
        new_cache_file.parent.mkdir(parents=True)
        for state in cache.glob("champion-*.json"):
            (broken / state.name).write_bytes(state.read_bytes())
        new_cache_file.write_bytes(b"truncated")
        with pytest.raises(Unreachable):
            new_loader(server, "Resilient", broken).load()

        # The registry comes back on the same address, database and artifact store.
        restarted = restart(server, environ, base)
        caplog.clear()
        log = counted(loader, ENV)
        assert loader.refresh() is False  # unchanged: a 304
        assert loader.offline is False
        assert "reachable again" in caplog.text
        assert log.champion_polls() == [304]
        started_log = counted(started, ENV)
        assert started.refresh() is False  # same bytes as it had cached: no download
        assert started.offline is False
        assert started_log.artifact_downloads() == 0

        publisher = Publisher(restarted, "Resilient", holdout)
        better_id, better = publisher.publish(50, seed=2)
        assert publisher.serving() == better_id
        assert loader.refresh() is True
        assert same_predictions(loader.load(), better, holdout)
        assert log.artifact_downloads() == 1
        publisher.registry.close()
    finally:
        server.close()
        if restarted is not None:
            restarted.close()


def restart(server: Server, environ: dict[str, str], base: Path) -> Server:
    """A new ``modelreg serve`` on the stopped ``server``'s port, database and data."""
    port = int(urlsplit(server.url).port or 0)
    command = Path(sys.executable).with_name("modelreg")
    proc = launch(
        [str(command), "serve", "--host", "127.0.0.1", "--workers", "2", "--port", str(port)],
        cwd=server.workdir,
        env=environ,
        port=port,
        log_path=base / "server-restarted.log",
    )
    return Server(
        url=proc.url,
        session=TimeoutSession(),
        proc=proc,
        database_url=server.database_url,
        artifact_root=server.artifact_root,
        workdir=server.workdir,
        workers=2,
    )


# -- a download cut short ----------------------------------------------------------------
# A real server cannot be made to die in the middle of a body on cue: a stand-in
# registry answers the champion and sends half of an artifact, then hangs up.


@dataclass
class FakeRegistry:
    champion: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[int, bytes] = field(default_factory=dict)
    cut_short: set[int] = field(default_factory=set)

    def serve(self, run_id: int, content: bytes) -> None:
        sha = hashlib.sha256(content).hexdigest()
        self.artifacts[run_id] = content
        self.champion = {
            "environment": ENV,
            "model": "Fake",
            "version": "1.0",
            "run_id": run_id,
            "run_number": run_id,
            "metric": {"name": "f1", "value": 0.5, "dataset": "d@1"},
            "artifact": {"url": f"/api/v1/runs/{run_id}/artifact", "sha256": sha},
            "reason": "best",
            "policy_revision": 1,
        }


@contextlib.contextmanager
def fake_registry(state: FakeRegistry) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.endswith("/artifact"):
                run_id = int(self.path.split("/")[-2])
                content = state.artifacts[run_id]
                self.send_response(200)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if run_id in state.cut_short:
                    self.wfile.write(content[: len(content) // 2])
                    self.close_connection = True
                else:
                    self.wfile.write(content)
                return
            etag = f'"{state.champion["run_id"]}"'
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            body = json.dumps(state.champion).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def dumped(value: Any) -> bytes:
    out = io.BytesIO()
    joblib.dump(value, out)
    return out.getvalue()


def test_a_download_cut_short_is_an_outage_that_keeps_the_cached_model_and_leaves_no_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    state = FakeRegistry()
    state.serve(1, dumped({"model": "first", "padding": bytes(200_000)}))
    with fake_registry(state) as url:
        loader = ChampionLoader(url, ENV, "Fake", cache_dir=tmp_path / "cache", timeout=10)
        assert loader.load()["model"] == "first"

        state.serve(2, dumped({"model": "second", "padding": bytes(300_000)}))
        state.cut_short.add(2)
        assert loader.refresh() is False
        assert loader.load()["model"] == "first"
        assert loader.offline is True
        assert "unreachable" in caplog.text and "cut short" in caplog.text

        with Registry(url) as registry:
            target = tmp_path / "direct" / "artifact.bin"
            with pytest.raises(Unreachable, match="cut short"):
                registry.download_artifact(2, target)
            assert list(target.parent.iterdir()) == []  # no partial file

        state.cut_short.clear()  # the network heals
        assert loader.refresh() is True
        assert loader.load()["model"] == "second"
        assert loader.offline is False
    cached = sorted(p.name for p in (tmp_path / "cache" / "sha256").iterdir())
    assert cached == sorted(hashlib.sha256(c).hexdigest() for c in state.artifacts.values())


# -- formats: only code that may run, runs --------------------------------------------------


def test_a_champion_in_a_format_its_policy_forbids_is_refused_before_any_download(
    tmp_path: Path,
) -> None:
    state = FakeRegistry()
    state.serve(1, dumped({"model": "first"}))
    state.champion["artifact"]["format"] = "joblib"
    state.champion["allowed_formats"] = []
    with fake_registry(state) as url:
        loader = ChampionLoader(url, ENV, "Fake", cache_dir=tmp_path / "cache", timeout=10)
        assert loader.load()["model"] == "first"

        state.serve(2, dumped({"model": "second"}))
        state.champion["artifact"]["format"] = "joblib"
        state.champion["allowed_formats"] = ["onnx", "skops"]
        with pytest.raises(FormatNotAllowed, match="allows only onnx, skops") as info:
            loader.refresh()
        assert info.value.code == "format_not_allowed"
        assert info.value.details == {"format": "joblib", "allowed_formats": ["onnx", "skops"]}
        assert loader.load()["model"] == "first"  # what was loaded keeps serving
        assert not (tmp_path / "cache" / "sha256" / state.champion["artifact"]["sha256"]).exists()


@pytest.mark.parametrize("fmt", ["joblib", "pickle"])
def test_a_loader_built_with_allow_pickle_false_never_unpickles(tmp_path: Path, fmt: str) -> None:
    state = FakeRegistry()
    state.serve(1, dumped({"model": "pickled"}))
    state.champion["artifact"]["format"] = fmt
    with fake_registry(state) as url:
        loader = ChampionLoader(
            url, ENV, "Fake", cache_dir=tmp_path / "cache", timeout=10, allow_pickle=False
        )
        with pytest.raises(FormatNotAllowed, match="allow_pickle=False"):
            loader.load()
        assert loader.champion is None
        assert not (tmp_path / "cache" / "sha256").exists()


def test_a_skops_champion_loads_without_pickle_when_its_types_are_trusted(
    tmp_path: Path, holdout: Holdout
) -> None:
    import skops.io as sio

    estimator = forest(holdout, 3, 0)
    state = FakeRegistry()
    state.serve(1, sio.dumps(estimator))
    state.champion["artifact"]["format"] = "skops"
    state.champion["allowed_formats"] = ["skops"]
    with fake_registry(state) as url:
        strict = ChampionLoader(
            url, ENV, "Fake", cache_dir=tmp_path / "strict", timeout=10, allow_pickle=False
        )
        with pytest.raises(FormatNotAllowed, match="not trusted"):
            strict.load()
        trusting = ChampionLoader(
            url,
            ENV,
            "Fake",
            cache_dir=tmp_path / "cache",
            timeout=10,
            allow_pickle=False,
            skops_trusted=["sklearn.tree._tree.Tree"],
        )
        assert same_predictions(trusting.load(), estimator, holdout)
