"""The Python client (``modelreg.client.Registry``) where real HTTP matters.

Every ``Registry`` method and API error is exercised in-process, on the real app, by
tests/integration/test_client.py. Here: what needs a socket or a real server. A closed
port, clients racing across the server's worker processes, a 50 MiB upload's memory,
and stored bytes that changed on disk, whose download the server cuts short. One
server per database serves the whole module (each test uses names of its own).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from modelreg.client import (
    ChampionLoader,
    Registry,
    RegistryError,
    Unavailable,
    Unreachable,
)
from modelreg.client.transport import MultipartStream, TerminalProgress, progress_for
from tests.client_helpers import artifact_file, f1_of, forest, raises
from tests.conftest import drop_postgres_database, new_postgres_database
from tests.e2e.conftest import (
    ADMIN_TOKEN,
    Server,
    clean_environ,
    free_port,
    serve_in,
)
from tests.e2e.test_wine_scenario import Holdout, wine_holdout

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FAST_POLL = {"MODELREG_WORKER_POLL_MS": "20"}
BIG_MIB = 50


# -- one server per database for the module ----------------------------------------------


def module_database(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
) -> Iterator[str]:
    """A migrated database of the module's own: a copy of the SQLite template, or a
    PostgreSQL database cloned from the template (dropped afterwards)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("client-db") / "modelreg.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    url = new_postgres_database(request.getfixturevalue("postgres_template"))
    try:
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
) -> Iterator[str]:
    """Overrides the per-test database: one database for the whole module, so that one
    server serves every test (they use names of their own)."""
    yield from module_database(request, tmp_path_factory, sqlite_template)


def start_live_server(database_url: str, base: Path) -> tuple[Server, dict[str, str]]:
    """A ``modelreg serve`` on ``database_url`` with its data in ``base``, and its environ."""
    artifacts = base / "artifacts"
    environ = clean_environ(
        MODELREG_DATABASE_URL=database_url,
        MODELREG_ARTIFACT_ROOT=str(artifacts),
        MODELREG_WORKER_POLL_MS=FAST_POLL["MODELREG_WORKER_POLL_MS"],
    )
    server = serve_in(base, environ, database_url=database_url, artifact_root=artifacts)
    return server, environ


@pytest.fixture(scope="module")
def live(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server, _ = start_live_server(database_url, tmp_path_factory.mktemp("client-server"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def admin(live: Server) -> Iterator[Registry]:
    with Registry(live.url, ADMIN_TOKEN, timeout=60) as registry:
        yield registry


@pytest.fixture(scope="module")
def holdout() -> Holdout:
    return wine_holdout()


# -- no server needed ----------------------------------------------------------------------


class FakeStream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def shown(terminal: FakeStream) -> str:
    """What a terminal shows of what was written to it: the text, without escape codes."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal.getvalue())


def test_the_progress_bar_draws_on_a_terminal_only_a_few_times_and_ends_its_line() -> None:
    terminal = FakeStream(tty=True)
    bar = TerminalProgress("uploading m.joblib", stream=terminal)
    total = 100 * 2**20
    for done in range(0, total + 1, 2**16):  # 1,601 chunks, in a few milliseconds
        bar(done, total)
    drawn = terminal.getvalue()
    assert drawn.count("uploading m.joblib") < 20, drawn  # redrawn at most every 0.1 s
    seen = shown(terminal)
    final = seen.rstrip("\n").rsplit("\r", 1)[-1]
    assert "uploading m.joblib" in final and "100%" in final and "104.9/104.9 MB" in final
    assert seen.endswith("\n")
    assert drawn.rfind("\x1b[?25h") > drawn.rfind("\x1b[?25l")  # the cursor is shown again
    bar(total, total)  # once ended, it stays quiet
    assert terminal.getvalue() == drawn

    jobs = FakeStream(tty=True)
    with TerminalProgress("evaluating AImodel on wine@2", stream=jobs, unit="jobs") as waits:
        waits(3, 12)
    assert "3/12 jobs" in shown(jobs) and shown(jobs).endswith("\n")  # closed: line ended

    pipe = FakeStream(tty=False)
    quiet = TerminalProgress("uploading m.joblib", stream=pipe)
    quiet(0, 10)
    quiet(10, 10)
    assert pipe.getvalue() == ""

    calls: list[tuple[int, int]] = []

    def record(done: int, total: int) -> None:
        calls.append((done, total))

    assert progress_for("x", False) is None
    assert progress_for("x", record) is record
    assert isinstance(progress_for("x", None), TerminalProgress)
    assert isinstance(progress_for("x", True), TerminalProgress)


def test_an_upload_body_is_sent_with_its_length_and_not_chunked(tmp_path: Path) -> None:
    path = artifact_file(tmp_path, "m.bin", os.urandom(100_000))
    body = MultipartStream({"metadata": "{}"}, "artifact", path, path.name)
    try:
        prepared = requests.Request(
            "POST", "http://127.0.0.1:9/", data=body, headers={"Content-Type": body.content_type}
        ).prepare()
        assert prepared.headers.get("Content-Length") == str(len(body))
        assert "Transfer-Encoding" not in prepared.headers
        sent = b"".join(iter(lambda: body.read(16384), b""))
    finally:
        body.close()
    assert len(sent) == len(body)
    assert path.read_bytes() in sent


def test_an_unreachable_registry_is_not_ready_and_raises_unreachable() -> None:
    closed = Registry(f"http://127.0.0.1:{free_port()}", ADMIN_TOKEN, timeout=5)
    assert closed.ready() is False
    error = raises(Unreachable, closed.models)
    assert (error.status, error.code) == (None, "error")
    assert "cannot reach" in str(error)


# -- against the live server ----------------------------------------------------------------


def test_eight_clients_ensuring_the_same_model_and_version_at_once_create_each_once(
    live: Server,
) -> None:
    barrier = threading.Barrier(8)
    results: list[tuple[str, str] | BaseException] = []
    lock = threading.Lock()

    def ensure(i: int) -> None:
        registry = Registry(live.url, ADMIN_TOKEN, timeout=60)
        try:
            barrier.wait(timeout=30)
            model = registry.ensure_model("Raced")
            version = registry.ensure_version("Raced", "1.0.0" if i % 2 else "1.0")
            outcome: tuple[str, str] | BaseException = (model.name, version.version)
        except BaseException as exc:
            outcome = exc
        finally:
            registry.close()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=ensure, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert not any(t.is_alive() for t in threads)
    # Whoever won keeps their spelling: 1.0 and 1.0.0 are one version.
    assert len(set(results)) == 1, results
    assert results[0] in {("Raced", "1.0"), ("Raced", "1.0.0")}, results
    admin = Registry(live.url, ADMIN_TOKEN)
    assert [v.version for v in admin.versions("Raced")] == [results[0][1]]
    assert [m.name for m in admin.models()].count("Raced") == 1


def test_a_50_mib_upload_streams_without_the_client_holding_it_in_memory(
    live: Server, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with big.open("wb") as fh:
        for _ in range(BIG_MIB):
            chunk = os.urandom(2**20)
            digest.update(chunk)
            fh.write(chunk)
    small = artifact_file(tmp_path, "small.bin")
    script = """
import json, resource, sys
from modelreg.client import Registry

url, token, big, small = sys.argv[1:]
registry = Registry(url, token)
registry.create_run("Big", "1.0", small, progress=False)  # warm-up: imports, connection
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
seen = {"calls": 0, "last": None, "ordered": True}

def progress(done, total):
    seen["ordered"] = seen["ordered"] and (seen["last"] is None or done >= seen["last"][0])
    seen["calls"] += 1
    seen["last"] = (done, total)

run = registry.create_run("Big", "1.0", big, progress=progress)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_kib": after - before, "run": run.raw, **seen}))
"""
    admin = Registry(live.url, ADMIN_TOKEN)
    admin.ensure_model("Big")
    admin.ensure_version("Big", "1.0")
    done = subprocess.run(
        [sys.executable, "-c", script, live.url, ADMIN_TOKEN, str(big), str(small)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    artifact = report["run"]["artifact"]
    assert (artifact["sha256"], artifact["size"]) == (digest.hexdigest(), BIG_MIB * 2**20)
    growth_mib = report["growth_kib"] / 1024
    assert growth_mib < 16, f"the client's peak memory grew by {growth_mib:.1f} MiB"
    assert report["ordered"] and report["calls"] > 1
    done_bytes, total = report["last"]
    assert done_bytes == total > BIG_MIB * 2**20


# -- a stored artifact changed on disk --------------------------------------------------


def blob_path(server: Server, digest: str) -> Path:
    """Where the server stores the bytes of ``digest`` (modelreg.storage.artifacts)."""
    return server.artifact_root / "sha256" / digest[:2] / digest[2:4] / digest


def tamper_same_length(path: Path) -> None:
    """The same number of bytes, one of them different: only hashing can tell."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def integrity_failures(server: Server) -> float:
    """``modelreg_artifact_integrity_failures_total`` of the server (all its workers)."""
    response = server.session.get(f"{server.url}/metrics")
    assert response.status_code == 200, response.text[:500]
    return sum(
        s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.name == "modelreg_artifact_integrity_failures_total"
    )


def test_a_tampered_artifact_is_never_returned_and_is_audited_counted_and_repaired(
    live: Server, admin: Registry, tmp_path: Path
) -> None:
    content = os.urandom(3 * 1024 * 1024 + 7)  # several chunks
    path = artifact_file(tmp_path, "tampered.bin", content)
    run = admin.register_run("Tampered", "1.0", path, progress=False)
    failures = integrity_failures(live)
    tamper_same_length(blob_path(live, run.sha256))

    out = tmp_path / "dl" / "tampered.bin"
    with pytest.raises(RegistryError) as broken:
        admin.download_artifact(run.id, out)
    assert not isinstance(broken.value, Unavailable)  # the transfer itself broke
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no partial file either

    quarantined = raises(Unavailable, lambda: admin.download_artifact(run.id, out))
    assert (quarantined.status, quarantined.code) == (503, "unavailable")
    assert quarantined.details == {"sha256": run.sha256, "quarantined": True}
    assert not out.exists()

    audited = [e for e in admin.audit(action="artifact.corrupt") if e.target.endswith(run.sha256)]
    assert [(e.target, e.before) for e in audited] == [
        (f"blobs/{run.sha256}", {"sha256": run.sha256, "size": len(content)})
    ]
    assert integrity_failures(live) >= failures + 1

    admin.register_run("Tampered", "1.0", path, progress=False)  # the same bytes again

    assert admin.download_artifact(run.id, out).read_bytes() == content
    repairs = [e.target for e in admin.audit(action="artifact.repair")]
    assert f"blobs/{run.sha256}" in repairs


def test_the_champion_loader_refuses_a_tampered_champion_and_loads_it_once_repaired(
    live: Server, admin: Registry, holdout: Holdout, tmp_path: Path
) -> None:
    estimator = forest(holdout)
    admin.register_dataset("tamper-set", hashlib.sha256(b"tamper-set").hexdigest())
    run = admin.register_run(
        "TamperedChampion",
        "1.0",
        estimator,
        metrics={"f1": f1_of(estimator, holdout)},
        dataset="tamper-set",
        progress=False,
    )
    admin.transition("TamperedChampion", "1.0", "Staging")
    admin.transition("TamperedChampion", "1.0", "Production", reason="serve it")
    admin.put_environment("TAMPER")
    admin.put_policy("TAMPER", "TamperedChampion", metric="f1", dataset="tamper-set", reason="t")
    assert admin.champion("TAMPER", "TamperedChampion").run_id == run.id
    blob = blob_path(live, run.sha256)
    original = blob.read_bytes()
    tamper_same_length(blob)

    loaded: list[bytes] = []

    def deserialize(path: Path) -> Any:
        loaded.append(path.read_bytes())
        return joblib.load(path)

    cache = tmp_path / "cache"
    loader = ChampionLoader(
        live.url, "TAMPER", "TamperedChampion", token=ADMIN_TOKEN, cache_dir=cache,
        deserialize=deserialize, timeout=30,
    )  # fmt: skip
    with pytest.raises(RegistryError):
        loader.load()  # the transfer breaks
    assert raises(Unavailable, loader.load).details["sha256"] == run.sha256  # quarantined
    assert loaded == []
    assert loader.champion is None
    assert [p.name for p in cache.rglob("*") if p.is_file()] == []  # nothing cached

    repaired = artifact_file(tmp_path, "model.joblib", original)
    admin.register_run("TamperedChampion", "1.0", repaired, progress=False)

    served = loader.load()
    assert loaded == [original]
    assert loader.champion is not None and loader.champion.sha256 == run.sha256
    assert (served.predict(holdout.x_test) == estimator.predict(holdout.x_test)).all()
