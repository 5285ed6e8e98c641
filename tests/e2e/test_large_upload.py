"""A large artifact streams through the server without being held in memory."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.e2e.conftest import StartServer

pytestmark = pytest.mark.e2e

SIZE = 200 * 1024 * 1024
CHUNK = 1024 * 1024


class MultipartBody:
    """A multipart body read from generated content, never built in memory.

    ``requests`` sends a readable object with a length as a plain, sized body.
    """

    def __init__(self, metadata: dict[str, object]) -> None:
        self.boundary = "modelreg-e2e-boundary"
        self.head = (
            f"--{self.boundary}\r\n"
            'Content-Disposition: form-data; name="metadata"\r\n\r\n'
            f"{json.dumps(metadata)}\r\n"
            f"--{self.boundary}\r\n"
            'Content-Disposition: form-data; name="artifact"; filename="big.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.sha256 = hashlib.sha256()
        self._pos = 0
        self._len = len(self.head) + SIZE + len(self.tail)

    def __len__(self) -> int:
        return self._len

    def _byte_at(self, offset: int) -> bytes:
        # Deterministic, non-repeating-per-chunk content.
        return hashlib.sha256(offset.to_bytes(8, "big")).digest() * (CHUNK // 32)

    def read(self, n: int = -1) -> bytes:
        if self._pos >= self._len:
            return b""
        n = CHUNK if n is None or n < 0 else min(n, CHUNK)
        out = b""
        if self._pos < len(self.head):
            out = self.head[self._pos : self._pos + n]
        elif self._pos < len(self.head) + SIZE:
            offset = self._pos - len(self.head)
            block = self._byte_at(offset // CHUNK)[offset % CHUNK :]
            out = block[: min(n, SIZE - offset)]
            self.sha256.update(out)
        else:
            offset = self._pos - len(self.head) - SIZE
            out = self.tail[offset : offset + n]
        self._pos += len(out)
        return out


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def _worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(p) for p in children]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_200_mib_artifact_is_stored_whole_while_server_memory_stays_flat(
    start_server: StartServer,
) -> None:
    # No evaluation worker beside it: the one child of the master is the web worker.
    server = start_server(workers=1, args=["--no-evaluation-worker"])
    s = server.session
    server.expect(s.post(server.api("/models"), json={"name": "big"}), 201)
    server.expect(s.post(server.api("/models/big/versions"), json={"version": "1.0"}), 201)
    # A small upload first, so the worker's baseline includes everything it imports.
    server.expect(server.register_run("big", "1.0", b"warm-up", {}), 201)
    (worker,) = _worker_pids(server.proc.process.pid)
    before = _peak_rss_kib(worker)

    body = MultipartBody({"params": {"size": SIZE}})
    response = s.post(
        server.api("/models/big/versions/1.0/runs"),
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={body.boundary}"},
        timeout=300,
    )

    run = server.expect(response, 201)
    assert run["artifact"]["size"] == SIZE
    assert run["artifact"]["sha256"] == body.sha256.hexdigest()
    growth_mib = (_peak_rss_kib(worker) - before) / 1024
    assert growth_mib < 32, f"worker peak memory grew by {growth_mib:.0f} MiB for a 200 MiB upload"
    stored = server.artifact_root / "sha256" / run["artifact"]["sha256"][:2]
    assert sum(f.stat().st_size for f in stored.rglob("*") if f.is_file()) == SIZE
    assert not any((server.artifact_root / "tmp").iterdir()), "no temporary file is left behind"
