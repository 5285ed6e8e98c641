"""Server-side evaluation: sandboxed jobs against the same jobs in-process, and latency.

Run through ``evaluate.py`` (which says why it is a separate, tiny file).

1. **Setup**, per database (SQLite files in a temp dir, or throwaway PostgreSQL
   databases): random forests trained on scikit-learn's wine (stratified 70/30
   split, ``random_state=0``); the held-out 30 % uploaded as dataset content
   (multipart ``POST /datasets``); model ``AImodel``, version ``1.0`` in Staging;
   environment ``INT`` whose policy ranks by ``f1`` on that dataset with
   ``require_verified``, so only the service's own value counts. All through the
   real Flask app (its test client), runs as multipart uploads like CI sends them.
2. **Throughput**: two identical databases get the same runs (forests of 10, 50
   and 100 trees in turn), so each holds the same pending jobs. One is worked off
   by ``Worker`` with its default executor, the ``Sandbox`` (a child forked per
   job, with limits), the other by ``Worker(..., executor=InProcess())``; both
   claim, copy and verify the artifact and test set, evaluate, store the verified
   values and recompute the champion. Rounds alternate which goes first. The first
   job of each is the cold one (the sandbox's fork server starts then) and is
   reported apart, not counted.
3. **Latency**: ``modelreg worker`` in a subprocess with ``MODELREG_WORKER_POLL_MS``
   at each setting; a run is registered over the API, and the clock stops when the
   champion lookup (``champion_reads.read_champion``, what ``GET
   /environments/INT/models/AImodel`` answers) names it. Every timed run is a
   100-tree forest with the top f1 (1.0 on this split): equal values rank the higher
   run number first, so each new run takes over once its value is verified.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import io
import json
import multiprocessing
import os
import pickle
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
import sqlalchemy
from flask.testing import FlaskClient
from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from modelreg.app import create_app
from modelreg.config import Settings, load_settings
from modelreg.db import migrate
from modelreg.environments import reads as champion_reads
from modelreg.errors import NoEligibleModel, NotFound
from modelreg.evaluation.answers import decode
from modelreg.evaluation.child import Spec
from modelreg.evaluation.confined import confined_for
from modelreg.evaluation.content import load_xy
from modelreg.evaluation.sandbox import Executor, InProcess, Outcome
from modelreg.evaluation.worker import Worker, process_sandbox_for

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from harness import PG_ADMIN_URL, Databases, Quiet, log, server_env  # noqa: E402

MODEL = "AImodel"
VERSION = "1.0"
ENV = "INT"
DATASET = "wine-holdout"
METRIC = "f1"
SPLIT_SEED = 0
FORESTS = (10, 50, 100)
LATENCY_FOREST = 100
TARGET_RATIO = 2.0
WAIT_S = 60.0  # bound of every wait for a job or a champion
# The API's admin token in the benchmark's apps (MODELREG_ADMIN_TOKEN); never a real one.
ADMIN_TOKEN = "bench-admin-token-not-for-production"
# Databases (SQLite: files in ``runs-<n>/``), one per lane and one for latency.
DB_SANDBOX, DB_INPROCESS, DB_LATENCY, DB_STRICT = 1, 2, 3, 4
# The strict level (bubblewrap) against the process level (fork server), per job.
TARGET_STRICT_RATIO = 1.5


# -- data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wine:
    rows: int
    test_rows: int
    csv_bytes: bytes
    artifacts: dict[int, bytes]  # n_estimators -> joblib bytes
    f1: dict[int, float]  # n_estimators -> weighted f1 on the held-out split


def train() -> Wine:
    # As a DataFrame, so the forests know the feature names the test set's header gives.
    data = load_wine(as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.3, stratify=data.target, random_state=SPLIT_SEED
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*x_test.columns, "target"])
    for features, target in zip(x_test.to_numpy(), y_test.to_numpy(), strict=True):
        writer.writerow([*(repr(float(v)) for v in features), int(target)])
    artifacts, f1 = {}, {}
    for n in sorted({*FORESTS, LATENCY_FOREST}):
        forest = RandomForestClassifier(n_estimators=n, random_state=0).fit(x_train, y_train)
        buf = io.BytesIO()
        joblib.dump(forest, buf)
        artifacts[n] = buf.getvalue()
        f1[n] = float(f1_score(y_test, forest.predict(x_test), average="weighted"))
    return Wine(len(data.target), len(y_test), out.getvalue().encode(), artifacts, f1)


# -- one registry: a database, its artifact store, the app -------------------------------


class Registry:
    """A migrated database with the scenario's model, dataset, environment and policy."""

    def __init__(self, url: str, data_dir: Path) -> None:
        self.url = url
        self.data_dir = data_dir
        migrate.upgrade(url)
        self.settings: Settings = load_settings(
            environ={},
            data_dir=str(data_dir),
            database_url=url,
            artifact_root=str(data_dir / "artifacts"),
            admin_token=ADMIN_TOKEN,
        )
        self.app = create_app(self.settings)
        self.client: FlaskClient = self.app.test_client()
        self.client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN_TOKEN}"
        self.context = self.app.extensions["modelreg"]

    def _expect(self, response: Any, *status: int) -> dict[str, Any]:
        if response.status_code not in status:
            raise RuntimeError(
                f"{response.request.method} {response.request.path}: {response.status_code} "
                f"{response.get_data(as_text=True)[:500]}"
            )
        body: dict[str, Any] = response.get_json()
        return body

    def setup(self, wine: Wine) -> str:
        c = self.client
        meta = {"name": DATASET, "target": "target", "task": "classification"}
        rev = self._expect(
            c.post(
                "/api/v1/datasets",
                data={
                    "file": (io.BytesIO(wine.csv_bytes), "wine-holdout.csv"),
                    "metadata": json.dumps(meta),
                },
                content_type="multipart/form-data",
            ),
            201,
        )
        self._expect(c.post("/api/v1/models", json={"name": MODEL}), 201)
        self._expect(c.post(f"/api/v1/models/{MODEL}/versions", json={"version": VERSION}), 201)
        self._expect(
            c.post(
                f"/api/v1/models/{MODEL}/versions/{VERSION}/transitions",
                json={"stage": "Staging", "reason": "bench"},
            ),
            200,
        )
        self._expect(c.put(f"/api/v1/environments/{ENV}", json={"description": "bench"}), 201)
        self._expect(
            c.put(
                f"/api/v1/environments/{ENV}/policies/{MODEL}",
                json={
                    "versions": f"<={VERSION}",
                    "stages": ["Staging"],
                    "metric": METRIC,
                    "dataset": DATASET,
                    "require_verified": True,
                    "reason": "bench: verified f1 only",
                },
            ),
            201,
        )
        return str(rev["label"])

    def register(self, wine: Wine, n_estimators: int) -> int:
        """One run, as CI registers it: artifact + metadata with its reported f1."""
        meta = {
            "params": {"n_estimators": n_estimators, "random_state": 0},
            "tags": {"estimator": "RandomForestClassifier"},
            "evaluations": [{"dataset": DATASET, "metrics": {METRIC: wine.f1[n_estimators]}}],
        }
        body = self._expect(
            self.client.post(
                f"/api/v1/models/{MODEL}/versions/{VERSION}/runs",
                data={
                    "artifact": (io.BytesIO(wine.artifacts[n_estimators]), "model.joblib"),
                    "metadata": json.dumps(meta),
                },
                content_type="multipart/form-data",
            ),
            201,
        )
        if len(body["pending_jobs"]) != 1:
            raise RuntimeError(f"run {body['id']} has jobs {body['pending_jobs']}, expected one")
        return int(body["id"])

    def champion(self) -> dict[str, Any] | None:
        try:
            doc, _ = champion_reads.read_champion(self.context.db, ENV, MODEL)
        except (NotFound, NoEligibleModel):
            return None
        return doc

    def jobs(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        token = None
        while True:
            query = "page_size=500" + (f"&page_token={token}" if token else "")
            page = self._expect(self.client.get(f"/api/v1/jobs?{query}"), 200)
            found += page["items"]
            token = page.get("next_page_token")
            if not token:
                return found

    def job_of(self, run_id: int) -> dict[str, Any]:
        page = self._expect(self.client.get(f"/api/v1/jobs?run_id={run_id}"), 200)
        return dict(page["items"][0])

    def worker(self, executor: Executor) -> Worker:
        return Worker(
            self.context.db, self.context.store, self.settings, executor=executor, name="bench"
        )

    def dispose(self) -> None:
        self.context.db.dispose()


# -- throughput ------------------------------------------------------------------------


class Timed:
    """Wraps an executor: its wall time per job and the evaluation's own load/score time."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.calls: list[tuple[float, float]] = []  # (executor wall s, load + score s)

    def run(self, spec: Spec, workdir: Path, keep_alive: Callable[[], bool]) -> Outcome:
        started = time.perf_counter()
        outcome = self.inner.run(spec, workdir, keep_alive)
        wall = time.perf_counter() - started
        seconds = decode(outcome.answer).header.get("seconds") if outcome.answer else None
        inner = sum(seconds.values()) if isinstance(seconds, dict) else float("nan")
        self.calls.append((wall, inner))
        return outcome


@dataclass
class Lane:
    """One executor working off its own database's jobs."""

    name: str
    registry: Registry
    timed: Timed
    worker: Worker = field(init=False)
    cold_ms: float = float("nan")
    job_ms: list[float] = field(default_factory=list)  # measured jobs
    exec_ms: list[float] = field(default_factory=list)
    eval_ms: list[float] = field(default_factory=list)
    round_s: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.worker = self.registry.worker(self.timed)

    def one(self) -> float:
        started = time.perf_counter()
        done = self.worker.run_once()
        elapsed = time.perf_counter() - started
        if done is None or done.state != "succeeded":
            raise RuntimeError(f"{self.name}: job ended {done}")
        return elapsed

    def round(self, jobs: int) -> list[tuple[float, float, float]]:
        got = []
        for _ in range(jobs):
            elapsed = self.one()
            wall, inner = self.timed.calls[-1]
            got.append((elapsed * 1000, wall * 1000, inner * 1000))
        return got


def throughput(
    args: argparse.Namespace, dbs: Databases, root: Path, wine: Wine, quiet: Quiet
) -> dict[str, Any]:
    per_round = max(1, -(-args.jobs // args.rounds))
    spare = args.spare_rounds * per_round
    total = 1 + args.rounds * per_round + spare  # + the cold job
    order = [FORESTS[i % len(FORESTS)] for i in range(total)]
    lanes: list[Lane] = []
    registries: list[Registry] = []
    try:
        lane_setup: tuple[tuple[str, int, Executor | None], ...] = (
            ("sandbox", DB_SANDBOX, None),
            ("in-process", DB_INPROCESS, InProcess()),
            ("strict", DB_STRICT, None),
        )
        for name, tag, executor in lane_setup:
            data_dir = root / f"runs-{tag}"
            data_dir.mkdir(parents=True)
            reg = Registry(dbs.new(tag), data_dir)
            registries.append(reg)
            reg.setup(wine)
            started = time.perf_counter()
            for n in order:
                reg.register(wine, n)
            log(f"{name}: {total} runs registered in {time.perf_counter() - started:.1f} s")
            if executor is None:
                level = process_sandbox_for if name == "sandbox" else confined_for
                executor = level(reg.settings)
            lanes.append(Lane(name, reg, Timed(executor)))
        sandbox, inproc, strict = lanes
        # Cold jobs first: the sandbox's fork server starts (and preloads) on its first job.
        for lane in lanes:
            lane.cold_ms = lane.one() * 1000
            log(f"{lane.name}: cold first job {lane.cold_ms:.0f} ms")
        gc.collect()
        left = total - 1
        disturbed = 0
        r = 0
        while len(sandbox.round_s) < args.rounds and left >= per_round:
            calm = quiet.wait()
            pair = [sandbox, inproc, strict]
            pair = pair[r % 3 :] + pair[: r % 3]
            if r % 2:
                pair.reverse()
            got = {lane.name: lane.round(per_round) for lane in pair}
            left -= per_round
            r += 1
            if not (calm and quiet.still_quiet()):
                if left >= per_round * (args.rounds - len(sandbox.round_s)):
                    quiet.repeated += 1
                    log(f"round {r} disturbed by other processes; measuring another")
                    continue
                disturbed += 1
            for lane in lanes:
                rows = got[lane.name]
                lane.job_ms += [j for j, _, _ in rows]
                lane.exec_ms += [e for _, e, _ in rows]
                lane.eval_ms += [i for _, _, i in rows]
                lane.round_s.append(sum(j for j, _, _ in rows) / 1000)
            log(
                f"round {len(sandbox.round_s)}/{args.rounds}: sandbox "
                f"{sandbox.round_s[-1] * 1000 / per_round:.0f} ms/job, in-process "
                f"{inproc.round_s[-1] * 1000 / per_round:.0f} ms/job, strict "
                f"{strict.round_s[-1] * 1000 / per_round:.0f} ms/job"
            )
        quiet.disturbed_kept += disturbed
        check_same_values(sandbox.registry, inproc.registry)
        check_same_values(strict.registry, inproc.registry)
        strict_ratios = [s / p for s, p in zip(strict.round_s, sandbox.round_s, strict=True)]
        bare = bare_child_ms(args.bare_children)
        per_lane = {lane.name: lane_summary(lane, per_round) for lane in lanes}
        ratios = [s / i for s, i in zip(sandbox.round_s, inproc.round_s, strict=True)]
        total_ratio = sum(sandbox.round_s) / sum(inproc.round_s)
        return {
            "jobs_per_round": per_round,
            "rounds": len(sandbox.round_s),
            "lanes": per_lane,
            "ratio_total": total_ratio,
            "ratio_median_of_rounds": statistics.median(ratios),
            "ratio_rounds": [round(x, 3) for x in ratios],
            "strict_ratio_total": sum(strict.round_s) / sum(sandbox.round_s),
            "strict_ratio_median_of_rounds": statistics.median(strict_ratios),
            "strict_ratio_rounds": [round(x, 3) for x in strict_ratios],
            "bare_child_ms": bare,
            "runs_registered": total,
        }
    finally:
        for reg in registries:
            reg.dispose()


def lane_summary(lane: Lane, per_round: int) -> dict[str, Any]:
    jobs = lane.job_ms
    return {
        "jobs": len(jobs),
        "runs_per_minute": 60 * len(jobs) / sum(lane.round_s),
        "mean_ms": statistics.fmean(jobs),
        "p50_ms": statistics.median(jobs),
        "p90_ms": percentile(jobs, 90),
        "max_ms": max(jobs),
        "executor_mean_ms": statistics.fmean(lane.exec_ms),
        "evaluation_mean_ms": statistics.fmean(lane.eval_ms),
        "cold_ms": lane.cold_ms,
        "rounds_ms_per_job": [round(s * 1000 / per_round, 1) for s in lane.round_s],
    }


def check_same_values(a: Registry, b: Registry) -> None:
    """Both executors stored the same verified f1 for the same runs: they did the same work."""

    def values(reg: Registry) -> list[tuple[int, str, float]]:
        out = []
        for job in reg.jobs():
            if job["state"] != "succeeded":
                continue
            out.append((job["run_id"], job["state"], job["result"]["metrics"][METRIC]))
        return sorted(out)

    va, vb = values(a), values(b)
    if va != vb:
        raise RuntimeError(f"sandbox and in-process stored different values:\n{va}\n{vb}")


def bare_child_ms(count: int) -> dict[str, float]:
    """A child doing nothing, through the same (running) fork server: fork, start-up, exit."""
    ctx = multiprocessing.get_context("forkserver")
    times = []
    for _ in range(count):
        started = time.perf_counter()
        child = ctx.Process(target=os.getpid, daemon=True)
        child.start()
        child.join(30)
        times.append((time.perf_counter() - started) * 1000)
    return {"p50": statistics.median(times), "min": min(times), "max": max(times)}


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# -- latency ---------------------------------------------------------------------------


def worker_command() -> list[str]:
    """``modelreg worker``: the console script beside this interpreter, else ``-m modelreg``."""
    script = Path(sys.executable).with_name("modelreg")
    if script.is_file():
        return [str(script), "worker"]
    return [sys.executable, "-m", "modelreg", "worker"]


class WorkerProcess:
    """``modelreg worker`` (see ``worker_command``), in its own process group."""

    def __init__(self, reg: Registry, poll_ms: int, log_path: Path) -> None:
        env = server_env(reg.url, reg.data_dir)
        env["MODELREG_WORKER_POLL_MS"] = str(poll_ms)
        self.log_path = log_path
        with log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                worker_command(),
                env=env,
                cwd=BENCH.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the worker exited ({self.proc.returncode}); log:\n{tail}")

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            if self.proc.poll() is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)


def wait_champion(reg: Registry, run_id: int, worker: WorkerProcess, poll_s: float) -> float:
    """Seconds until the champion lookup names ``run_id`` (bounded by ``WAIT_S``)."""
    started = time.perf_counter()
    deadline = started + WAIT_S
    while True:
        doc = reg.champion()
        now = time.perf_counter()
        if doc is not None and doc["run_id"] == run_id:
            return now - started
        if now > deadline:
            worker.check()
            raise RuntimeError(f"run {run_id} not champion after {WAIT_S:.0f} s; champion {doc}")
        time.sleep(poll_s)


def latency(
    args: argparse.Namespace, dbs: Databases, root: Path, wine: Wine, quiet: Quiet
) -> dict[str, Any]:
    data_dir = root / f"runs-{DB_LATENCY}"
    data_dir.mkdir(parents=True)
    reg = Registry(dbs.new(DB_LATENCY), data_dir)
    rng = random.Random(1)
    results: dict[str, Any] = {}
    try:
        label = reg.setup(wine)
        for poll_ms in args.poll_ms:
            worker = WorkerProcess(reg, poll_ms, root / f"worker-{poll_ms}.log")
            try:
                # Cold: the worker process starts, then its fork server on the first job.
                started = time.perf_counter()
                run_id = reg.register(wine, LATENCY_FOREST)
                registered = time.perf_counter()
                cold = wait_champion(reg, run_id, worker, args.check_ms / 1000)
                log(
                    f"poll {poll_ms} ms: cold first run (worker start-up included) "
                    f"{(registered - started + cold) * 1000:.0f} ms"
                )
                times = []
                for i in range(args.latency_runs):
                    quiet.wait()
                    # Registrations land at random points of the worker's poll cycle.
                    time.sleep(rng.uniform(0, poll_ms / 1000))
                    run_id = reg.register(wine, LATENCY_FOREST)
                    seconds = wait_champion(reg, run_id, worker, args.check_ms / 1000)
                    doc = reg.champion()
                    job = reg.job_of(run_id)
                    verified = job["result"]["metrics"][METRIC] if job["result"] else None
                    if (
                        doc is None
                        or job["state"] != "succeeded"
                        or doc["metric"] != {"name": METRIC, "value": verified, "dataset": label}
                    ):
                        raise RuntimeError(f"run {run_id}: job {job}, champion {doc}")
                    times.append(seconds * 1000)
                    log(f"poll {poll_ms} ms: run {i + 1}/{args.latency_runs} {times[-1]:.0f} ms")
            finally:
                worker.stop()
            results[str(poll_ms)] = {
                "runs": len(times),
                "p50_ms": statistics.median(times),
                "max_ms": max(times),
                "min_ms": min(times),
                "cold_ms": (registered - started + cold) * 1000,
                "all_ms": [round(t, 1) for t in times],
            }
        return results
    finally:
        reg.dispose()


# -- profile: where the sandbox's time goes ----------------------------------------------

PROBE_VARIANTS = ("inprocess", "shipped", "warm", "warm-freeze")


def profile(args: argparse.Namespace, root: Path, wine: Wine, quiet: Quiet) -> dict[str, Any]:
    """``evalprobe.py`` per variant, each in a fresh process, in rotating order."""
    probe_dir = root / "probe"
    probe_dir.mkdir()
    dataset = probe_dir / "wine-holdout.csv"
    dataset.write_bytes(wine.csv_bytes)
    features = probe_dir / "features.pkl"
    X, _ = load_xy(dataset, "csv", "target")
    features.write_bytes(pickle.dumps(X))
    specs = []
    for n in FORESTS:
        artifact = probe_dir / f"forest-{n}.joblib"
        artifact.write_bytes(wine.artifacts[n])
        spec = Spec(str(artifact), "joblib", str(features), "classification")
        specs.append(json.dumps(asdict(spec)))
    got: dict[str, list[dict[str, Any]]] = {v: [] for v in PROBE_VARIANTS}
    variants = list(PROBE_VARIANTS)
    for rep in range(args.profile_reps):
        order = variants[rep % len(variants) :] + variants[: rep % len(variants)]
        if rep % 2:
            order.reverse()
        for variant in order:
            quiet.wait()
            argv = [sys.executable, str(BENCH / "evalprobe.py"), variant, str(args.profile_jobs)]
            out = subprocess.run(
                argv + specs, capture_output=True, text=True, timeout=300, cwd=BENCH.parent
            )
            if out.returncode:
                raise RuntimeError(f"evalprobe {variant} failed:\n{out.stderr[-3000:]}")
            got[variant].append(json.loads(out.stdout))
        log(f"profile repetition {rep + 1}/{args.profile_reps} done")
    summary: dict[str, Any] = {}
    for variant, runs in got.items():
        walls = [w for r in runs for w in r["executor_ms"]]
        evals = [e for r in runs for e in r["evaluation_ms"]]
        row: dict[str, Any] = {
            "executor_p50_ms": statistics.median(walls),
            "executor_mean_ms": statistics.fmean(walls),
            "evaluation_p50_ms": statistics.median(evals),
            "cold_ms": statistics.median(r["cold_ms"] for r in runs),
            "jobs": len(walls),
        }
        if variant != "inprocess":
            fresh = [f for r in runs for f in r["fresh_child"]]
            row |= {
                "bare_child_p50_ms": statistics.median(r["bare_child_p50_ms"] for r in runs),
                "fresh_first_ms": statistics.median(f["first_ms"] for f in fresh),
                "fresh_second_ms": statistics.median(f["second_ms"] for f in fresh),
                "fresh_minor_faults": statistics.median(f["minor_faults_first"] for f in fresh),
                "fresh_modules": statistics.median(f["modules_imported_first"] for f in fresh),
                "fresh_module_names": fresh[0]["modules"] if fresh else [],
                "warmed": all(f["warmed"] for f in fresh) if variant != "shipped" else False,
            }
        summary[variant] = row
    return summary


# -- report ----------------------------------------------------------------------------


def _line(label: str, value: float, note: str = "") -> str:
    return f"  {label:<52} {value:7.1f}" + (f"   {note}" if note else "")


def report(doc: dict[str, Any]) -> str:
    cfg, wine, tp, lat = doc["config"], doc["wine"], doc["throughput"], doc["latency"]
    sizes = ", ".join(
        f"{n} trees {wine['artifact_kb'][str(n)]:.0f} KB f1 {wine['f1'][str(n)]:.3f}"
        for n in FORESTS
    )
    lines = [
        f"modelreg evaluation jobs - {cfg['database']}, {cfg['cpus']} CPUs, Python "
        f"{cfg['python']}, scikit-learn {cfg['sklearn']}, SQLAlchemy {cfg['sqlalchemy']}, "
        f"modelreg {cfg['service_revision']}",
        f"wine: {wine['rows']} rows, held-out {wine['test_rows']} rows (stratified, "
        f"random_state={SPLIT_SEED}); RandomForest: {sizes}",
        "",
        f"throughput: {tp['lanes']['sandbox']['jobs']} jobs per executor in {tp['rounds']} "
        f"interleaved rounds of {tp['jobs_per_round']} (order alternating), forests of "
        f"{'/'.join(map(str, FORESTS))} trees in turn;",
        "  each job: claim, copy + sha256-verify artifact and test set, evaluate, store the "
        "verified values, recompute the champion",
        f"{'executor':<11} {'jobs':>4} {'runs/min':>9} {'p50 ms':>7} {'p90 ms':>7} "
        f"{'max ms':>7} {'mean ms':>8}   {'executor':>8} {'evaluate':>8}   {'cold 1st':>8}",
    ]
    for name, s in tp["lanes"].items():
        lines.append(
            f"{name:<11} {s['jobs']:>4} {s['runs_per_minute']:>9.0f} {s['p50_ms']:>7.1f} "
            f"{s['p90_ms']:>7.1f} {s['max_ms']:>7.1f} {s['mean_ms']:>8.1f}   "
            f"{s['executor_mean_ms']:>8.1f} {s['evaluation_mean_ms']:>8.1f}   "
            f"{s['cold_ms']:>8.0f}"
        )
    sb, ip = tp["lanes"]["sandbox"], tp["lanes"]["in-process"]
    lines += [
        "  executor, evaluate = means: ms in Executor.run, and ms the evaluation itself "
        "reported (read test set, load model, score)",
        "  cold 1st = each lane's first job, not counted: the sandbox's starts the fork "
        "server, which imports the scientific stack",
        "",
        "the sandbox's extra time per job (means, ms):",
        _line("whole job, sandbox - in-process", sb["mean_ms"] - ip["mean_ms"]),
        _line(
            "evaluation in the child - evaluation in-process",
            sb["evaluation_mean_ms"] - ip["evaluation_mean_ms"],
            "(a fresh child evaluates cold)",
        ),
        _line(
            "Executor.run - evaluation, sandbox",
            sb["executor_mean_ms"] - sb["evaluation_mean_ms"],
            "(fork, start-up, limits, pipe, join)",
        ),
        _line(
            "  of which a child doing nothing (p50)",
            tp["bare_child_ms"]["p50"],
            "(fork, re-run of the main script, exit)",
        ),
        _line(
            "job machinery, same in both (in-process job - Executor.run)",
            ip["mean_ms"] - ip["executor_mean_ms"],
        ),
    ]
    if doc.get("profile"):
        lines += profile_lines(doc["profile"], ip["mean_ms"] - ip["executor_mean_ms"])
    if lat:
        lines += [
            "",
            f"latency: run registered (POST 201) -> champion lookup names it with its verified "
            f"{METRIC}; `{cfg['worker_command']}` subprocess, checked every "
            f"{cfg['check_ms']:g} ms",
            f"{'poll ms':>9} {'runs':>4} {'p50 ms':>7} {'max ms':>7} {'min ms':>7} {'cold 1st':>9}",
        ]
        for poll, s in lat.items():
            lines.append(
                f"{poll:>9} {s['runs']:>4} {s['p50_ms']:>7.0f} {s['max_ms']:>7.0f} "
                f"{s['min_ms']:>7.0f} {s['cold_ms']:>9.0f}"
            )
        lines.append(
            "  cold 1st: the worker's first job, not counted (worker start-up + fork server start)"
        )
    lines += [
        "",
        f"rounds measured again because other processes were busy: {cfg['rounds_repeated']}",
    ]
    if cfg["rounds_disturbed_kept"]:
        lines.append(
            f"WARNING: {cfg['rounds_disturbed_kept']} round(s) kept although other processes "
            "competed for the CPUs (--max-wait spent or no spare jobs): read the ratio with care."
        )
    ratio = tp["ratio_total"]
    lines += [
        "",
        "ratio (steady state, cold first jobs excluded):",
        f"  sandbox time / in-process time, all rounds   {ratio:6.2f}  target <= "
        f"{TARGET_RATIO}  {'PASS' if ratio <= TARGET_RATIO else 'FAIL'}",
        f"  median of the rounds' ratios                 {tp['ratio_median_of_rounds']:6.2f}"
        f"  (rounds: {', '.join(f'{x:.2f}' for x in tp['ratio_rounds'])})",
        f"  strict (bubblewrap) / sandbox (process level) {tp['strict_ratio_total']:6.2f}  "
        f"target <= {TARGET_STRICT_RATIO}  "
        f"{'PASS' if tp['strict_ratio_total'] <= TARGET_STRICT_RATIO else 'FAIL'}",
        f"  median of the rounds' strict ratios          "
        f"{tp['strict_ratio_median_of_rounds']:6.2f}"
        f"  (rounds: {', '.join(f'{x:.2f}' for x in tp['strict_ratio_rounds'])})",
    ]
    return "\n".join(lines)


def profile_lines(prof: dict[str, Any], machinery_ms: float) -> list[str]:
    ip = prof["inprocess"]["executor_p50_ms"]
    lines = [
        "",
        "profile (evalprobe.py: Executor.run alone, each variant in a fresh process, "
        f"{prof['inprocess']['jobs']} jobs each, p50 ms):",
        f"{'variant':<12} {'Executor.run':>12} {'evaluate':>9} {'bare child':>10} "
        f"{'fresh child: 1st eval':>21} {'2nd':>5} {'faults':>6} {'imports':>7}  "
        f"{'job ratio*':>10}",
    ]
    for variant, r in prof.items():
        ratio = (machinery_ms + r["executor_p50_ms"]) / (machinery_ms + ip)
        if variant == "inprocess":
            extra = f"{'':>10} {'':>21} {'':>5} {'':>6} {'':>7}"
        else:
            extra = (
                f"{r['bare_child_p50_ms']:>10.1f} {r['fresh_first_ms']:>21.1f} "
                f"{r['fresh_second_ms']:>5.0f} {r['fresh_minor_faults']:>6.0f} "
                f"{r['fresh_modules']:>7.0f}"
            )
        lines.append(
            f"{variant:<12} {r['executor_p50_ms']:>12.1f} {r['evaluation_p50_ms']:>9.1f} "
            f"{extra}  {ratio:>10.2f}"
        )
    names = prof.get("shipped", {}).get("fresh_module_names", [])
    lines += [
        "  shipped = Sandbox as the worker builds it; warm = its fork server also imports "
        "evalwarm.py (one small evaluation before any fork); warm-freeze = warm + gc.freeze()",
        "  fresh child: a sandbox child evaluating twice; faults = minor page faults of its "
        "first evaluation, imports = modules it imported",
        f"    shipped child's first imports: {', '.join(names[:6])}{', …' if names else ''}",
        f"  * job ratio = (job machinery {machinery_ms:.1f} ms + Executor.run) / (machinery "
        "+ in-process Executor.run)",
    ]
    return lines


def service_revision() -> str:
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--pg-admin-url", default=PG_ADMIN_URL, help="where to create the databases")
    p.add_argument("--jobs", type=int, default=60, help="measured jobs per executor")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    p.add_argument(
        "--spare-rounds",
        type=int,
        default=2,
        help="extra jobs (in rounds) for rounds measured again after a disturbance",
    )
    p.add_argument("--poll-ms", default="500,50", help="MODELREG_WORKER_POLL_MS settings")
    p.add_argument("--latency-runs", type=int, default=10, help="timed runs per poll setting")
    p.add_argument("--check-ms", type=float, default=2.0, help="how often latency is checked")
    p.add_argument(
        "--bare-children", type=int, default=20, help="no-op children timed through the fork server"
    )
    p.add_argument(
        "--max-wait",
        type=float,
        default=60.0,
        help="seconds, in all, to wait for other processes to leave the CPUs alone",
    )
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument(
        "--profile", action="store_true", help="add evalprobe.py's breakdown (process level)"
    )
    p.add_argument("--profile-reps", type=int, default=2, help="processes per probe variant")
    p.add_argument("--profile-jobs", type=int, default=15, help="jobs per probe process")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)
    args.poll_ms = [int(x) for x in args.poll_ms.split(",") if x.strip()]
    if args.jobs < 1 or args.rounds < 1:
        p.error("--jobs and --rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    command = worker_command()
    root = Path(tempfile.mkdtemp(prefix="modelreg-evalbench-"))
    dbs = Databases(args.database, root, args.pg_admin_url)
    try:
        wine = train()
        log(f"trained forests: f1 {wine.f1}")
        quiet = Quiet(budget_s=args.max_wait)
        tp = throughput(args, dbs, root, wine, quiet)
        lat = {} if args.skip_latency else latency(args, dbs, root, wine, quiet)
        prof = profile(args, root, wine, quiet) if args.profile else {}
        doc = {
            "config": {
                "database": args.database, "jobs": args.jobs, "rounds": args.rounds,
                "poll_ms": args.poll_ms, "latency_runs": args.latency_runs,
                "check_ms": args.check_ms, "cpus": os.cpu_count(),
                "worker_command": " ".join([Path(command[0]).name, *command[1:]]),
                "python": platform.python_version(), "sklearn": sklearn.__version__,
                "numpy": np.__version__, "sqlalchemy": sqlalchemy.__version__,
                "service_revision": service_revision(),
                "rounds_repeated": quiet.repeated, "rounds_disturbed_kept": quiet.disturbed_kept,
                "seconds": round(time.perf_counter() - started, 1),
            },
            "wine": {
                "rows": wine.rows, "test_rows": wine.test_rows,
                "f1": {str(k): v for k, v in wine.f1.items()},
                "artifact_kb": {str(k): len(v) / 1024 for k, v in wine.artifacts.items()},
            },
            "throughput": tp, "latency": lat, "profile": prof,
            "target_ratio": TARGET_RATIO, "pass": tp["ratio_total"] <= TARGET_RATIO,
        }  # fmt: skip
        print(json.dumps(doc, indent=2) if args.json else report(doc))
        log(f"done in {time.perf_counter() - started:.0f} s")
        return 0
    finally:
        with contextlib.suppress(Exception):
            dbs.drop_all()
        if args.keep:
            log(f"data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
