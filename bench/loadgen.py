"""A keep-alive HTTP/1.1 load generator small enough not to be the bottleneck.

Each client thread owns one persistent TCP connection and sends a pre-built GET,
then reads exactly one response (status line, headers up to the blank line,
``Content-Length`` bytes of body). That is a few microseconds of Python per request,
against the hundreds a WSGI server spends, so on a 2-core machine nearly all CPU
goes to the server under test. Latency is taken with ``time.perf_counter_ns``
around send-and-receive of each request.

``stall_check`` uses the standard library's ``http.client`` instead, the way a
serving layer's client would talk, one request after another on one connection.
"""

from __future__ import annotations

import gc
import http.client
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_CONNECTION_CLOSE = re.compile(rb"\r\nconnection:\s*close", re.IGNORECASE)

# Given the client-side ports of open connections: the server worker (pid) holding each,
# and every worker of the server. See ``open_balanced``.
Owners = Callable[[list[int]], tuple[list[int | None], list[int]]]
# CPU seconds so far: (the server's workers, the whole machine busy). See ``Phase``.
CpuProbe = Callable[[], tuple[float, float]]


class Closed(Exception):
    """The server closed the connection."""


# Headers every request carries (the serving layer's bearer token); the floor ignores them.
HEADERS: dict[str, str] = {}


class Connection:
    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port = host, port
        extra = "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Accept: application/json\r\nUser-Agent: modelreg-bench\r\n{extra}\r\n"
        ).encode("ascii")
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.reconnects = -1
        self.body = b""

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buf = sock, bytearray()
        self.reconnects += 1
        return sock

    def get(self) -> int:
        """One request; the status code. Reconnects once if the server had closed."""
        for attempt in (0, 1):
            sock = self.sock or self._connect()
            try:
                return self._exchange(sock)
            except (Closed, ConnectionError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _exchange(self, sock: socket.socket) -> int:
        sock.sendall(self.request)
        buf = self.buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            chunk = sock.recv(65536)
            if not chunk:
                raise Closed
            buf += chunk
        head = bytes(buf[: end + 2])
        length = _CONTENT_LENGTH.search(head)
        if length is None:
            raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
        need = end + 4 + int(length.group(1))
        while len(buf) < need:
            chunk = sock.recv(65536)
            if not chunk:
                raise Closed
            buf += chunk
        self.body = bytes(buf[end + 4 : need])
        del buf[:need]
        if _CONNECTION_CLOSE.search(head):
            self.close()
        return int(head[9:12])

    @property
    def local_port(self) -> int:
        return int(self.sock.getsockname()[1]) if self.sock is not None else 0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@dataclass
class Phase:
    """What one measurement phase saw: latencies in ns, wall time, failures."""

    latencies_ns: list[int] = field(default_factory=list)
    wall_s: float = 0.0
    client_cpu_s: float = 0.0  # CPU the client process spent (all its threads)
    errors: int = 0
    reconnects: int = 0
    split: str = "?"  # connections per server worker, e.g. "2/2"
    server_cpu_s: float = 0.0  # CPU of the server's workers during the phase
    machine_cpu_s: float = 0.0  # CPU of the whole machine (all cores) during the phase

    @property
    def count(self) -> int:
        return len(self.latencies_ns)

    @property
    def client_cores(self) -> float:
        return self.client_cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def rps(self) -> float:
        return self.count / self.wall_s if self.wall_s else 0.0

    @property
    def server_cores(self) -> float:
        return self.server_cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def other_cores(self) -> float:
        """CPU neither client nor server used: the kernel's share, and other processes."""
        rest = self.machine_cpu_s - self.server_cpu_s - self.client_cpu_s
        return max(0.0, rest / self.wall_s) if self.wall_s else 0.0

    def percentile_ms(self, q: float) -> float:
        return percentile(self.latencies_ns, q) / 1e6


def percentile(values: list[int], q: float) -> float:
    """Nearest-rank percentile (q in 0..100).

    >>> percentile([5, 1, 4, 2, 3], 50), percentile(list(range(1, 101)), 99)
    (3, 99)
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def open_balanced(
    host: str, port: int, path: str, count: int, owners: Owners | None, limit: int = 64
) -> tuple[list[Connection], str]:
    """``count`` connections, each answered once, spread evenly over the server's workers.

    Which gunicorn worker accepts a connection is a race, and a keep-alive
    connection stays with it: four connections land 2/2, 3/1 or 4/0 on two workers,
    and a 4/0 round measures one worker's GIL, not the app. With ``owners`` (who
    holds which connection), it opens connections until every worker holds its
    share, keeps an even set of them, closes the rest.
    """
    pool = [Connection(host, port, path) for _ in range(count)]
    for conn in pool:
        conn.get()
    if owners is None:
        return pool, "?"
    while True:
        pids, workers = owners([c.local_port for c in pool])
        if not workers:
            return pool[:count], "?"
        by_worker: dict[int, list[Connection]] = {w: [] for w in workers}
        for conn, pid in zip(pool, pids, strict=True):
            if pid in by_worker:
                by_worker[pid].append(conn)
        share = -(-count // len(workers))
        if all(len(c) >= share for c in by_worker.values()) or len(pool) >= limit:
            break
        extra = Connection(host, port, path)
        extra.get()
        pool.append(extra)
    chosen: list[Connection] = []
    queues = sorted(by_worker.values(), key=len, reverse=True)
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    chosen += [c for c in pool if c not in chosen][: count - len(chosen)]
    for conn in pool:
        if conn not in chosen:
            conn.close()
    pids, workers = owners([c.local_port for c in chosen])
    load = Counter({w: 0 for w in workers})
    load.update(p for p in pids if p is not None)
    return chosen, "/".join(str(n) for _, n in load.most_common())


def run_phase(
    host: str,
    port: int,
    path: str,
    *,
    concurrency: int,
    requests: int,
    warmup: int,
    max_seconds: float,
    owners: Owners | None = None,
    cpu_probe: CpuProbe | None = None,
) -> Phase:
    """``requests`` GETs over ``concurrency`` keep-alive connections, after a warm-up.

    Every connection is opened (evenly over the workers, given ``owners``) and
    warmed up before the clock starts; the phase stops at ``requests`` or after
    ``max_seconds``, whichever comes first.
    """
    shares = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]
    results: list[list[int]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    conns, split = open_balanced(host, port, path, concurrency, owners)
    reconnects_before = sum(c.reconnects for c in conns)
    start_gate = threading.Barrier(concurrency + 1)
    finished = [0.0] * concurrency
    deadline = [0.0]

    def client(i: int) -> None:
        conn, out = conns[i], results[i]
        try:
            for _ in range(warmup):
                conn.get()
        finally:
            start_gate.wait()
        clock = time.perf_counter_ns
        stop = deadline[0]
        for _ in range(shares[i]):
            t0 = clock()
            try:
                status = conn.get()
            except (OSError, Closed, RuntimeError):
                errors[i] += 1
                continue
            t1 = clock()
            if status != 200:
                errors[i] += 1
            out.append(t1 - t0)
            if t1 > stop:
                break
        finished[i] = time.perf_counter()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for t in threads:
            t.start()
        deadline[0] = time.perf_counter_ns() + int(max_seconds * 1e9)
        probe = cpu_probe or (lambda: (0.0, 0.0))
        start_gate.wait()
        began, cpu_began, (server0, machine0) = time.perf_counter(), time.process_time(), probe()
        for t in threads:
            t.join(max_seconds + 60)
        cpu_used = time.process_time() - cpu_began
        server1, machine1 = probe()
    finally:
        if gc_was_enabled:
            gc.enable()
        for c in conns:
            c.close()
    phase = Phase(
        client_cpu_s=cpu_used,
        errors=sum(errors),
        reconnects=sum(c.reconnects for c in conns) - reconnects_before,
        split=split,
        server_cpu_s=server1 - server0,
        machine_cpu_s=machine1 - machine0,
    )
    for out in results:
        phase.latencies_ns.extend(out)
    phase.wall_s = max(finished) - began
    return phase


@dataclass(frozen=True)
class StallReport:
    requests: int
    stalls: int  # responses slower than the threshold
    max_ms: float
    p50_ms: float
    threshold_ms: float


def stall_check(
    host: str, port: int, path: str, *, requests: int, max_seconds: float, threshold_ms: float = 35
) -> StallReport:
    """Sequential GETs on one ``http.client`` keep-alive connection; counts slow ones.

    A response written in two segments with Nagle's algorithm on waits for the
    client's delayed ACK (40 ms on Linux): that shows up here as requests above
    ``threshold_ms``.
    """
    conn = http.client.HTTPConnection(host, port, timeout=30)
    latencies: list[int] = []
    deadline = time.perf_counter() + max_seconds
    try:
        for _ in range(5):  # open the connection and warm the path up
            conn.request("GET", path, headers=HEADERS)
            conn.getresponse().read()
        for _ in range(requests):
            t0 = time.perf_counter_ns()
            conn.request("GET", path, headers={"Accept": "application/json", **HEADERS})
            resp = conn.getresponse()
            resp.read()
            latencies.append(time.perf_counter_ns() - t0)
            if resp.status != 200:
                raise RuntimeError(f"GET {path} answered {resp.status}")
            if time.perf_counter() > deadline:
                break
    finally:
        conn.close()
    limit = threshold_ms * 1e6
    return StallReport(
        requests=len(latencies),
        stalls=sum(1 for v in latencies if v > limit),
        max_ms=max(latencies) / 1e6,
        p50_ms=percentile(latencies, 50) / 1e6,
        threshold_ms=threshold_ms,
    )
