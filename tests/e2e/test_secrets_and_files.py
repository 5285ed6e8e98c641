"""The admin token is in no server process's environment, and the embedded database is
readable by the service's user alone: checked on a real ``modelreg serve``."""

from __future__ import annotations

import stat
import time
from pathlib import Path

from tests.e2e.conftest import ADMIN_TOKEN, Server, StartServer, TimeoutSession


def server_processes(server: Server) -> list[int]:
    """The gunicorn master and every process it started (web workers, evaluation worker)."""
    master = server.proc.process.pid
    found = [master]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            found.append(int(entry.name))
    return found


def wait_for_children(server: Server, count: int) -> list[int]:
    deadline = time.monotonic() + 20
    while len(pids := server_processes(server)) < count + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(pids) >= count + 1, (pids, server.log())
    return pids


def assert_token_in_no_environment(pids: list[int]) -> None:
    for pid in pids:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert ADMIN_TOKEN.encode() not in environ, pid
        assert b"MODELREG_ADMIN_TOKEN=" not in environ, pid
        assert ADMIN_TOKEN.encode() not in cmdline, pid


def test_no_server_process_has_the_admin_token_in_its_environment_yet_it_works(
    start_server: StartServer,
) -> None:
    server = start_server(workers=2, args=["--evaluation-worker"])

    pids = wait_for_children(server, 3)  # 2 web workers + the evaluation worker

    assert_token_in_no_environment(pids)
    assert server.session.get(server.api("/tokens")).status_code == 200
    wrong = TimeoutSession(token=ADMIN_TOKEN + "x")
    assert wrong.get(server.api("/tokens")).status_code == 401


def test_the_admin_token_may_come_from_a_file_as_docker_secrets_do(
    start_server: StartServer, tmp_path: Path
) -> None:
    secret = tmp_path / "admin_token"
    secret.write_text(ADMIN_TOKEN + "\n")
    secret.chmod(0o600)

    server = start_server(admin_token=False, env={"MODELREG_ADMIN_TOKEN_FILE": str(secret)})

    assert server.session.get(server.api("/tokens")).status_code == 200
    assert_token_in_no_environment(wait_for_children(server, 2))


def test_the_embedded_database_and_data_directory_are_the_service_users_alone(
    embedded_server: Server,
) -> None:
    server = embedded_server
    server.expect(server.session.post(server.api("/models"), json={"name": "private"}), 201)
    data = server.workdir / "modelreg-data"

    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data.glob("modelreg.db*")}
    assert {"modelreg.db", "modelreg.db-wal", "modelreg.db-shm"} <= set(files), files
    assert {name: mode for name, mode in files.items() if mode != 0o600} == {}
