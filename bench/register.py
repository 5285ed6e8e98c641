"""Registering runs with a 1 MiB artifact through ``modelreg serve``, against a floor.

The service: ``modelreg serve --no-evaluation-worker`` (1 worker), one keep-alive
``http.client`` connection, N ``POST /models/m/versions/1.0/runs`` with a streamed
multipart body (metadata JSON + a 1 MiB artifact, different bytes each time).

The floor, in this process, in the same directory tree: write the same 1 MiB to a
temporary file, fsync it, rename it to its content address, fsync the directory (what
the artifact store does), then one INSERT of a row naming it, committed: SQLite (WAL,
``synchronous=NORMAL``, like the service) or, with ``--database postgresql``,
PostgreSQL (autocommit). Service and floor alternate in rounds; it prints p50/p90 per
registration and the ratio. No target is stated for it (issue 6).

    .venv/bin/python bench/register.py [--database postgresql] [-n 200] [--rounds 4]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import PG_ADMIN_URL, Databases
from serving import ModelregServer, call_json, log, machine_load, post_run


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Floor:
    def __init__(self, root: Path, backend: str, url: str | None) -> None:
        self.root = root
        (root / "tmp").mkdir(parents=True)
        self.backend = backend
        if backend == "sqlite":
            self.db = sqlite3.connect(root / "floor.db", isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.placeholder = "?"
        else:
            import psycopg2

            assert url is not None
            self.db = psycopg2.connect(url.replace("postgresql+psycopg2", "postgresql"))
            self.db.autocommit = True
            self.placeholder = "%s"
        cur = self.db.cursor()
        cur.execute(
            "CREATE TABLE runs (id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, "
            "size INTEGER NOT NULL, metadata TEXT NOT NULL)"
            if backend == "sqlite"
            else "CREATE TABLE runs (id SERIAL PRIMARY KEY, sha256 TEXT NOT NULL, "
            "size INTEGER NOT NULL, metadata TEXT NOT NULL)"
        )
        ph = self.placeholder
        self.sql = f"INSERT INTO runs (sha256, size, metadata) VALUES ({ph}, {ph}, {ph})"
        self.n = 0

    def register(self, data: bytes) -> None:
        self.n += 1
        tmp = self.root / "tmp" / f"upload-{self.n}"
        digest = hashlib.sha256(data).hexdigest()
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        target = self.root / "sha256" / digest[:2] / digest[2:4] / digest
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        cur = self.db.cursor()
        if self.backend == "sqlite":
            cur.execute("BEGIN IMMEDIATE")
            cur.execute(self.sql, (digest, len(data), "{}"))
            cur.execute("COMMIT")
        else:
            cur.execute(self.sql, (digest, len(data), "{}"))

    def close(self) -> None:
        self.db.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    p.add_argument("-n", type=int, default=200, help="registrations per contender")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--size-kib", type=int, default=1024)
    p.add_argument("--tmp", default=None)
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="modelreg-register-", dir=args.tmp))
    dbs = Databases(args.database, work, args.pg_admin_url)
    server: ModelregServer | None = None
    floor: Floor | None = None
    seed = os.urandom(args.size_kib * 1024)
    counter = 0

    def payload() -> bytes:
        nonlocal counter
        counter += 1
        return counter.to_bytes(8, "big") + seed[8:]

    times: dict[str, list[float]] = {"service": [], "floor": []}
    try:
        (work / "server").mkdir()
        server_url = None
        floor_url = None
        if args.database == "postgresql":
            from service.db import migrate

            server_url = dbs.new("register")
            migrate.upgrade(server_url)
            floor_url = dbs.new("floor")
        server = ModelregServer(work / "server", server_url)
        server.start()
        floor = Floor(work / "floor", args.database, floor_url)
        conn = server.connection()
        call_json(conn, "POST", "/models", {"name": "m"})
        call_json(conn, "POST", "/models/m/versions", {"version": "1.0"})
        art = work / "artifact.bin"

        def service_once() -> None:
            art.write_bytes(payload())  # outside the timing
            t0 = time.perf_counter()
            post_run(conn, "m", "1.0", art, {"params": {"n": counter}})
            times["service"].append(time.perf_counter() - t0)

        def floor_once() -> None:
            data = payload()
            t0 = time.perf_counter()
            assert floor is not None
            floor.register(data)
            times["floor"].append(time.perf_counter() - t0)

        for _ in range(10):  # warm-up, unmeasured
            service_once()
            floor_once()
        times = {"service": [], "floor": []}
        per_round = max(1, args.n // args.rounds)
        order: list[tuple[str, Callable[[], None]]] = [
            ("service", service_once),
            ("floor", floor_once),
        ]
        for r in range(args.rounds):
            for _name, fn in order if r % 2 == 0 else order[::-1]:
                for _ in range(per_round):
                    fn()
            log(f"round {r + 1}/{args.rounds} done (load {machine_load()})")
        conn.close()
    finally:
        if server is not None:
            server.stop()
        if floor is not None:
            floor.close()
        dbs.drop_all()
        shutil.rmtree(work, ignore_errors=True)

    s50, f50 = statistics.median(times["service"]), statistics.median(times["floor"])
    print(
        f"register.py: {args.size_kib} KiB artifact, {args.database}, 1 worker, 1 keep-alive "
        f"client, {len(times['service'])} registrations each, load {machine_load()}"
    )
    print(f"{'contender':<9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for name in ("service", "floor"):
        t = times[name]
        print(
            f"{name:<9} {1000 * statistics.median(t):>8.2f} {1000 * pct(t, 0.9):>8.2f} "
            f"{1000 * pct(t, 0.99):>8.2f}"
        )
    print(f"service p50 / floor p50: {s50 / f50:.2f} (no target stated)")


if __name__ == "__main__":
    main()
