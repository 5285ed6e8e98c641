"""A ``modelreg serve`` started and stopped by a benchmark, and HTTP helpers for it.

Used by ``upload.py`` and ``register.py``: one server in a temporary directory (its
database, artifact root and log), an admin token through ``MODELREG_ADMIN_TOKEN``,
multipart uploads streamed with ``http.client``, worker memory read from ``/proc``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from modelreg.client.transport import MultipartStream  # noqa: E402

HOST = "127.0.0.1"
ADMIN_TOKEN = "bench-admin-token-not-for-production"
BLOCK = 1024 * 1024


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class ModelregServer:
    """``modelreg serve`` in its own process group; always stopped by ``stop``."""

    def __init__(
        self, data_dir: Path, database_url: str | None = None, workers: int = 1, threads: int = 4
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.artifact_root = data_dir / "artifacts"
        self.database_url = database_url or f"sqlite:///{data_dir / 'modelreg.db'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
        env.update(
            MODELREG_DATABASE_URL=self.database_url,
            MODELREG_ARTIFACT_ROOT=str(self.artifact_root),
            MODELREG_DATA_DIR=str(data_dir),
            MODELREG_ADMIN_TOKEN=ADMIN_TOKEN,
        )
        self.argv = [
            sys.executable, "-m", "modelreg", "serve", "--host", HOST,
            "--port", str(self.port), "--workers", str(workers), "--threads", str(threads),
            "--no-evaluation-worker",
        ]  # fmt: skip
        self.env = env
        self.log_path = data_dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=str(ROOT),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited; log:\n{self.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection(HOST, self.port, timeout=5)
                try:
                    conn.request("GET", "/healthz")
                    if conn.getresponse().status == 200 and self.workers():
                        return
                finally:
                    conn.close()
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready; log:\n{self.log_tail()}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 35), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def workers(self) -> list[int]:
        if self.proc is None:
            return []
        pid = self.proc.pid
        with contextlib.suppress(OSError):
            return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        return []

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-3000:]
        return ""

    def connection(self, timeout: float = 600) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(HOST, self.port, timeout=timeout, blocksize=BLOCK)


HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def call_json(conn: http.client.HTTPConnection, method: str, path: str, body: Any = None) -> Any:
    headers = dict(HEADERS)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, "/api/v1" + path, body=data, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {payload[:500]!r}")
    return json.loads(payload) if payload else None


def post_run(
    conn: http.client.HTTPConnection,
    model: str,
    version: str,
    path: Path,
    metadata: dict[str, Any],
    *,
    url: str | None = None,
) -> dict[str, Any]:
    """Register a run, the artifact streamed from ``path`` (never read whole).

    ``url`` sends the same request elsewhere (a benchmark's floor).
    """
    body = MultipartStream({"metadata": json.dumps(metadata)}, "artifact", path, path.name)
    try:
        headers = dict(HEADERS)
        headers["Content-Type"] = body.content_type
        headers["Content-Length"] = str(len(body))
        target = url or f"/api/v1/models/{model}/versions/{version}/runs"
        conn.request("POST", target, body, headers)
        response = conn.getresponse()
        payload = response.read()
    finally:
        body.close()
    if response.status != 201:
        raise RuntimeError(f"register run: {response.status} {payload[:500]!r}")
    result: dict[str, Any] = json.loads(payload)
    return result


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    """Samples a process's VmRSS every ``interval`` seconds; ``peak_kib`` is the highest."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self.samples = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(OSError):
                self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))
                self.samples += 1
            self._done.wait(self.interval)

    def finish(self) -> int:
        self._done.set()
        self.join()
        return self.peak_kib


def machine_load() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"
