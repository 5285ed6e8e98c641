"""Registering runs that carry metrics, at 1,000 and at 100,000 runs, against a floor.

The service: ``modelreg serve --no-evaluation-worker`` (1 worker, 4 threads) on a
database filled by ``bench/fill.py`` (runs with their f1, two environments with
policies, champions computed). Each registration is ``POST
/models/AImodel/versions/1.0/runs`` (a version both policies admit) with a streamed
multipart body: metadata with params and five reported metrics on the policies'
dataset revision, and a 64 KiB artifact (different bytes each time). The champion
upkeep runs on every registration, as in production.

The floor, reached the same way: gunicorn (same worker class, workers and threads)
serving ``bench/register_floor.py``, which parses the same body, stores the artifact
the way the store does (temp file, sha256, fsync, rename, directory fsync) and inserts
the run and its metrics in one transaction, into tables holding as many rows.

Service and floor alternate in rounds over one keep-alive connection each. It prints
p50/p90 per registration for both at both sizes, service ÷ floor, and the figure with
a target: service p50 at 100,000 runs ÷ at 1,000, at most 1.2.

    .venv/bin/python bench/register.py [--database sqlite] [--sizes 1000,100000] [-n 200]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fill as filler
from harness import BENCH, PG_ADMIN_URL, Databases, Server, free_port
from serving import HOST, ModelregServer, call_json, log, machine_load, post_run

TARGET = 1.2
METRICS = ("f1", "accuracy", "precision", "recall", "f1_macro")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def floor_server(url: str, root: Path, threads: int) -> Server:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
    env.update(MODELREG_DATABASE_URL=url, FLOOR_ROOT=str(root))
    port = free_port()
    argv = [
        sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--workers", "1",
        "--threads", str(threads), "--keep-alive", "5", "--bind", f"{HOST}:{port}",
        "--chdir", str(BENCH), "register_floor:app",
    ]  # fmt: skip
    return Server("floor", 0, port, "/floor/healthz", argv, env, root / "floor.log")


def prefill_floor(url: str, root: Path, n: int) -> None:
    env = dict(os.environ, MODELREG_DATABASE_URL=url, FLOOR_ROOT=str(root))
    code = f"import register_floor; register_floor.prefill({n})"
    subprocess.run([sys.executable, "-c", code], cwd=BENCH, env=env, check=True)


def measure(
    size: int, dbs: Databases, work: Path, n: int, rounds: int, art_kib: int
) -> dict[str, list[float]]:
    data = work / f"service-{size}"
    data.mkdir()
    from modelreg.db import migrate

    url = dbs.new(f"svc{size}")
    (work / f"runs-svc{size}").mkdir(exist_ok=True)  # where a SQLite file goes
    migrate.upgrade(url)
    started = time.perf_counter()
    filled = filler.fill(url, data / "artifacts", size)
    log(f"filled {size} runs in {time.perf_counter() - started:.0f} s")
    floor_root = work / f"floor-{size}"
    floor_root.mkdir()
    floor_url = dbs.new(f"floor{size}")
    (work / f"runs-floor{size}").mkdir(exist_ok=True)
    prefill_floor(floor_url, floor_root, size)

    service = ModelregServer(data, url, workers=1, threads=4)
    floor = floor_server(floor_url, floor_root, threads=4)
    rng = random.Random(size)
    seed = os.urandom(art_kib * 1024)
    counter = [0]
    art = work / "artifact.bin"
    times: dict[str, list[float]] = {"service": [], "floor": []}
    try:
        service.start()
        floor.start()
        floor_conn = _wait_floor(floor)
        conn = service.connection()

        def metadata() -> dict[str, object]:
            counter[0] += 1
            art.write_bytes(counter[0].to_bytes(8, "big") + seed[8:])  # outside the timing
            values = {m: round(rng.uniform(0.6, 0.95), 6) for m in METRICS}
            return {
                "params": {"C": rng.choice([0.1, 1.0, 10.0]), "max_iter": 200},
                "tags": {"pipeline": "bench"},
                "source": {"git_commit": f"{rng.getrandbits(160):040x}"},
                "evaluations": [{"dataset": f"{filler.DATASET}@1", "metrics": values}],
            }

        def service_once(record: bool = True) -> None:
            meta = metadata()
            t0 = time.perf_counter()
            post_run(conn, filler.MODEL, "1.0", art, meta)
            if record:
                times["service"].append(time.perf_counter() - t0)

        def floor_once(record: bool = True) -> None:
            meta = metadata()
            t0 = time.perf_counter()
            post_run(floor_conn, "", "", art, meta, url="/floor/runs")
            if record:
                times["floor"].append(time.perf_counter() - t0)

        for _ in range(10):  # warm-up, unmeasured
            service_once(False)
            floor_once(False)
        per_round = max(1, n // rounds)
        order: list[Callable[..., None]] = [service_once, floor_once]
        for r in range(rounds):
            for fn in order if r % 2 == 0 else order[::-1]:
                # Both servers close a connection idle for 5 s (the other's turn): each
                # turn starts on a fresh one, opened by one untimed registration.
                conn.close()
                floor_conn.close()
                fn(False)
                for _ in range(per_round):
                    fn()
        # The upkeep kept the champion: it is read back, as a serving layer would.
        served = call_json(conn, "GET", f"/environments/{filler.ENV}/models/{filler.MODEL}")
        log(f"{size} runs: champion run {served['run_id']} (was {filled.champion_run_id})")
        conn.close()
        floor_conn.close()
    finally:
        service.stop()
        floor.stop()
    return times


def _wait_floor(floor: Server) -> Any:
    import http.client

    deadline = time.monotonic() + 60
    while True:
        try:
            conn = http.client.HTTPConnection(HOST, floor.port, timeout=600)
            conn.connect()
            return conn
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"floor not ready:\n{floor.log_tail()}") from None
            time.sleep(0.2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database", choices=["sqlite", "postgresql"], default="postgresql")
    p.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    p.add_argument("--sizes", default="1000,100000")
    p.add_argument("-n", type=int, default=200, help="registrations per contender and size")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--artifact-kib", type=int, default=64)
    p.add_argument("--tmp", default=None)
    args = p.parse_args()

    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="modelreg-register-", dir=args.tmp))
    dbs = Databases(args.database, work, args.pg_admin_url)
    results: dict[int, dict[str, list[float]]] = {}
    try:
        for size in sizes:
            results[size] = measure(size, dbs, work, args.n, args.rounds, args.artifact_kib)
    finally:
        dbs.drop_all()
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"register.py: {args.database}, 1 worker x 4 threads each, 1 keep-alive client, "
        f"{args.artifact_kib} KiB artifact + {len(METRICS)} metrics, "
        f"{args.n} registrations per contender and size, load {machine_load()}"
    )
    print(f"{'runs':>8} {'contender':<9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for size, times in results.items():
        for name in ("service", "floor"):
            t = times[name]
            print(
                f"{size:>8} {name:<9} {1000 * statistics.median(t):>8.2f} "
                f"{1000 * pct(t, 0.9):>8.2f} {1000 * pct(t, 0.99):>8.2f}"
            )
        ratio = statistics.median(times["service"]) / statistics.median(times["floor"])
        print(f"{size:>8} service p50 / floor p50: {ratio:.2f}")
    if len(sizes) >= 2:
        small, large = results[sizes[0]], results[sizes[-1]]
        growth = statistics.median(large["service"]) / statistics.median(small["service"])
        floor_growth = statistics.median(large["floor"]) / statistics.median(small["floor"])
        verdict = "PASS" if growth <= TARGET else "FAIL"
        print(
            f"service p50 at {sizes[-1]} / at {sizes[0]} runs: {growth:.2f} "
            f"(target <= {TARGET}: {verdict}); floor: {floor_growth:.2f}"
        )


if __name__ == "__main__":
    main()
