"""The image's entrypoint, run on the host: there is no Docker engine on our machines.

``docker/Dockerfile``'s ``CMD``, ``ENV`` and ``HEALTHCHECK`` are read from the file
and run as written, with the environment adapted to the host: the data directory
(``/data``) becomes a temporary directory, the port a free one, and the bind
address loopback only (the image binds every interface). The same goes for
``docker/compose.yaml``: its migration, service and worker commands, with their
environments, run against a fresh PostgreSQL database. What needs an image to
observe (the build itself, ``USER``) is checked as text.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from modelreg.db import migrate
from tests.conftest import PG_ADMIN_URL, drop_postgres_database
from tests.e2e.conftest import (
    STOP_TIMEOUT_S,
    Server,
    ServerProcess,
    TimeoutSession,
    WorkerProcess,
    clean_environ,
    free_port,
    launch,
)
from tests.e2e.test_evaluation_workers import (
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

DOCKER = Path(__file__).resolve().parents[2] / "docker"
IMAGE_DATA_DIR = "/data"


@dataclass
class Image:
    """What docker/Dockerfile says about running the image."""

    env: dict[str, str]
    cmd: list[str]
    user: str | None
    healthcheck: list[str]
    healthcheck_timeout_s: float


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append((keyword.upper(), args.strip()))
        pending = ""
    return out


def _command(args: str) -> list[str]:
    """A CMD's arguments: the exec form (JSON) as is, the shell form through ``sh -c``."""
    if args.startswith("["):
        command = json.loads(args)
        assert isinstance(command, list) and all(isinstance(a, str) for a in command)
        return command
    return ["/bin/sh", "-c", args]


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit in sorted(units, key=len, reverse=True):
        if duration.endswith(unit):
            return float(duration[: -len(unit)]) * units[unit]
    raise AssertionError(f"unknown duration {duration!r}")


def read_image(path: Path = DOCKER / "Dockerfile") -> Image:
    env: dict[str, str] = {}
    cmd: list[str] | None = None
    user: str | None = None
    healthcheck: list[str] | None = None
    timeout_s = 30.0  # Docker's default
    for keyword, args in _instructions(path.read_text()):
        if keyword == "FROM":  # a later stage starts afresh
            env, cmd, user, healthcheck = {}, None, None, None
        elif keyword == "ENV":
            for token in shlex.split(args):
                key, sep, value = token.partition("=")
                assert sep, f"ENV {args!r}: use the KEY=value form"
                env[key] = value
        elif keyword == "CMD":
            cmd = _command(args)
        elif keyword == "USER":
            user = args
        elif keyword == "HEALTHCHECK":
            options, sep, check = args.partition("CMD ")
            assert sep, f"HEALTHCHECK {args!r}: no CMD"
            for option in options.split():
                if option.startswith("--timeout="):
                    timeout_s = _seconds(option.removeprefix("--timeout="))
            healthcheck = _command(check.strip())
    assert cmd is not None and healthcheck is not None, "the Dockerfile needs CMD and HEALTHCHECK"
    return Image(env, cmd, user, healthcheck, timeout_s)


def read_compose(path: Path = DOCKER / "compose.yaml") -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(path.read_text())["services"]
    return services


def on_host(value: str, data_dir: Path) -> str:
    """A path in the image's data volume, moved to the test's data directory."""
    if value == IMAGE_DATA_DIR or value.startswith(IMAGE_DATA_DIR + "/"):
        return str(data_dir) + value[len(IMAGE_DATA_DIR) :]
    return value


def host_env(
    image: Image, service_env: Mapping[str, str], data_dir: Path, port: int, **overrides: str
) -> dict[str, str]:
    """The container's environment (image ENV, then the service's) adapted to the host."""
    env = clean_environ()  # no stray MODELREG_*; the e2e admin token
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for key, value in {**image.env, **service_env}.items():
        env[key] = on_host(str(value), data_dir)
    env["MODELREG_HOST"] = "127.0.0.1"  # the image binds 0.0.0.0: not on a test host
    env["MODELREG_PORT"] = str(port)
    env.update(overrides)
    return env


def start(
    command: list[str], base: Path, data_dir: Path, env_for: Any
) -> tuple[ServerProcess, Path]:
    """``command`` as the container would run it (cwd = the data dir, as WORKDIR)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):  # another process may take the free port before we bind it
        port = free_port()
        log_path = base / f"entrypoint-{attempt}.log"
        try:
            return launch(
                command, cwd=data_dir, env=env_for(port), port=port, log_path=log_path
            ), log_path
        except pytest.fail.Exception:
            log = log_path.read_text(errors="replace")
            in_use = "is in use" in log or "Connection in use" in log  # serve's, gunicorn's
            if not in_use or attempt == 2:
                raise
    raise AssertionError("unreachable")


def healthcheck(image: Image, env: Mapping[str, str]) -> int:
    done = subprocess.run(
        image.healthcheck,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=image.healthcheck_timeout_s + 5,
        check=False,
    )
    return done.returncode


def test_the_image_runs_as_an_unprivileged_user_with_a_curl_free_healthcheck() -> None:
    image = read_image()
    assert image.user not in (None, "", "root", "0", "0:0"), image.user
    assert image.healthcheck[0] == "python", "the slim image has python, not curl"
    assert image.cmd[0] == "modelreg"


def test_the_image_installs_the_server_extra_that_serve_and_the_worker_need() -> None:
    """The base install is only the client: an image without the extra could not serve."""
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert 'pip install ".[server]"' in dockerfile


def test_the_image_and_the_compose_worker_provide_the_strict_evaluation_sandbox() -> None:
    """What the strict level needs in a container (not run here: no Docker engine)."""
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "apt-get install -y --no-install-recommends bubblewrap" in dockerfile
    worker = read_compose()["worker"]
    # bubblewrap's namespaces: Docker's default seccomp and AppArmor profiles refuse them.
    assert {"seccomp=unconfined", "apparmor=unconfined"} <= set(worker["security_opt"])
    assert worker["cgroup"] == "private"
    # The container's cgroup is the sandbox's limit: it must have one.
    assert worker["environment"]["MODELREG_EVALUATION_CGROUP"] == "container"
    assert worker["mem_limit"] and int(worker["pids_limit"]) > 0
    assert "MODELREG_EVALUATION_ISOLATION" not in worker["environment"]  # strict, the default
    assert not worker.get("privileged", False)


def test_the_images_command_serves_and_its_healthcheck_passes(tmp_path: Path) -> None:
    image = read_image()
    data_dir = tmp_path / "data"  # the image's /data volume (and WORKDIR)
    envs: dict[int, dict[str, str]] = {}

    def env_for(port: int) -> dict[str, str]:
        envs[port] = host_env(image, {}, data_dir, port)
        return envs[port]

    proc, _ = start(image.cmd, tmp_path, data_dir, env_for)
    env = envs[int(proc.url.rsplit(":", 1)[1])]
    try:
        with TimeoutSession(timeout=30) as admin, TimeoutSession(timeout=30, token=None) as anon:
            assert anon.get(f"{proc.url}/healthz").json() == {"status": "ok"}
            assert anon.get(f"{proc.url}/api/v1/models").status_code == 401
            created = admin.post(f"{proc.url}/api/v1/models", json={"name": "entrypoint"})
            assert created.status_code == 201, created.text
            assert admin.get(f"{proc.url}/api/v1/models/entrypoint").status_code == 200
        assert healthcheck(image, env) == 0, proc.log()
        # The embedded database lives in the image's data directory.
        assert (data_dir / "modelreg.db").is_file()
        assert (data_dir / "artifacts").is_dir()
    finally:
        proc.process.send_signal(signal.SIGTERM)  # `docker stop`
        code = proc.process.wait(timeout=STOP_TIMEOUT_S + 30)
        proc.stop()
    assert code == 0, proc.log()
    assert healthcheck(image, env) != 0, "the health check notices a server that is gone"


@pytest.fixture
def empty_postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL database without any schema: the compose file's migration creates it."""
    request.getfixturevalue("postgres_template")  # skips (or fails under CI) without PostgreSQL
    name = f"modelreg_test_compose_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        drop_postgres_database(url)


def test_the_compose_files_migration_service_and_worker_commands_run_on_postgresql(
    tmp_path: Path, empty_postgres_url: str
) -> None:
    image, services = read_image(), read_compose()
    url = empty_postgres_url
    data_dir = tmp_path / "data"  # the `artifacts` volume, mounted at /data
    data_dir.mkdir()
    for name in ("migrate", "modelreg", "worker"):
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile", name
        compose_url = services[name]["environment"]["MODELREG_DATABASE_URL"]
        assert compose_url.startswith("postgresql+psycopg2://"), compose_url

    def env_of(name: str, port: int) -> dict[str, str]:
        return host_env(
            image, services[name]["environment"], data_dir, port, MODELREG_DATABASE_URL=url
        )

    def command_of(name: str) -> list[str]:
        command = services[name].get("command", image.cmd)
        return command if isinstance(command, list) else shlex.split(command)

    # The one-shot migration.
    migration = subprocess.run(
        command_of("migrate"),
        env=env_of("migrate", free_port()),
        cwd=data_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migration.returncode == 0, migration.stdout + migration.stderr
    assert migrate.is_up_to_date(url)

    # The service: the image's CMD (the compose file gives no command) and health check.
    envs: dict[int, dict[str, str]] = {}

    def service_env(port: int) -> dict[str, str]:
        envs[port] = env_of("modelreg", port)
        return envs[port]

    proc, _ = start(command_of("modelreg"), tmp_path, data_dir, service_env)
    env = envs[int(proc.url.rsplit(":", 1)[1])]
    worker: WorkerProcess | None = None
    server = Server(
        url=proc.url,
        session=TimeoutSession(),
        proc=proc,
        database_url=url,
        artifact_root=Path(env["MODELREG_ARTIFACT_ROOT"]),
        workdir=data_dir,
        workers=int(env.get("MODELREG_WORKERS", "2")),
    )
    try:
        assert healthcheck(image, env) == 0, proc.log()
        assert server.session.get(f"{proc.url}/readyz").status_code == 200

        # The worker, on the same database and volume, measures a registered run.
        log_path = tmp_path / "worker.log"
        with log_path.open("ab") as log:
            worker = WorkerProcess(
                subprocess.Popen(
                    command_of("worker"),
                    cwd=data_dir,
                    # No container here: the worker's own cgroup, not the container's.
                    env={**env_of("worker", free_port()), "MODELREG_EVALUATION_CGROUP": ""},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                ),
                log_path,
            )
        holdout = wine_holdout()
        upload_holdout(server, holdout)
        create_model_in_staging(server)
        create_verified_policy(server)
        run_id = register(
            server, joblib_bytes(forest(holdout, 3, seed=2), tmp_path, "rf"), "rf.joblib"
        )
        done = wait_for(
            "the worker's job", lambda: all_jobs_done(server, 1), logs=logs_of(server, worker)
        )
        assert done[0]["state"] == "succeeded", done
        assert verified(server.expect(server.session.get(server.api(f"/runs/{run_id}")), 200))
    finally:
        if worker is not None:
            worker.stop()
        server.close()
