"""The ``modelreg`` command: ``serve`` and ``db``."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from gunicorn.app.base import BaseApplication
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from service.config import ENV_PREFIX, Settings, load_settings
from service.db import migrate
from service.errors import ConfigError


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    """Gunicorn with the app built inside each worker (no shared connections)."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from service.app import create_app

        return create_app(self.settings)


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def _database_errors(url: str) -> Iterator[None]:
    """A database that cannot be reached is a one-line error, not a traceback."""
    try:
        yield
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise click.ClickException(f"database {_safe_url(url)}: {reason}") from None


@click.group()
@click.version_option(package_name="modelreg")
def main() -> None:
    """modelreg: model registry and promotion service."""


@main.command()
@click.option("--once", is_flag=True, help="process the jobs waiting now, then exit")
@click.option("--max-jobs", type=int, default=None, help="exit after this many jobs")
@click.option("--parent-pid", type=int, default=None, hidden=True)
def worker(once: bool, max_jobs: int | None, parent_pid: int | None) -> None:
    """Run an evaluation worker: claim jobs, evaluate in a sandbox, store results.

    Start any number, on any machines that share the database and artifact store.
    SIGTERM or SIGINT stops it after the job in hand.
    """
    from service.artifacts import LocalArtifactStore
    from service.db.session import Database
    from service.evaluation.worker import Worker

    settings = _settings()
    url = settings.resolved_database_url
    with _database_errors(url):
        if settings.is_embedded:
            migrate.upgrade(url)
        elif not migrate.is_up_to_date(url):
            raise click.ClickException(
                "the database schema is not current; run `modelreg db upgrade` first"
            )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    db = Database(url)
    w = Worker(db, LocalArtifactStore(settings.resolved_artifact_root), settings)
    click.echo(f"modelreg worker {w.name} on {_safe_url(url)}", err=True)
    try:
        w.run(stop, max_jobs=max_jobs, until_idle=once, parent_pid=parent_pid)
    finally:
        db.dispose()


def _start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    """The embedded default's worker, beside gunicorn; it stops when serve does."""
    env = dict(os.environ)
    env[f"{ENV_PREFIX}DATABASE_URL"] = settings.resolved_database_url
    env[f"{ENV_PREFIX}ARTIFACT_ROOT"] = str(settings.resolved_artifact_root)
    return subprocess.Popen(
        [sys.executable, "-m", "service", "worker", "--parent-pid", str(os.getpid())],
        env=env,
    )


def _stop_worker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@main.command()
@click.option("--host", default=None, help="address to bind [config: host, 127.0.0.1]")
@click.option("--port", type=int, default=None, help="port [config: port, 5000]")
@click.option("--workers", type=int, default=None, help="worker processes [config: workers, 2]")
@click.option("--threads", type=int, default=None, help="threads per worker [config: threads]")
@click.option(
    "--evaluation-worker/--no-evaluation-worker",
    default=None,
    help="also run one evaluation worker [config: serve_worker, auto = on with SQLite]",
)
def serve(
    host: str | None,
    port: int | None,
    workers: int | None,
    threads: int | None,
    evaluation_worker: bool | None,
) -> None:
    """Serve the API with gunicorn. Upgrades the embedded SQLite database first."""
    serve_worker = None if evaluation_worker is None else str(evaluation_worker).lower()
    settings = _settings(
        host=host, port=port, workers=workers, threads=threads, serve_worker=serve_worker
    )
    url = settings.resolved_database_url
    with _database_errors(url):
        if settings.is_embedded:
            migrate.upgrade(url)
        elif not migrate.is_up_to_date(url):
            raise click.ClickException(
                "the database schema is not current; run `modelreg db upgrade` first"
            )
    options = {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        "threads": settings.threads,
        "worker_class": "gthread",
        "keepalive": 5,
        "accesslog": "-" if settings.access_log else None,
        "timeout": 120,
        "graceful_timeout": 30,
        # gunicorn 27's control socket is one path per user: two servers would share it.
        "control_socket_disable": True,
    }
    click.echo(f"modelreg serving on http://{options['bind']} ({_safe_url(url)})", err=True)
    worker_process = _start_worker(settings) if settings.runs_worker_in_serve else None
    try:
        _Gunicorn(settings, options).run()
    finally:
        if worker_process is not None:
            _stop_worker(worker_process)


@main.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    settings = _settings()
    with _database_errors(settings.resolved_database_url):
        migrate.upgrade(settings.resolved_database_url, revision)
    click.echo(f"database at {migrate.head_revision() if revision == 'head' else revision}")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION (e.g. base)."""
    url = _settings().resolved_database_url
    with _database_errors(url):
        migrate.downgrade(url, revision)


@db.command("current")
def db_current() -> None:
    """Print the schema revision of the database and the newest one known."""
    url = _settings().resolved_database_url
    engine = create_engine(url)
    try:
        with _database_errors(url):
            current = migrate.current_revision(engine)
        click.echo(f"current: {current}  head: {migrate.head_revision()}")
    finally:
        engine.dispose()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
