"""Processes and databases of the benchmarks: gunicorn servers, throwaway databases, quiet.

Used by ``resolve.py`` and ``evalbench.py``. Everything here is
started by us and stopped by us: servers by their own process group, databases by
name, temporary directories by path.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import fill as filler  # noqa: E402
import loadgen  # noqa: E402

HOST = "127.0.0.1"
PG_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
CHAMPION_PATH = f"/api/v1/environments/{filler.ENV}/models/{filler.MODEL}"
FLOOR_PATH = f"/floor/{filler.ENV}/{filler.MODEL}"
NAGLE_PATH = f"/floor-nagle/{filler.ENV}/{filler.MODEL}"
# What `modelreg serve` gives gunicorn (service/cli/main.py), so the floor runs under the same.
KEEPALIVE_S = 5
TIMEOUT_S = 120
GRACEFUL_S = 30
TICK = os.sysconf("SC_CLK_TCK")
# Cores busy with the servers idle, above which the machine counts as not quiet.
QUIET_CORES = 0.15


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    kind: str  # "champion" | "floor"
    runs: int
    port: int
    path: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: we stop exactly it
            )

    def wait_ready(self, timeout: float = 60) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited; log:\n{self.log_tail()}")
            conn = loadgen.Connection(HOST, self.port, self.path)
            try:
                if conn.get() == 200:
                    return conn.body
            except OSError:
                pass
            finally:
                conn.close()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} server not ready; log:\n{self.log_tail()}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, GRACEFUL_S + 5), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def workers(self) -> list[int]:
        """Pids of the gunicorn workers: the children of the arbiter we started."""
        if self.proc is None:
            return []
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                found.append(int(entry.name))
        return found

    def cpu_probe(self) -> loadgen.CpuProbe:
        """CPU seconds of this server's workers and of the whole machine, from /proc."""
        workers = self.workers()

        def probe() -> tuple[float, float]:
            used = 0
            for pid in workers:
                with contextlib.suppress(OSError, IndexError, ValueError):
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    used += int(fields[11]) + int(fields[12])  # utime + stime
            with contextlib.suppress(OSError):
                cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
                # user nice system idle iowait irq softirq steal: all but idle and iowait
                busy = sum(int(x) for i, x in enumerate(cpu[:8]) if i not in (3, 4))
                return used / TICK, busy / TICK
            return used / TICK, 0.0

        return probe

    def owners(self, client_ports: list[int]) -> tuple[list[int | None], list[int]]:
        """Which worker holds each connection (Linux /proc: socket inode -> pid)."""
        inode_of_peer: dict[int, str] = {}
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError), open(table) as fh:
                for line in fh.readlines()[1:]:
                    f = line.split()
                    local, remote, state, inode = f[1], f[2], f[3], f[9]
                    if int(local.rsplit(":", 1)[1], 16) == self.port and state == "01":
                        inode_of_peer[int(remote.rsplit(":", 1)[1], 16)] = inode
        workers = self.workers()
        pid_of_inode: dict[str, int] = {}
        for pid in workers:
            with contextlib.suppress(OSError):
                for fd in os.scandir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        link = os.readlink(fd.path)
                        if link.startswith("socket:["):
                            pid_of_inode[link[8:-1]] = pid
        return [pid_of_inode.get(inode_of_peer.get(port, "")) for port in client_ports], workers

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-3000:]
        return ""


# The serving layers' reader token: a row in every benchmark database, looked up by
# its hash on each request exactly as in production (not the admin shortcut).
READER_SECRET = "mr_bench-reader-secret-not-for-production"


def add_reader_token(url: str) -> None:
    from modelreg.db.models import ApiToken
    from modelreg.db.session import Database
    from modelreg.roles import secret_digest

    db = Database(url)
    try:
        with db.unit_of_work() as session:
            session.add(
                ApiToken(
                    name="bench-reader",
                    name_key="bench-reader",
                    role="reader",
                    secret_sha256=secret_digest(READER_SECRET),
                    prefix=READER_SECRET[:9],
                    created_by="bench",
                )
            )
            session.commit()
    finally:
        db.dispose()
    loadgen.HEADERS["Authorization"] = f"Bearer {READER_SECRET}"


def server_env(url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
    env.update(
        MODELREG_DATABASE_URL=url,
        MODELREG_ARTIFACT_ROOT=str(data_dir / "artifacts"),
        MODELREG_DATA_DIR=str(data_dir),
    )
    return env


def champion_server(runs: int, url: str, data_dir: Path, workers: int, threads: int) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "modelreg", "serve", "--host", HOST, "--port", str(port)]
    argv += ["--workers", str(workers), "--threads", str(threads)]
    return Server(
        "champion", runs, port, CHAMPION_PATH, argv, server_env(url, data_dir),
        data_dir / "champion.log",
    )  # fmt: skip


def floor_server(
    runs: int, url: str, data_dir: Path, workers: int, threads: int, accesslog: bool
) -> Server:
    port = free_port()
    argv = [
        sys.executable, "-m", "gunicorn", "--worker-class", "gthread",
        "--workers", str(workers), "--threads", str(threads),
        "--keep-alive", str(KEEPALIVE_S), "--timeout", str(TIMEOUT_S),
        "--graceful-timeout", str(GRACEFUL_S), "--bind", f"{HOST}:{port}",
        "--chdir", str(BENCH), "floor_app:app",
    ] + (["--access-logfile", "-"] if accesslog else [])  # fmt: skip
    return Server(
        "floor", runs, port, FLOOR_PATH, argv, server_env(url, data_dir), data_dir / "floor.log"
    )


@dataclass
class Databases:
    """Throwaway databases: SQLite files in the temp dir, or PostgreSQL databases."""

    backend: str
    root: Path
    admin_url: str
    created: list[str] = field(default_factory=list)

    def new(self, tag: int | str) -> str:
        """A fresh database; on SQLite a file in ``root/runs-<tag>`` (the caller's directory)."""
        if self.backend == "sqlite":
            return f"sqlite:///{self.root / f'runs-{tag}' / 'modelreg.db'}"
        name = f"modelreg_bench_{secrets.token_hex(4)}_{tag}"
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        self.created.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        if not self.created:
            return
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                for name in self.created:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()
        self.created.clear()


def machine_busy_cores(seconds: float = 1.0) -> float:
    """Cores the machine keeps busy while we do nothing (other processes), from /proc/stat."""

    def busy() -> float:
        cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        return sum(int(x) for i, x in enumerate(cpu[:8]) if i not in (3, 4)) / TICK

    try:
        before = busy()
        time.sleep(seconds)
        return (busy() - before) / seconds
    except (OSError, ValueError):
        return float("nan")


@dataclass
class Quiet:
    """Keeps rounds away from other processes' bursts of CPU (a shared machine).

    Before a round it waits until the machine, servers idle, is quiet; after it, a
    busy machine means the round was disturbed, and it is measured again. Waiting
    stops when ``budget_s`` is spent; from then on rounds are kept, and counted.
    """

    budget_s: float
    threshold: float = QUIET_CORES
    disturbed_kept: int = 0
    repeated: int = 0

    def wait(self) -> bool:
        while (busy := machine_busy_cores(0.5)) > self.threshold:
            if self.budget_s <= 0:
                return False
            log(f"other processes use {busy:.2f} cores; waiting for a quiet machine")
            time.sleep(2)
            self.budget_s -= 2.5
        return True

    def still_quiet(self) -> bool:
        return machine_busy_cores(0.5) <= self.threshold
