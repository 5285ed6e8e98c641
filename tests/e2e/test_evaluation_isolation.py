"""Isolation levels end to end: refusal without strict, ``modelreg doctor``, ``/readyz``,
the job record's level, and serve's supervision of its embedded worker.

Real ``modelreg serve`` / ``modelreg worker`` / ``modelreg doctor`` processes. "bwrap
missing" is simulated by pointing ``MODELREG_EVALUATION_BWRAP`` at a path that does
not exist.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Server, StartServer, StartWorker, clean_environ
from tests.e2e.test_evaluation_workers import (
    FAST_POLL,
    _Eval,
    all_jobs_done,
    forest,
    joblib_bytes,
    list_jobs,
    prepare,
    register,
    run_detail,
    verified,
    wait_for,
)
from tests.e2e.test_wine_scenario import wine_holdout

pytestmark = pytest.mark.e2e

NO_BWRAP = {"MODELREG_EVALUATION_BWRAP": "/nonexistent/bwrap"}
MODELREG = Path(sys.executable).with_name("modelreg")


def doctor(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MODELREG), "doctor"],
        cwd=tmp_path,
        env=clean_environ(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def runs_code(source: str) -> bytes:
    code = textwrap.dedent(source).strip() + "\n"
    return pickle.dumps(_Eval(f"exec(compile({code!r}, 'runs', 'exec'), {{}})"))


def readyz(server: Server) -> tuple[int, dict[str, Any]]:
    response = server.session.get(f"{server.url}/readyz", timeout=5)
    return response.status_code, response.json()


def embedded_worker_pid(server: Server) -> int | None:
    """The pid of serve's ``modelreg worker`` child (the supervisor's), if one runs."""
    serve = server.proc.process.pid
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == serve and b"worker" in cmdline and fields[0] != "Z":
            return int(entry.name)
    return None


# -- doctor and refusal ---------------------------------------------------------------------


def test_modelreg_doctor_prints_each_check_and_the_level_a_worker_would_run(
    tmp_path: Path,
) -> None:
    here = doctor(tmp_path)
    assert here.returncode == 0, here.stdout + here.stderr
    lines = here.stdout.splitlines()
    for name in ("bwrap", "userns", "cgroup memory", "cgroup pids"):
        assert any(line.startswith(name) and " ok " in line for line in lines), here.stdout
    assert lines[-1].startswith("level") and " strict " in lines[-1]

    missing = doctor(tmp_path, **NO_BWRAP)
    assert missing.returncode == 1
    assert any(
        line.startswith("bwrap") and "FAIL" in line and "/nonexistent/bwrap" in line
        for line in missing.stdout.splitlines()
    ), missing.stdout
    assert " none " in missing.stdout.splitlines()[-1]
    assert "MODELREG_EVALUATION_ISOLATION=process" in missing.stdout

    chosen = doctor(tmp_path, **NO_BWRAP, MODELREG_EVALUATION_ISOLATION="process")
    assert chosen.returncode == 0
    assert " process " in chosen.stdout.splitlines()[-1]


def test_a_worker_refuses_to_start_without_strict_unless_process_is_chosen(
    start_server: StartServer, start_worker: StartWorker, tmp_path: Path
) -> None:
    server = start_server(args=["--no-evaluation-worker"])
    refused = start_worker(server, env=NO_BWRAP, args=["--once"])
    assert refused.process.wait(timeout=60) != 0
    log = refused.log()
    assert "refuses to start" in log and "evaluation_isolation" in log, log
    assert "MODELREG_EVALUATION_ISOLATION=process" in log

    holdout = wine_holdout()
    prepare(server, holdout)
    run_id = register(server, joblib_bytes(forest(holdout, 5, 0), tmp_path, "m"), "m.joblib")
    chosen = start_worker(
        server, env={**NO_BWRAP, "MODELREG_EVALUATION_ISOLATION": "process"}, args=["--once"]
    )
    assert chosen.process.wait(timeout=120) == 0, chosen.log()
    assert "isolation: process" in chosen.log()
    (done,) = list_jobs(server, run_id=run_id)
    assert done["state"] == "succeeded" and done["isolation"] == "process"

    # serve with its embedded worker refuses at once too, instead of restarting it forever.
    serve = subprocess.run(
        [str(MODELREG), "serve", "--evaluation-worker", "--port", "1"],
        cwd=tmp_path,
        env=clean_environ(**NO_BWRAP, MODELREG_DATABASE_URL=server.database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert serve.returncode != 0
    assert "evaluation_isolation" in serve.stderr, serve.stderr


# -- readyz, the job record, supervision -------------------------------------------------------


def test_the_embedded_worker_comes_back_after_it_is_killed_and_readyz_says_so_meanwhile(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(args=["--evaluation-worker"], env=FAST_POLL)
    status, body = readyz(server)
    assert status == 200, body
    assert body["evaluation"] == {"isolation": "strict", "embedded_worker": "ready"}
    first = embedded_worker_pid(server)
    assert first is not None

    os.kill(first, signal.SIGKILL)
    down = wait_for("readyz to report the worker down", lambda: readyz(server)[0] == 503)
    assert down
    status, body = readyz(server)
    if status == 503:
        assert body["error"]["code"] == "unavailable"
        assert "embedded evaluation worker" in body["error"]["message"]
    wait_for("readyz to be ready again", lambda: readyz(server)[0] == 200, timeout=60)
    second = embedded_worker_pid(server)
    assert second is not None and second != first
    assert server.session.get(f"{server.url}/healthz", timeout=5).status_code == 200

    # The restarted worker evaluates, at the strict level, and a model cannot reach the
    # server's port from its sandbox.
    holdout = wine_holdout()
    prepare(server, holdout)
    port = int(server.url.rsplit(":", 1)[1])
    probe_id = register(
        server,
        runs_code(
            f"""
            import socket
            try:
                socket.create_connection(('127.0.0.1', {port}), timeout=2)
                outcome = 'GOT a connection'
            except OSError as exc:
                outcome = 'DENIED: ' + type(exc).__name__
            raise RuntimeError('PROBE ' + outcome)
            """
        ),
        "probe.pkl",
    )
    good = forest(holdout, 10, 0)
    good_id = register(server, joblib_bytes(good, tmp_path, "good"), "good.joblib")
    done = wait_for("both jobs", lambda: all_jobs_done(server, 2), logs=lambda: server.log(80))
    states = {j["run_id"]: j for j in done}
    assert states[probe_id]["state"] == "failed"
    assert "PROBE DENIED" in states[probe_id]["error"], states[probe_id]["error"]
    assert states[good_id]["state"] == "succeeded" and states[good_id]["isolation"] == "strict"
    assert verified(run_detail(server, good_id))


def test_a_job_that_kills_its_worker_twice_ends_failed_and_the_worker_goes_on(
    start_server: StartServer, tmp_path: Path
) -> None:
    # The process level lets a model signal its worker (same user): that is what it does.
    server = start_server(
        args=["--evaluation-worker"],
        env={
            **FAST_POLL,
            "MODELREG_EVALUATION_ISOLATION": "process",
            "MODELREG_JOB_LEASE_SECONDS": "2",
        },
    )
    holdout = wine_holdout()
    prepare(server, holdout)
    killer = register(
        server,
        runs_code(
            """
            import os, signal
            # The child's parent is the fork server; the fork server's parent, the worker.
            stat = open(f'/proc/{os.getppid()}/stat').read()
            os.kill(int(stat.rsplit(')', 1)[1].split()[1]), signal.SIGKILL)
            """
        ),
        "killer.pkl",
    )

    def failed() -> dict[str, Any] | None:
        (job,) = list_jobs(server, run_id=killer)
        return job if job["state"] == "failed" else None

    job = wait_for("the killer's job to fail", failed, timeout=90, logs=lambda: server.log(80))
    assert job["attempts"] == 2
    assert "abandoned after 2 attempt(s)" in job["error"]

    time.sleep(0.1)
    good_id = register(server, joblib_bytes(forest(holdout, 5, 0), tmp_path, "good"), "good.joblib")

    def evaluated() -> dict[str, Any] | None:
        (found,) = list_jobs(server, run_id=good_id)
        return found if found["state"] == "succeeded" else None

    wait_for("a later run to be evaluated", evaluated, timeout=90, logs=lambda: server.log(80))
    assert readyz(server)[0] == 200
