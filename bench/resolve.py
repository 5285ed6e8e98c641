"""Benchmark: GET champion against the floor of one indexed SELECT, at 1,000 and 100,000 runs.

    .venv/bin/python bench/resolve.py [--database sqlite|postgresql] [--runs 1000,100000]
        [--requests N] [--concurrency 1,4] [--workers W --threads T] [--rounds R] [--json]

For every run count it fills a fresh database through the service layer (``fill.py``),
then serves it twice with the same gunicorn settings: the real app (``modelreg serve``)
and ``floor_app.py``, a minimal Flask app answering one indexed SELECT. A keep-alive
client (``loadgen.py``) measures p50/p99 latency and requests/s of both, in interleaved
rounds, and the medians of the rounds are compared. See ``bench/README.md``.

It is a measurement, not a test: it prints PASS/FAIL per target and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gunicorn
import sqlalchemy

from modelreg.config import load_settings
from modelreg.db import migrate

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import fill as filler  # noqa: E402
import loadgen  # noqa: E402
from harness import (  # noqa: E402
    HOST,
    KEEPALIVE_S,
    NAGLE_PATH,
    PG_ADMIN_URL,
    READER_SECRET,
    Databases,
    Quiet,
    Server,
    add_reader_token,
    champion_server,
    floor_server,
    log,
)

TARGET_VS_FLOOR = 1.5
TARGET_SCALE = 1.2
MLFLOW_VS_FLOOR = 4.7


def service_revision() -> str:
    """The commit of the code under test, ``+dirty`` when service/ has local changes."""
    root = BENCH.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "service", "policies"],
            cwd=root, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
    except OSError:
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def summarize(rounds: list[loadgen.Phase]) -> dict[str, Any]:
    """Medians over rounds of each round's p50, p99 and requests/s."""
    return {
        "p50_ms": statistics.median(p.percentile_ms(50) for p in rounds),
        "p99_ms": statistics.median(p.percentile_ms(99) for p in rounds),
        "rps": statistics.median(p.rps for p in rounds),
        "client_cores": statistics.median(p.client_cores for p in rounds),
        "server_cores": statistics.median(p.server_cores for p in rounds),
        "other_cores": statistics.median(p.other_cores for p in rounds),
        "requests": sum(p.count for p in rounds),
        "errors": sum(p.errors for p in rounds),
        "reconnects": sum(p.reconnects for p in rounds),
        "rounds_p50_ms": [round(p.percentile_ms(50), 4) for p in rounds],
        "splits": sorted(Counter(p.split for p in rounds).items()),
    }


def measure(servers: list[Server], args: argparse.Namespace, quiet: Quiet) -> dict[str, Any]:
    """Interleaved rounds: every round visits every server, in a rotating order."""
    results: dict[str, Any] = {}
    per_round = max(1, args.requests // args.rounds)
    for conc in args.concurrency:
        phases: dict[tuple[int, str], list[loadgen.Phase]] = {}
        for r in range(args.rounds):
            order = servers[r % len(servers) :] + servers[: r % len(servers)]
            if r % 2:
                order.reverse()
            for attempt in range(4):
                calm = quiet.wait()
                got = [(s, measure_one(s, conc, per_round, args)) for s in order]
                if calm and quiet.still_quiet():
                    break
                if attempt == 3 or quiet.budget_s <= 0:
                    quiet.disturbed_kept += 1
                    break
                quiet.repeated += 1
                log(f"c={conc} round {r + 1} disturbed by other processes; measuring it again")
            for s, phase in got:
                phases.setdefault((s.runs, s.kind), []).append(phase)
            log(f"c={conc} round {r + 1}/{args.rounds} done")
        results[str(conc)] = {
            str(runs): {kind: summarize(phases[(runs, kind)]) for kind in ("champion", "floor")}
            for runs in args.runs
        }
    return results


def measure_one(s: Server, conc: int, requests: int, args: argparse.Namespace) -> loadgen.Phase:
    return loadgen.run_phase(
        HOST, s.port, s.path, concurrency=conc, requests=requests, warmup=args.warmup,
        max_seconds=args.max_seconds, owners=None if args.no_balance else s.owners,
        cpu_probe=s.cpu_probe(),
    )  # fmt: skip


def stall_checks(servers: list[Server], args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in servers:
        rep = loadgen.stall_check(
            HOST, s.port, s.path, requests=args.stall_requests, max_seconds=args.max_seconds
        )
        out.setdefault(str(s.runs), {})[s.kind] = asdict(rep)
    floor = next(s for s in servers if s.kind == "floor")
    control = loadgen.stall_check(HOST, floor.port, NAGLE_PATH, requests=50, max_seconds=10)
    out["control_nagle_on"] = asdict(control)
    return out


def ratios(
    results: dict[str, Any], stalls: dict[str, Any], sizes: list[int]
) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    for conc, by_size in results.items():
        for runs in sizes:
            row = by_size[str(runs)]
            value = row["champion"]["p50_ms"] / row["floor"]["p50_ms"]
            checks.append({
                "name": f"champion p50 / floor p50 @ {runs:,} runs, c={conc}",
                "value": value, "target": TARGET_VS_FLOOR, "pass": value <= TARGET_VS_FLOOR,
            })  # fmt: skip
        if len(sizes) > 1:
            small, big = by_size[str(sizes[0])], by_size[str(sizes[-1])]
            value = big["champion"]["p50_ms"] / small["champion"]["p50_ms"]
            floor_value = big["floor"]["p50_ms"] / small["floor"]["p50_ms"]
            checks.append({
                "name": f"champion p50 @ {sizes[-1]:,} / @ {sizes[0]:,} runs, c={conc}",
                "value": value, "target": TARGET_SCALE, "pass": value <= TARGET_SCALE,
                "floor_same_ratio": floor_value,
            })  # fmt: skip
    stalled = sum(v["champion"]["stalls"] for k, v in stalls.items() if k != "control_nagle_on")
    checks.append({
        "name": "delayed-ACK stalls (>35 ms) seen by a keep-alive client, champion",
        "value": stalled, "target": 0, "pass": stalled == 0,
    })  # fmt: skip
    return checks


def report(doc: dict[str, Any]) -> str:
    cfg = doc["config"]
    lines = [
        f"modelreg GET champion vs floor - {cfg['database']}, gunicorn {cfg['gunicorn']} "
        f"gthread {cfg['workers']} workers x {cfg['threads']} threads, keep-alive "
        f"{KEEPALIVE_S} s, {cfg['cpus']} CPUs, Python {cfg['python']}, "
        f"modelreg {cfg['service_revision']}",
        f"{cfg['requests']} measured requests per server, size and concurrency, in "
        f"{cfg['rounds']} interleaved rounds (medians of rounds); warm-up {cfg['warmup']} per conn",
        "",
        "fill (service layer): " + ", ".join(
            f"{f['runs']:,} runs / {f['versions']} versions in {f['seconds']:.0f} s "
            f"(put_policy x2: {f['policy_seconds']:.2f} s"
            f"{', after ANALYZE' if f['analyzed'] else ''})"
            for f in doc["fill"]
        ),
        "",
        f"{'runs':>9}  {'conc':>4}  {'server':<8}  {'p50 ms':>7}  {'p99 ms':>7}  "
        f"{'req/s':>7}  {'errors':>6}   CPU cores: {'server':>6} {'client':>6} {'other':>6}",
    ]  # fmt: skip
    for conc, by_size in doc["results"].items():
        for runs, by_kind in by_size.items():
            for kind, r in by_kind.items():
                lines.append(
                    f"{int(runs):>9,}  {conc:>4}  {kind:<8}  {r['p50_ms']:>7.3f}  "
                    f"{r['p99_ms']:>7.3f}  {r['rps']:>7.0f}  {r['errors']:>6}  "
                    f"{'':>11} {r['server_cores']:>6.2f} {r['client_cores']:>6.2f} "
                    f"{r['other_cores']:>6.2f}"
                )
    lines.append(
        f"rounds measured again because other processes were busy: {cfg['rounds_repeated']}"
    )
    if cfg["rounds_disturbed_kept"]:
        lines.append(
            f"WARNING: {cfg['rounds_disturbed_kept']} round(s) kept although other processes "
            "competed for the CPUs (--max-wait spent): read the ratios with care."
        )
    lines += ["", "delayed-ACK check: one http.client keep-alive connection, sequential GETs"]
    for runs, by_kind in doc["stalls"].items():
        if runs == "control_nagle_on":
            continue
        for kind, s in by_kind.items():
            lines.append(
                f"{int(runs):>9,}  {kind:<8}  {s['stalls']} of {s['requests']} > "
                f"{s['threshold_ms']:.0f} ms, max {s['max_ms']:.2f} ms, p50 {s['p50_ms']:.3f} ms"
            )
    c = doc["stalls"]["control_nagle_on"]
    lines.append(
        f"  control (floor with Nagle forced back on): {c['stalls']} of {c['requests']} stalled, "
        f"max {c['max_ms']:.1f} ms -> the check {'does' if c['stalls'] else 'did NOT'} see stalls"
    )
    lines += ["", "ratios:"]
    for chk in doc["checks"]:
        extra = (
            f"  (floor's own: {chk['floor_same_ratio']:.2f})" if "floor_same_ratio" in chk else ""
        )
        value = f"{chk['value']:.2f}" if isinstance(chk["value"], float) else str(chk["value"])
        op = "<=" if chk["target"] else "=="
        lines.append(
            f"  {chk['name']:<58} {value:>6}  target {op} {chk['target']}  "
            f"{'PASS' if chk['pass'] else 'FAIL'}{extra}"
        )
    lines.append(
        f"\nFor scale: MLflow's default server answers its comparable lookup at about "
        f"{MLFLOW_VS_FLOOR}x the floor's p50 on a 2-core machine."
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    settings = load_settings()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--pg-admin-url", default=PG_ADMIN_URL, help="where to create the database")
    p.add_argument("--runs", default="1000,100000", help="run counts, comma-separated")
    p.add_argument("--requests", type=int, default=6000, help="per server, size, concurrency")
    p.add_argument("--concurrency", default="1,4", help="client connections, comma-separated")
    p.add_argument("--workers", type=int, default=settings.workers)
    p.add_argument("--threads", type=int, default=settings.threads)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--warmup", type=int, default=50, help="requests per connection, unmeasured")
    p.add_argument("--max-seconds", type=float, default=30.0, help="cap of each phase")
    p.add_argument("--stall-requests", type=int, default=300)
    p.add_argument(
        "--max-wait",
        type=float,
        default=600.0,
        help="seconds, in all, to wait for other processes to leave the CPUs alone",
    )
    p.add_argument(
        "--floor-accesslog",
        action="store_true",
        help="give the floor gunicorn's access log too, as `modelreg serve` has (default: none)",
    )
    p.add_argument(
        "--no-analyze",
        action="store_true",
        help="PostgreSQL: skip the ANALYZE after the bulk of runs (autovacuum may be off)",
    )
    p.add_argument(
        "--no-balance",
        action="store_true",
        help="leave connections where gunicorn's accept race puts them (noisier at c>1)",
    )
    p.add_argument(
        "--admin-token",
        action="store_true",
        help="champion servers accept the bench secret as MODELREG_ADMIN_TOKEN (compared in "
        "memory, no database lookup): isolates the cost of the reader token's lookup",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = p.parse_args(argv)
    args.runs = sorted({int(x.replace("_", "")) for x in args.runs.split(",") if x.strip()})
    args.concurrency = [int(x) for x in args.concurrency.split(",") if x.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A plain `kill` should still stop the servers and drop the databases (finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    revision = service_revision()
    root = Path(tempfile.mkdtemp(prefix="modelreg-bench-"))
    dbs = Databases(args.database, root, args.pg_admin_url)
    servers: list[Server] = []
    try:
        fills = []
        for runs in args.runs:
            data_dir = root / f"runs-{runs}"
            data_dir.mkdir(parents=True)
            url = dbs.new(runs)
            migrate.upgrade(url)
            log(f"filling {runs:,} runs ({args.database}) ...")
            filled = filler.fill(url, data_dir / "artifacts", runs, analyze=not args.no_analyze)
            log(
                f"filled {runs:,} runs in {filled.seconds:.1f} s (policies "
                f"{filled.policy_seconds:.1f} s); champion run {filled.champion_run_id} "
                f"(version {filled.champion_version})"
            )
            add_reader_token(url)
            fills.append(asdict(filled))
            champion = champion_server(runs, url, data_dir, args.workers, args.threads)
            if args.admin_token:
                champion.env["MODELREG_ADMIN_TOKEN"] = READER_SECRET
            servers.append(champion)
            servers.append(
                floor_server(runs, url, data_dir, args.workers, args.threads, args.floor_accesslog)
            )
        gc.collect()
        for s in servers:
            s.start()
        for s, expected in zip(servers, [f for f in fills for _ in (0, 1)], strict=True):
            body = json.loads(s.wait_ready())
            if body["run_id"] != expected["champion_run_id"]:
                raise RuntimeError(f"{s.kind} answers run {body['run_id']}, expected {expected}")
        quiet = Quiet(budget_s=args.max_wait)
        log(f"{len(servers)} servers up; measuring")
        results = measure(servers, args, quiet)
        log("delayed-ACK check")
        stalls = stall_checks(servers, args)
        doc = {
            "config": {
                "database": args.database, "runs": args.runs, "requests": args.requests,
                "concurrency": args.concurrency, "workers": args.workers,
                "threads": args.threads, "rounds": args.rounds, "warmup": args.warmup,
                "cpus": os.cpu_count(), "python": platform.python_version(),
                "service_revision": revision,
                "gunicorn": gunicorn.__version__, "sqlalchemy": sqlalchemy.__version__,
                "keepalive_s": KEEPALIVE_S, "floor_accesslog": args.floor_accesslog,
                "balanced": not args.no_balance, "rounds_repeated": quiet.repeated,
                "rounds_disturbed_kept": quiet.disturbed_kept,
            },
            "fill": fills, "results": results, "stalls": stalls,
            "checks": ratios(results, stalls, args.runs), "mlflow_vs_floor": MLFLOW_VS_FLOOR,
        }  # fmt: skip
        print(json.dumps(doc, indent=2) if args.json else report(doc))
        return 0
    finally:
        for s in servers:
            s.stop()
        with contextlib.suppress(Exception):
            dbs.drop_all()
        if args.keep:
            log(f"data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
