"""The ``modelreg`` command: ``serve``, ``worker``, ``doctor``, ``token``, ``db``, ``openapi``
and the HTTP commands.

The base install (``pip install modelreg``) runs ``modelreg --help`` and every HTTP
command, so importing this module loads click, the configuration and the client, and
nothing of the server: each server command imports the server's modules (Flask,
SQLAlchemy, Alembic, gunicorn, the evaluation stack) in its body, when it runs (click's
"deferring imports" way; a lazily loading group would import them all for ``--help``,
which needs every command's help). Without the server extra, a server command ends
with ``install modelreg[server]`` and exit status 2 (:mod:`modelreg.cli.server_extra`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from modelreg.cli import remote
from modelreg.cli.common import grid
from modelreg.cli.server_extra import ServerCommand, ServerGroup
from modelreg.config import Settings, load_settings
from modelreg.errors import ConfigError


def _is_loopback(host: str) -> bool:
    """
    >>> _is_loopback("127.0.0.1"), _is_loopback("::1"), _is_loopback("localhost")
    (True, True, True)
    >>> _is_loopback("0.0.0.0"), _is_loopback("example.com")
    (False, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _prepare_database(settings: Settings) -> None:
    """Migrate the embedded database; refuse an external one that is not current."""
    from modelreg.db import migrate

    url = settings.resolved_database_url
    with _database_errors(url):
        if settings.is_embedded:
            migrate.upgrade(url)
        elif not migrate.is_up_to_date(url):
            raise click.ClickException(
                "the database schema is not current; run `modelreg db upgrade` first"
            )


def _clean_artifact_tmp(settings: Settings) -> None:
    """Remove the temporary files of uploads cut short by a crash (before workers fork)."""
    from modelreg.storage.artifacts import LocalArtifactStore

    removed = LocalArtifactStore(settings.resolved_artifact_root).clean_tmp()
    if removed:
        click.echo(f"removed {len(removed)} abandoned temporary upload file(s)", err=True)


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def _database_errors(url: str) -> Iterator[None]:
    """A database that cannot be reached is a one-line error, not a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise click.ClickException(f"database {_safe_url(url)}: {reason}") from None


@click.group()
@click.version_option(package_name="modelreg")
def main() -> None:
    """modelreg: model registry and promotion service."""


def _refuse_without_isolation(settings: Settings) -> None:
    """serve with an embedded worker: fail at once, not in a restart loop, without strict."""
    from modelreg.evaluation.confined import level_that_runs, probe

    if settings.evaluation_isolation == "process":
        return
    level, reason = level_that_runs(settings, probe(settings))
    if level is None:
        raise click.ClickException(f"the embedded evaluation worker refuses to start: {reason}")


@main.command(cls=ServerCommand)
def openapi() -> None:
    """Print the HTTP API's OpenAPI document (the form of docs/openapi.json)."""
    from modelreg.app import openapi_snapshot

    click.echo(openapi_snapshot(), nl=False)


@main.command(cls=ServerCommand)
def doctor() -> None:
    """Check what the evaluation sandbox needs: bwrap, user namespaces, cgroups.

    Prints each check and the isolation level a worker would run at here; exits 1
    when a worker would refuse to start (strict configured but not available).
    """
    from modelreg.evaluation.confined import level_that_runs, probe

    settings = _settings()
    checks = probe(settings)
    level, reason = level_that_runs(settings, checks)
    rows = [[c.name, "ok" if c.ok else "FAIL", c.detail] for c in checks]
    click.echo(grid([*rows, ["level", level or "none", f"({reason})"]]))
    if level is None:
        sys.exit(1)


@main.command(cls=ServerCommand)
@click.option("--once", is_flag=True, help="process the jobs waiting now, then exit")
@click.option("--max-jobs", type=int, default=None, help="exit after this many jobs")
@click.option("--parent-pid", type=int, default=None, hidden=True)
@click.option("--state-file", default=None, hidden=True)
def worker(
    once: bool, max_jobs: int | None, parent_pid: int | None, state_file: str | None
) -> None:
    """Run an evaluation worker: claim jobs, evaluate in a sandbox, store results.

    Start any number, on any machines that share the database and artifact store.
    SIGTERM or SIGINT stops it after the job in hand.
    """
    from modelreg.db.session import Database
    from modelreg.evaluation.cgroups import StrictUnavailable
    from modelreg.evaluation.worker import Worker, sandbox_for
    from modelreg.runtime import logs, serving_state
    from modelreg.storage.artifacts import LocalArtifactStore

    settings = _settings()
    url = settings.resolved_database_url
    _prepare_database(settings)
    logs.configure(logging.INFO)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        executor = sandbox_for(settings)
    except StrictUnavailable as exc:
        raise click.ClickException(f"the worker refuses to start: {exc}") from None
    db = Database(url, settle_seconds=settings.settle_seconds)
    w = Worker(db, LocalArtifactStore(settings.resolved_artifact_root), settings, executor=executor)
    click.echo(f"modelreg worker {w.name} on {_safe_url(url)} (isolation: {w.isolation})", err=True)

    def ready() -> None:
        if state_file is not None:
            serving_state.update(state_file, state="ready", pid=os.getpid(), isolation=w.isolation)

    try:
        w.run(stop, max_jobs=max_jobs, until_idle=once, parent_pid=parent_pid, ready=ready)
    finally:
        close = getattr(executor, "close", None)
        if close is not None:
            close()
        db.dispose()


class CannotServe(click.ClickException):
    """The address to serve on is taken or not this machine's: like a usage error, exit 2."""

    exit_code = 2


@main.command(cls=ServerCommand)
@click.option(
    "--host", default=None, help="address to bind [env: MODELREG_HOST; config: host, 127.0.0.1]"
)
@click.option(
    "--port", type=int, default=None, help="port [env: MODELREG_PORT; config: port, 5000]"
)
@click.option("--workers", type=int, default=None, help="worker processes [config: workers, 2]")
@click.option("--threads", type=int, default=None, help="threads per worker [config: threads]")
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    default=False,
    help="no tokens: every caller is an anonymous admin (loopback addresses only)",
)
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
    insecure_no_auth: bool,
) -> None:
    """Serve the API with gunicorn. Upgrades the embedded SQLite database first.

    A port already in use (or an address not this machine's) is one line and exit
    status 2, before anything starts.

    MODELREG_ADMIN_TOKEN (or a file named by MODELREG_ADMIN_TOKEN_FILE) is read at
    start and kept only as its SHA-256: no process of the server has it in its
    environment (``modelreg.runtime.secrets``).
    """
    from modelreg.runtime import secrets

    if sys.argv[1:2] == ["serve"]:  # the command line itself, not an in-process call
        secrets.reexec_without_token_in_environment(sys.argv[1:])
    # Imported before anything is set up: without the server extra, nothing starts.
    from modelreg.cli import serving

    inherited = secrets.take_inherited_token()
    serve_worker = None if evaluation_worker is None else str(evaluation_worker).lower()
    settings = _settings(
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        serve_worker=serve_worker,
        insecure_no_auth=insecure_no_auth or None,
        admin_token=inherited,
    )
    # From here on only the digest: the workers (forked) and the evaluation worker
    # (which needs no token) never see the secret, nor where it came from.
    settings = dataclasses.replace(
        settings, admin_token="", admin_token_sha256=settings.admin_token_digest
    )
    os.environ.pop(secrets.TOKEN_FILE_ENV, None)
    if settings.insecure_no_auth and not _is_loopback(settings.host):
        raise click.ClickException(
            f"--insecure-no-auth serves without access control: bind it to a loopback "
            f"address (127.0.0.1, ::1, localhost), not {settings.host!r}"
        )
    unbindable = serving.cannot_listen(settings.host, settings.port)
    if unbindable is not None:
        raise CannotServe(unbindable)
    if settings.runs_worker_in_serve:
        _refuse_without_isolation(settings)
    serving.observability()
    url = settings.resolved_database_url
    _prepare_database(settings)
    _clean_artifact_tmp(settings)
    click.echo(
        f"modelreg serving on http://{settings.host}:{settings.port} ({_safe_url(url)})", err=True
    )
    serving.run(settings)


@main.group(cls=ServerGroup)
def token() -> None:
    """API tokens, straight in the database (bootstrapping; no server needed)."""


@token.command("create")
@click.option("--name", required=True, help="who the token is for (recorded as the actor)")
@click.option("--role", required=True, type=click.Choice(["reader", "ci", "release", "admin"]))
@click.option("--expires-at", type=click.DateTime(), default=None, help="UTC, e.g. 2027-01-31")
def token_create(name: str, role: str, expires_at: Any) -> None:
    """Create a token and print its secret (shown this once)."""
    from datetime import UTC

    from modelreg.access import tokens
    from modelreg.db.session import Database
    from modelreg.errors import ServiceError
    from modelreg.roles import Caller

    settings = _settings()
    _prepare_database(settings)
    url = settings.resolved_database_url
    db = Database(url)
    try:
        with _database_errors(url), db.unit_of_work() as session:
            when = expires_at.replace(tzinfo=UTC) if expires_at is not None else None
            try:
                created = tokens.create(
                    session,
                    name,
                    role,
                    expires_at=when,
                    caller=Caller("modelreg token create", "cli"),
                )
            except ServiceError as exc:
                raise click.ClickException(exc.message) from None
    finally:
        db.dispose()
    click.echo(f"token {created.token.id} {name!r} ({role}); its secret, shown once:", err=True)
    click.echo(created.secret)


@token.command("list")
def token_list() -> None:
    """List tokens (never their secrets)."""
    from sqlalchemy import select

    from modelreg.access import tokens
    from modelreg.db.models import ApiToken
    from modelreg.db.session import Database

    url = _settings().resolved_database_url
    db = Database(url)
    try:
        with _database_errors(url), db.unit_of_work(write=False) as session:
            for t in session.scalars(select(ApiToken).order_by(ApiToken.id)):
                click.echo(f"{t.id}\t{t.name}\t{t.role}\t{tokens.state(t)}\t{t.prefix}…")
    finally:
        db.dispose()


@token.command("revoke")
@click.argument("token_id", type=int)
def token_revoke(token_id: int) -> None:
    """Revoke a token by id: refused from this moment on."""
    from modelreg.access import tokens
    from modelreg.db.session import Database
    from modelreg.errors import ServiceError
    from modelreg.roles import Caller

    url = _settings().resolved_database_url
    db = Database(url)
    try:
        with _database_errors(url), db.unit_of_work() as session:
            try:
                tokens.revoke(session, token_id, caller=Caller("modelreg token revoke", "cli"))
            except ServiceError as exc:
                raise click.ClickException(exc.message) from None
    finally:
        db.dispose()
    click.echo(f"token {token_id} revoked", err=True)


@main.group(cls=ServerGroup)
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    from modelreg.db import migrate

    settings = _settings()
    with _database_errors(settings.resolved_database_url):
        migrate.upgrade(settings.resolved_database_url, revision)
    click.echo(f"database at {migrate.head_revision() if revision == 'head' else revision}")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION (e.g. base)."""
    from modelreg.db import migrate

    url = _settings().resolved_database_url
    with _database_errors(url):
        migrate.downgrade(url, revision)


@db.command("current")
def db_current() -> None:
    """Print the schema revision of the database and the newest one known."""
    from sqlalchemy import create_engine

    from modelreg.db import migrate

    url = _settings().resolved_database_url
    engine = create_engine(url)
    try:
        with _database_errors(url):
            current = migrate.current_revision(engine)
        click.echo(f"current: {current}  head: {migrate.head_revision()}")
    finally:
        engine.dispose()


remote.add_to(main)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
