"""How ``modelreg serve`` runs: gunicorn with the app built in each worker, the metrics
directory its processes share, and the embedded evaluation worker beside it."""

from __future__ import annotations

import atexit
import errno
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from modelreg.config import ENV_PREFIX, Settings
from modelreg.runtime import logs, serving_state
from modelreg.runtime.malloc import tune_for_streaming


class GunicornApp(BaseApplication):  # type: ignore[misc]
    """Gunicorn with the app built inside each worker (no shared connections)."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Each worker builds its app after the fork (no database connection shared
        # across processes); the rest of the command line never loads Flask.
        from modelreg.app import create_app

        return create_app(self.settings)


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        "threads": settings.threads,
        "worker_class": "gthread",
        "keepalive": 5,
        # access_log: the app writes one JSON line per request (runtime.logs), not gunicorn.
        "accesslog": None,
        "child_exit": child_exit,
        "timeout": 120,
        "graceful_timeout": 30,
        # gunicorn 27's control socket is one path per user: two servers would share it.
        "control_socket_disable": True,
    }


def cannot_listen(host: str, port: int) -> str | None:
    """Why gunicorn could not listen on ``host:port`` now, in one line; None when it can.

    A bind test with gunicorn's socket options (``SO_REUSEADDR``: a port left in
    TIME_WAIT is free), so that a port in use is one line rather than gunicorn's
    "Connection in use" five times over. A process that takes the port in between
    still gets gunicorn's own error.

    >>> with socket.socket() as taken:
    ...     taken.bind(("127.0.0.1", 0)); taken.listen()
    ...     port = taken.getsockname()[1]
    ...     cannot_listen("127.0.0.1", port) == (
    ...         f"port {port} on 127.0.0.1 is in use: pass --port or set MODELREG_PORT")
    True
    """
    if os.environ.get("LISTEN_FDS") or os.environ.get("GUNICORN_FD"):
        return None  # gunicorn takes sockets already bound (systemd, its own re-exec)
    address = host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET  # as gunicorn picks
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((address, port))
    except socket.gaierror as exc:
        return f"cannot listen on {host}: {exc.strerror}: pass --host or set {ENV_PREFIX}HOST"
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"port {port} on {host} is in use: pass --port or set {ENV_PREFIX}PORT"
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"{host} is no address of this machine: pass --host or set {ENV_PREFIX}HOST"
        return f"cannot listen on port {port} on {host}: {exc.strerror or exc}"
    return None


def run(settings: Settings) -> None:
    """Serve until gunicorn stops, with the evaluation worker if the settings want one."""
    supervisor = Supervisor(settings) if settings.runs_worker_in_serve else None
    if supervisor is not None:
        supervisor.start()  # before gunicorn forks: its workers inherit the state file's path
    # Before gunicorn forks its workers: they inherit the settings.
    tune_for_streaming()
    try:
        GunicornApp(settings, gunicorn_options(settings)).run()
    finally:
        if supervisor is not None:
            supervisor.stop()


def start_worker(settings: Settings, state_file: str | None = None) -> subprocess.Popen[bytes]:
    """The embedded default's worker, beside gunicorn; it stops when serve does."""
    env = dict(os.environ)
    env[f"{ENV_PREFIX}DATABASE_URL"] = settings.resolved_database_url
    env[f"{ENV_PREFIX}ARTIFACT_ROOT"] = str(settings.resolved_artifact_root)
    command = [sys.executable, "-m", "modelreg", "worker", "--parent-pid", str(os.getpid())]
    if state_file is not None:
        command += ["--state-file", state_file]
    return subprocess.Popen(command, env=env)


class Supervisor:
    """Keeps serve's evaluation worker running: restarted when it dies, with backoff.

    The delay doubles from 1 s up to 30 s while the worker keeps dying young, and
    starts again at 1 s once it has run for a minute. ``/readyz`` answers 503 while
    it is not running (:mod:`modelreg.runtime.serving_state`).
    """

    FIRST_DELAY = 1.0
    MAX_DELAY = 30.0
    HEALTHY_AFTER = 60.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._dir = tempfile.mkdtemp(prefix="modelreg-serve-")
        self.state_file = str(Path(self._dir) / "embedded-worker.json")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="worker-supervisor", daemon=True)
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        owner = os.getpid()

        def remove() -> None:
            if os.getpid() == owner:
                shutil.rmtree(self._dir, ignore_errors=True)

        atexit.register(remove)

    def start(self) -> None:
        os.environ[serving_state.STATE_ENV] = self.state_file
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        serving_state.write(self.state_file, state="starting", restarts=self.restarts)
        self.process = start_worker(self.settings, self.state_file)
        self._started = time.monotonic()

    def _loop(self) -> None:
        delay = self.FIRST_DELAY
        while not self._stop.wait(0.2):
            process = self.process
            # gunicorn's master reaps every child on SIGCHLD: poll() then sees a
            # vanished process as ended, which is what matters here.
            if process is None or process.poll() is None:
                continue
            ran = time.monotonic() - self._started
            delay = self.FIRST_DELAY if ran >= self.HEALTHY_AFTER else delay
            serving_state.write(
                self.state_file, state="down", restarts=self.restarts, exit_code=process.returncode
            )
            logging.getLogger("modelreg.serve").warning(
                "the evaluation worker exited (status %s) after %.1f s; restarting in %.0f s",
                process.returncode,
                ran,
                delay,
            )
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, self.MAX_DELAY)
            self.restarts += 1
            self._spawn()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        if self.process is not None:
            stop_worker(self.process)


# prometheus-client's multiprocess mode (runtime.prometheus): read when it is first imported,
# so serve sets it before anything imports it and before any worker starts.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_METRICS_DIR_PREFIX = "modelreg-metrics-"  # then the serve process's pid


def _remove_stale_metrics_dirs() -> None:
    """Metrics directories of servers that were killed (no exit handler ran)."""
    for found in Path(tempfile.gettempdir()).glob(f"{_METRICS_DIR_PREFIX}*-*"):
        pid = found.name[len(_METRICS_DIR_PREFIX) :].split("-", 1)[0]
        try:
            if not pid.isdigit() or found.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(found, ignore_errors=True)
        except OSError:  # gone meanwhile, or alive under another user
            continue


def observability() -> None:
    """JSON logs, and a fresh metrics directory shared by serve's processes (removed
    when serve exits): its web workers and evaluation worker all write their metrics
    there, and any worker's ``/metrics`` merges them."""
    logs.configure(logging.INFO)
    owner = os.getpid()
    _remove_stale_metrics_dirs()
    path = tempfile.mkdtemp(prefix=f"{_METRICS_DIR_PREFIX}{owner}-")
    os.environ[METRICS_DIR_ENV] = path

    def remove() -> None:
        if os.getpid() == owner:  # gunicorn's forked workers exit through atexit too
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)


def child_exit(_server: Any, worker: Any) -> None:
    """gunicorn's ``child_exit`` hook: a dead worker's live metrics go with it."""
    # Imported once the multiprocess directory is set: prometheus-client reads it then.
    from modelreg.runtime.prometheus import mark_process_dead

    mark_process_dead(worker.pid)


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
