"""A real ``modelreg serve`` (gunicorn) in a subprocess, talked to over HTTP.

``start_server(workers=..., threads=...)`` starts one on a free port on
127.0.0.1, in a temporary working directory, against the test's database (the
``database_url`` fixture: a migrated SQLite file or PostgreSQL database). It
waits, bounded, until ``/readyz`` answers 200 and fails with the server's log
otherwise. ``server`` is the common case: one server with the default workers.
``start_server(env={...}, args=[...])`` adds settings and options;
``embedded_server`` is a server with no setting at all (SQLite in
``./modelreg-data``, with its own evaluation worker). ``start_worker(server)``
starts a ``modelreg worker`` on a server's database and artifact store.
Every server and worker is stopped at teardown: SIGTERM, then SIGKILL of its
process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
REQUEST_TIMEOUT_S = 60.0
ENV_PREFIX = "MODELREG_"


# MODELREG_ADMIN_TOKEN of every server the tests start (clean_environ sets it), and
# what TimeoutSession sends unless told otherwise.
ADMIN_TOKEN = "e2e-admin-token-0123456789"


class TimeoutSession(requests.Session):
    """A ``requests.Session`` whose requests never wait forever, as the e2e admin."""

    def __init__(self, timeout: float = REQUEST_TIMEOUT_S, token: str | None = ADMIN_TOKEN) -> None:
        super().__init__()
        self.default_timeout = timeout
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(method, url, *args, **kwargs)


def free_port() -> int:
    """A port nobody listens on right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_environ(*, admin_token: bool = True, **extra: str) -> dict[str, str]:
    """This process's environment without any ``MODELREG_*`` variable but the e2e admin
    token (unless ``admin_token=False``), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    if admin_token:
        env[f"{ENV_PREFIX}ADMIN_TOKEN"] = ADMIN_TOKEN
    env.update(extra)
    return env


@dataclass
class ServerProcess:
    """A started server process and where its output goes."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self, tail: int = 200) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"<cannot read server log {self.log_path}: {exc}>"
        return "\n".join(lines[-tail:])

    def listening(self) -> bool:
        """Whether gunicorn's master *of this process* says it listens on our URL.

        Another process may have bound the port that ``free_port`` handed out (other
        test sessions run beside this one): its ``/readyz`` must not pass for ours.
        """
        return f"Listening at: {self.url} ({self.process.pid})" in self.log(tail=1000)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Poll ``/readyz`` until 200; fail with the log on exit or timeout."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        with TimeoutSession(timeout=2.0) as probe:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    pytest.fail(
                        f"modelreg serve exited with {self.process.returncode} before it was "
                        f"ready\n--- server log ---\n{self.log()}"
                    )
                if not self.listening():
                    last = "not listening yet"
                    time.sleep(0.05)
                    continue
                try:
                    response = probe.get(f"{self.url}/readyz")
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code} {response.text[:300]}"
                except requests.RequestException as exc:
                    last = repr(exc)
                time.sleep(0.1)
        pytest.fail(
            f"modelreg serve at {self.url} not ready within {timeout:.0f}s (last: {last})"
            f"\n--- server log ---\n{self.log()}"
        )

    def stop(self) -> None:
        """SIGTERM (gunicorn's graceful stop), then SIGKILL of the whole process group."""
        proc = self.process
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_TIMEOUT_S)
        # The workers are in the master's own process group (start_new_session).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT_S)


def launch(
    command: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    port: int,
    log_path: Path,
    ready_timeout: float = READY_TIMEOUT_S,
) -> ServerProcess:
    """Start ``command`` (a ``modelreg serve``) and wait until it is ready.

    The caller owns the returned process and must ``stop()`` it; if readiness
    fails, the process is stopped here before the failure propagates.
    """
    cwd.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
    try:
        server.wait_ready(ready_timeout)
    except BaseException:
        server.stop()
        raise
    return server


@dataclass
class Server:
    """A running ``modelreg serve``: its base URL, a session, and helpers."""

    url: str
    session: TimeoutSession
    proc: ServerProcess
    database_url: str
    artifact_root: Path
    workdir: Path
    workers: int
    sessions: list[TimeoutSession] = field(default_factory=list)

    def api(self, path: str) -> str:
        """The absolute URL of an API path: ``/models`` → ``http://…/api/v1/models``."""
        return f"{self.url}/api/v1{path}"

    def token(self, name: str, role: str) -> str:
        """The secret of a new token ``name`` with ``role``, created by the e2e admin."""
        body = self.expect(
            self.session.post(self.api("/tokens"), json={"name": name, "role": role}), 201
        )
        return str(body["secret"])

    def act_as(self, name: str, role: str = "admin") -> None:
        """From now on the session sends a new token ``name`` with ``role``."""
        self.session.headers["Authorization"] = f"Bearer {self.token(name, role)}"

    def absolute(self, path: str) -> str:
        """The absolute URL of a server-relative path such as a champion's artifact url."""
        return f"{self.url}{path}"

    def new_session(self) -> TimeoutSession:
        """A session of its own (one per client thread); closed at teardown."""
        s = TimeoutSession()
        self.sessions.append(s)
        return s

    def log(self, tail: int = 200) -> str:
        return self.proc.log(tail)

    def expect(self, response: requests.Response, status: int) -> Any:
        """The response's JSON, after failing loudly (body and server log) on another status."""
        if response.status_code != status:
            pytest.fail(
                f"{response.request.method} {response.url} answered {response.status_code}, "
                f"expected {status}: {response.text[:2000]}\n--- server log ---\n{self.log(80)}"
            )
        if not response.content or "json" not in response.headers.get("Content-Type", ""):
            return None
        return response.json()

    def register_run(
        self,
        model: str,
        version: str,
        artifact: bytes,
        metadata: Mapping[str, Any],
        *,
        filename: str = "model.joblib",
        session: requests.Session | None = None,
    ) -> requests.Response:
        """POST a run the way CI does: multipart ``artifact`` file + ``metadata`` JSON."""
        return (session or self.session).post(
            self.api(f"/models/{model}/versions/{version}/runs"),
            files={
                "artifact": (filename, artifact, "application/octet-stream"),
                "metadata": (None, json.dumps(metadata), "application/json"),
            },
        )

    def close(self) -> None:
        for s in [self.session, *self.sessions]:
            s.close()
        self.proc.stop()


StartServer = Callable[..., Server]


def serve_in(
    base: Path,
    env: Mapping[str, str],
    *,
    database_url: str,
    artifact_root: Path,
    workers: int = 2,
    threads: int | None = None,
    args: Sequence[str] = (),
) -> Server:
    """Start ``modelreg serve`` with ``env`` in ``base/data`` on a free port → a ready Server.

    The caller owns the server and must ``close()`` it.
    """
    command = Path(sys.executable).with_name("modelreg")
    assert command.is_file(), f"the modelreg console script is missing: {command}"
    workdir = base / "data"
    argv = [str(command), "serve", "--host", "127.0.0.1", "--workers", str(workers), *args]
    if threads is not None:
        argv += ["--threads", str(threads)]
    proc: ServerProcess | None = None
    for attempt in range(3):  # another process may take the free port before we bind it
        port = free_port()
        try:
            proc = launch(
                [*argv, "--port", str(port)],
                cwd=workdir,
                env=env,
                port=port,
                log_path=base / f"server-{attempt}.log",
            )
            break
        except pytest.fail.Exception:
            log = (base / f"server-{attempt}.log").read_text(errors="replace")
            # serve's own check says "port N on 127.0.0.1 is in use"; gunicorn, when the
            # port is taken after that check, "Connection in use: ('127.0.0.1', port)".
            in_use = any(s in log for s in ("is in use", "Connection in use", "already in use"))
            if not in_use or attempt == 2:
                raise
    assert proc is not None
    return Server(
        url=proc.url,
        session=TimeoutSession(),
        proc=proc,
        database_url=database_url,
        artifact_root=artifact_root,
        workdir=workdir,
        workers=workers,
    )


@pytest.fixture
def start_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartServer]:
    """A factory: ``start_server(workers=4, threads=4)`` → a ready :class:`Server`.

    ``env`` adds ``MODELREG_*`` settings, ``args`` adds command-line options (e.g.
    ``["--no-evaluation-worker"]``); ``admin_token=False`` leaves out
    ``MODELREG_ADMIN_TOKEN``. All servers it started are stopped when the
    test ends, whatever happened.
    """
    started: list[Server] = []

    def start(
        workers: int = 2,
        threads: int | None = None,
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        admin_token: bool = True,
    ) -> Server:
        base = tmp_path_factory.mktemp("server")
        artifacts = base / "artifacts"
        environ = clean_environ(
            admin_token=admin_token,
            MODELREG_DATABASE_URL=database_url,
            MODELREG_ARTIFACT_ROOT=str(artifacts),
            **(env or {}),
        )
        server = serve_in(
            base,
            environ,
            database_url=database_url,
            artifact_root=artifacts,
            workers=workers,
            threads=threads,
            args=args,
        )
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.close()


@pytest.fixture
def server(start_server: StartServer) -> Server:
    """One running server (default workers) on the test's database."""
    return start_server()


@pytest.fixture
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``modelreg serve`` with no setting at all: the embedded default.

    SQLite and artifacts in ``./modelreg-data`` of a fresh working directory; not
    parametrized by ``database_url``.
    """
    base = tmp_path_factory.mktemp("embedded")
    data = base / "data" / "modelreg-data"
    server = serve_in(
        base,
        clean_environ(),
        database_url=f"sqlite:///{data / 'modelreg.db'}",
        artifact_root=data / "artifacts",
    )
    try:
        yield server
    finally:
        server.close()


@dataclass
class WorkerProcess:
    """A ``modelreg worker`` in a process group (session) of its own."""

    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def name(self) -> str:
        """The name the worker records in the jobs it takes (``host:pid``)."""
        return f"{socket.gethostname()}:{self.process.pid}"

    def log(self, tail: int = 200) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"<cannot read worker log {self.log_path}: {exc}>"
        return "\n".join(lines[-tail:])

    def kill(self) -> None:
        """SIGKILL the worker process alone, as a crash would (its children notice)."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(timeout=STOP_TIMEOUT_S)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM (stop after the job in hand), then SIGKILL of its process group."""
        proc = self.process
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT_S)


StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def start_worker(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartWorker]:
    """A factory: ``start_worker(server, env={...}, args=["--once"])`` → a started
    ``modelreg worker`` on the server's database and artifact store. Every worker is
    stopped at teardown (before the test's database goes away)."""
    started: list[WorkerProcess] = []
    command = Path(sys.executable).with_name("modelreg")

    def start(
        server: Server, *, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
    ) -> WorkerProcess:
        base = tmp_path_factory.mktemp("worker")
        log_path = base / "worker.log"
        environ = clean_environ(
            MODELREG_DATABASE_URL=server.database_url,
            MODELREG_ARTIFACT_ROOT=str(server.artifact_root),
            **(env or {}),
        )
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [str(command), "worker", *args],
                cwd=base,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProcess(process, log_path)
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()
