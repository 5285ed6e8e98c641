"""Failure behaviour of a real ``modelreg serve``: the database going away and coming
back, a SIGKILL in the middle of an upload, a SIGTERM with a request in flight.

The outage test runs its own PostgreSQL cluster (``initdb`` into a temporary
directory, as the ``postgres`` OS user when the tests run as root) on a port of
its own, so it can stop and restart the server without disturbing anything else.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from modelreg.db import migrate
from modelreg.storage.artifacts import _pid_alive
from tests.e2e.conftest import (
    Server,
    StartServer,
    TimeoutSession,
    WorkerProcess,
    clean_environ,
    free_port,
    serve_in,
)
from tests.e2e.test_evaluation_workers import (
    DATASET,
    ENV,
    MODEL,
    all_jobs_done,
    create_model_in_staging,
    create_verified_policy,
    forest,
    joblib_bytes,
    logs_of,
    register,
    upload_holdout,
    verified,
    wait_for,
)
from tests.e2e.test_wine_scenario import wine_holdout

pytestmark = pytest.mark.e2e

# What the issue promises while the database is down: an answer within this.
OUTAGE_ANSWER_S = 3.0
# How long a call may keep failing once the database is back.
RECOVERY_S = 2.0
PG_START_TIMEOUT_S = 30


# -- a PostgreSQL cluster of the test's own ------------------------------------------


def _pg_bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: ``MODELREG_TEST_PG_BIN``, Debian's
    versioned directories, ``pg_config --bindir``, or ``PATH``."""
    candidates = [os.environ.get("MODELREG_TEST_PG_BIN", "")]
    candidates += sorted((str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")), reverse=True)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        candidates.append(
            subprocess.run(
                ["pg_config", "--bindir"], capture_output=True, text=True, timeout=10, check=False
            ).stdout.strip()
        )
    found = shutil.which("initdb")
    candidates.append(str(Path(found).parent) if found else "")
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    return None


class PrivatePostgres:
    """One PostgreSQL cluster in a temporary directory, on 127.0.0.1 and a free port."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        # Under /tmp, not pytest's tmp_path: the postgres user must reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="modelreg-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0  # PostgreSQL refuses to run as root
        if self.as_postgres:
            shutil.chown(self.dir, "postgres")

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_postgres else []
        done = subprocess.run(
            [*prefix, *argv],
            capture_output=True,
            text=True,
            timeout=PG_START_TIMEOUT_S + 30,
            check=False,
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            pytest.fail(f"{' '.join(argv)}: {done.returncode}\n{done.stdout}{done.stderr}\n{log}")

    def init(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(PG_START_TIMEOUT_S),
            "start",
        )

    def stop(self) -> None:
        """``-m immediate``: every backend is killed at once, connections reset."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(BaseException):
                self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    bindir = _pg_bindir()
    if bindir is None:
        message = "no PostgreSQL server binaries (initdb, pg_ctl) to run a private cluster"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    pg = PrivatePostgres(bindir)
    try:
        pg.init()
        for _attempt in range(3):  # another process may take the free port first
            try:
                pg.start()
                break
            except pytest.fail.Exception:
                if "could not bind" not in pg.log.read_text(errors="replace"):
                    raise
                pg.port = free_port()
        yield pg
    finally:
        pg.destroy()


# -- the outage -----------------------------------------------------------------------


@dataclass
class Call:
    """One API call, and the status it answers when the database is up."""

    name: str
    method: str
    path: str
    ok: tuple[int, ...]
    kwargs: dict[str, Any]


def _calls(run_id: int, reader: str, tag: int, artifact: bytes) -> list[Call]:
    """A representative read and write of every blueprint, the champion lookup included."""

    def c(name: str, method: str, path: str, *ok: int, **kwargs: Any) -> Call:
        return Call(name, method, path, ok, kwargs)

    champion = f"/api/v1/environments/{ENV}/models/{MODEL}"
    return [
        c("list models", "GET", "/api/v1/models", 200),
        c("create model", "POST", "/api/v1/models", 201, json={"name": f"m-{tag}"}),
        c("get version", "GET", f"/api/v1/models/{MODEL}/versions/1.0", 200),
        c(
            "create version",
            "POST",
            f"/api/v1/models/{MODEL}/versions",
            201,
            json={"version": f"3.{tag}"},
        ),
        c(
            "transition",
            "POST",
            f"/api/v1/models/{MODEL}/versions/3.{tag}/transitions",
            200,
            json={"stage": "Staging", "reason": "outage test"},
        ),
        c("get run", "GET", f"/api/v1/runs/{run_id}", 200),
        c("download artifact", "GET", f"/api/v1/runs/{run_id}/artifact", 200),
        c(
            "upload run",
            "POST",
            f"/api/v1/models/{MODEL}/versions/1.0/runs",
            201,
            files={
                "artifact": ("m.joblib", artifact, "application/octet-stream"),
                "metadata": (None, "{}", "application/json"),
            },
        ),
        c("list datasets", "GET", "/api/v1/datasets", 200),
        c(
            "register dataset",
            "POST",
            "/api/v1/datasets",
            201,
            json={"name": f"d-{tag}", "sha256": hashlib.sha256(b"%d" % tag).hexdigest()},
        ),
        c("list environments", "GET", "/api/v1/environments", 200),
        c("put environment", "PUT", f"/api/v1/environments/E-{tag}", 201, json={}),
        c("champion (admin token)", "GET", champion, 200),
        c(
            "champion (reader token, looked up)",
            "GET",
            champion,
            200,
            headers={"Authorization": f"Bearer {reader}"},
        ),
        c("explain", "GET", f"{champion}/explain", 200),
        c("list jobs", "GET", "/api/v1/jobs", 200),
        c(
            "request evaluation",
            "POST",
            f"/api/v1/runs/{run_id}/evaluate",
            200,
            202,
            json={"dataset": DATASET},
        ),
        c("list tokens", "GET", "/api/v1/tokens", 200),
        c("create token", "POST", "/api/v1/tokens", 201, json={"name": f"t-{tag}", "role": "ci"}),
        c("audit", "GET", "/api/v1/audit", 200),
    ]


def _send(session: requests.Session, base: str, call: Call) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = session.request(call.method, f"{base}{call.path}", timeout=30, **call.kwargs)
    return response, time.monotonic() - started


def _assert_unavailable(response: requests.Response, elapsed: float, what: str) -> None:
    assert response.status_code == 503, (what, response.status_code, response.text[:500])
    assert response.headers["Content-Type"].startswith("application/json"), what
    assert response.json()["error"]["code"] == "unavailable", (what, response.text[:500])
    assert elapsed < OUTAGE_ANSWER_S, f"{what} took {elapsed:.2f}s while the database was down"


def _start_worker(base: Path, env: dict[str, str]) -> WorkerProcess:
    log_path = base / "worker.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("modelreg")), "worker"],
            cwd=base,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return WorkerProcess(process, log_path)


def test_with_postgresql_down_every_call_answers_503_quickly_and_all_recovers_without_restart(
    private_postgres: PrivatePostgres, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    pg = private_postgres
    admin = create_engine(pg.url(), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text("CREATE DATABASE modelreg"))
    admin.dispose()
    url = pg.url("modelreg")
    migrate.upgrade(url)
    artifacts = tmp_path / "artifacts"
    env = clean_environ(
        MODELREG_DATABASE_URL=url,
        MODELREG_ARTIFACT_ROOT=str(artifacts),
        MODELREG_WORKER_POLL_MS="50",
    )
    server = serve_in(
        tmp_path_factory.mktemp("server"),
        env,
        database_url=url,
        artifact_root=artifacts,
        args=["--no-evaluation-worker"],
    )
    worker = _start_worker(tmp_path, env)
    logs = logs_of(server, worker)
    try:
        # A verified champion (the worker measured it), a reader token in the database.
        holdout = wine_holdout()
        upload_holdout(server, holdout)
        create_model_in_staging(server)
        create_verified_policy(server)
        artifact = joblib_bytes(forest(holdout, 3, seed=1), tmp_path, "forest")
        run_id = register(server, artifact, "before.joblib")
        wait_for("the first job", lambda: all_jobs_done(server, 1), logs=logs)
        assert verified(server.expect(server.session.get(server.api(f"/runs/{run_id}")), 200))
        reader = server.token("serving", "reader")
        s = server.session
        server.expect(s.get(server.absolute(f"/api/v1/environments/{ENV}/models/{MODEL}")), 200)

        pg.stop()

        timings: dict[str, float] = {}
        for round_ in range(2):  # two rounds: both web workers' pools meet the outage
            for call in _calls(run_id, reader, round_, artifact):
                response, elapsed = _send(s, server.url, call)
                _assert_unavailable(response, elapsed, call.name)
                timings[call.name] = max(timings.get(call.name, 0.0), elapsed)
            ready = s.get(f"{server.url}/readyz", timeout=30)
            assert ready.status_code == 503, ready.text
            assert ready.json()["error"]["code"] == "unavailable"
            assert s.get(f"{server.url}/healthz", timeout=30).status_code == 200
        print(f"\n503 latency (max of 2, s): {json.dumps(timings, indent=1)}")
        assert not any((artifacts / "tmp").iterdir()), "a refused upload left a temporary file"
        assert server.proc.process.poll() is None and worker.process.poll() is None
        time.sleep(1.5)  # the worker meets the outage too (it polls every 50 ms)

        pg.start()  # same port, same data: the service was not told anything

        attempts: dict[str, int] = {}
        deadline = time.monotonic() + RECOVERY_S
        for call in _calls(run_id, reader, 2, artifact):
            tries = 0
            while True:
                tries += 1
                response, _ = _send(s, server.url, call)
                if response.status_code in call.ok or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert response.status_code in call.ok, (call.name, response.text[:500], logs())
            attempts[call.name] = tries
        print(f"attempts after recovery: {attempts}")
        assert s.get(f"{server.url}/readyz", timeout=30).status_code == 200

        # The worker waited through the outage and measures a run registered after it
        # (the upload above queued one job; the evaluation request found it scored).
        assert worker.process.poll() is None, worker.log()
        done = wait_for(
            "the job queued after recovery", lambda: all_jobs_done(server, 2), logs=logs
        )
        assert {j["state"] for j in done} == {"succeeded"}, done
        assert "database unavailable" in worker.log(1000), worker.log()
    finally:
        worker.stop()
        server.close()


# -- SIGKILL in the middle of an upload; SIGTERM with one in flight ---------------------

MIB = 1024 * 1024


class GatedBody:
    """A sized multipart body of generated content that stops after ``pause_at``
    bytes of the file until ``go`` is set: the upload is *in flight* for as long as
    the test likes. ``requests`` sends a readable object with a length as is."""

    def __init__(self, size: int, pause_at: int, *, chunk: int = MIB) -> None:
        self.boundary = "modelreg-failures-boundary"
        self.head = (
            f"--{self.boundary}\r\n"
            'Content-Disposition: form-data; name="metadata"\r\n\r\n'
            "{}\r\n"
            f"--{self.boundary}\r\n"
            'Content-Disposition: form-data; name="artifact"; filename="big.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.size, self.pause_at, self.chunk = size, pause_at, chunk
        self.go = threading.Event()
        self.sha256 = hashlib.sha256()
        self._sent = 0  # bytes of the file part
        self._head_sent = False
        self._tail_sent = False

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self.head) + self.size + len(self.tail)

    def read(self, n: int = -1) -> bytes:
        if not self._head_sent:
            self._head_sent = True
            return self.head
        if self._sent < self.size:
            if self._sent >= self.pause_at and not self.go.wait(timeout=60):
                raise TimeoutError("the test never released the upload")
            block = hashlib.sha256(self._sent.to_bytes(8, "big")).digest()
            out = (block * (self.chunk // len(block)))[: min(self.chunk, self.size - self._sent)]
            self._sent += len(out)
            self.sha256.update(out)
            return out
        if not self._tail_sent:
            self._tail_sent = True
            return self.tail
        return b""


def _upload_in_thread(server: Server, body: GatedBody) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}
    session = TimeoutSession(timeout=120)

    def send() -> None:
        try:
            outcome["response"] = session.post(
                server.api(f"/models/{MODEL}/versions/1.0/runs"),
                data=body,
                headers={"Content-Type": body.content_type},
            )
        except (requests.RequestException, OSError) as exc:
            outcome["error"] = exc
        finally:
            outcome["at"] = time.monotonic()
            session.close()

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread, outcome


def _temp_files(server: Server) -> list[Path]:
    return sorted(p for p in (server.artifact_root / "tmp").iterdir() if p.is_file())


def _wait_for_partial(server: Server, at_least: int, logs: Callable[[], str]) -> Path:
    def grown() -> Path | None:
        files = [p for p in _temp_files(server) if p.stat().st_size >= at_least]
        return files[0] if files else None

    return wait_for("the upload's temporary file to grow", grown, timeout=30, logs=logs)


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _model_and_version(server: Server) -> None:
    s = server.session
    server.expect(s.post(server.api("/models"), json={"name": MODEL}), 201)
    server.expect(s.post(server.api(f"/models/{MODEL}/versions"), json={"version": "1.0"}), 201)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_server_killed_mid_upload_restarts_clean_with_no_run_on_a_partial_artifact(
    start_server: StartServer, database_url: str
) -> None:
    server = start_server(workers=1, args=["--no-evaluation-worker"])
    _model_and_version(server)
    kept = server.expect(server.register_run(MODEL, "1.0", b"a small, complete model", {}), 201)
    body = GatedBody(200 * MIB, pause_at=48 * MIB)
    thread, outcome = _upload_in_thread(server, body)
    partial = _wait_for_partial(server, 32 * MIB, logs=server.log)

    # The whole process group, as an OOM killer or `docker kill` would.
    master = server.proc.process
    (web_worker,) = _children(master.pid)
    os.killpg(master.pid, signal.SIGKILL)
    master.wait(timeout=15)
    wait_for("the killed web worker to be gone", lambda: not _pid_alive(web_worker), timeout=15)
    body.go.set()
    thread.join(timeout=60)
    assert "error" in outcome, outcome  # the client saw its connection cut
    assert partial.exists() and 0 < partial.stat().st_size < body.size, "a partial upload"

    # The same data directory, database and artifact store.
    environ = clean_environ(
        MODELREG_DATABASE_URL=database_url, MODELREG_ARTIFACT_ROOT=str(server.artifact_root)
    )
    again = serve_in(
        server.workdir.parent,
        environ,
        database_url=database_url,
        artifact_root=server.artifact_root,
        workers=1,
        args=["--no-evaluation-worker"],
    )
    try:
        assert _temp_files(again) == [], "the restart removes the killed upload's temp file"
        assert "removed 1 abandoned temporary upload file" in again.log()
        page = again.expect(again.session.get(again.api(f"/models/{MODEL}/versions/1.0/runs")), 200)
        assert [r["id"] for r in page["items"]] == [kept["id"]], "no run for the killed upload"
        blobs = [p for p in (again.artifact_root / "sha256").rglob("*") if p.is_file()]
        for run in page["items"]:
            stored = again.artifact_root / "sha256" / run["artifact"]["sha256"][:2]
            path = stored / run["artifact"]["sha256"][2:4] / run["artifact"]["sha256"]
            assert hashlib.sha256(path.read_bytes()).hexdigest() == run["artifact"]["sha256"]
            download = again.session.get(again.api(f"/runs/{run['id']}/artifact"))
            assert hashlib.sha256(download.content).hexdigest() == run["artifact"]["sha256"]
        assert len(blobs) == 1, f"only the complete run's blob is stored: {blobs}"
        # And uploads work again.
        again.expect(again.register_run(MODEL, "1.0", b"after the crash", {}), 201)
    finally:
        again.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sigterm_lets_the_upload_in_flight_finish_then_the_server_exits(
    start_server: StartServer, database_url: str
) -> None:
    server = start_server(workers=1, args=["--no-evaluation-worker"])
    _model_and_version(server)
    body = GatedBody(24 * MIB, pause_at=8 * MIB)
    thread, outcome = _upload_in_thread(server, body)
    _wait_for_partial(server, 4 * MIB, logs=server.log)

    master = server.proc.process
    master.send_signal(signal.SIGTERM)
    sigterm_at = time.monotonic()

    # gunicorn's master notes the signal and passes it on to its worker, which stops
    # accepting connections and lets the request in hand finish.
    wait_for(
        "gunicorn to handle SIGTERM",
        lambda: "Handling signal: term" in server.log(),
        logs=server.log,
    )
    time.sleep(0.5)
    assert master.poll() is None, "the server waits for the request in flight"
    body.go.set()  # the rest of the upload
    thread.join(timeout=60)

    response = outcome.get("response")
    assert response is not None, (outcome, server.log())
    run = server.expect(response, 201)
    assert outcome["at"] > sigterm_at
    assert run["artifact"]["sha256"] == body.sha256.hexdigest()
    assert run["artifact"]["size"] == body.size
    assert master.wait(timeout=30) == 0, server.log()
    # What the answer said is stored: the row and its complete artifact.
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT artifact_sha256 FROM runs")).scalars().all()
    finally:
        engine.dispose()
    assert stored == [body.sha256.hexdigest()]
    digest = body.sha256.hexdigest()
    blob = server.artifact_root / "sha256" / digest[:2] / digest[2:4] / digest
    assert blob.stat().st_size == body.size
    assert _temp_files(server) == []
