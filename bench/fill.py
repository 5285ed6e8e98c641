"""Fill a fresh, migrated database with N runs through the service layer (not HTTP).

The rows are the ones the service itself writes: models and versions through
``modelreg.registry.services``, stages through ``registry.transition``, the dataset, the
environments and the policies through their service modules, and every run through
``runs._insert`` + ``evaluations.add`` (the two steps of ``runs.create_run`` once its
artifact is stored). Two shortcuts keep 100,000 runs to a few minutes, and neither
changes what ends up in the tables:

- runs are batched, one unit of work per version (up to 1,000 runs), instead of
  one transaction per run, and on PostgreSQL two processes write them side by side;
- runs and their evaluations are written *before* the policies exist, so no
  champion is recomputed per run. The policies then go in through
  ``environments.put_policy``, which computes the champions with the real upkeep.

All runs share one small artifact, stored once in the content-addressed store.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from modelreg.access.roles import Caller
from modelreg.db.models import Evaluation, Run
from modelreg.db.session import Database
from modelreg.environments import reads
from modelreg.environments import services as environments
from modelreg.evaluation import datasets
from modelreg.evaluation import services as evaluations
from modelreg.registry import services as registry
from modelreg.runs import services as runs
from modelreg.storage.artifacts import LocalArtifactStore

MODEL = "AImodel"
ENV = "PROD"
OTHER_ENV = "INT"
DATASET = "wine-holdout"
# Who the audit trail and the champion history name for what the benchmark writes.
ACTOR = Caller("bench", "admin")
BATCH = 1_000


@dataclass(frozen=True)
class Filled:
    runs: int
    versions: int
    seconds: float
    policy_seconds: float  # the two put_policy calls: champion computed by the upkeep
    analyzed: bool
    champion_run_id: int
    champion_version: str


def version_labels(n_runs: int) -> list[str]:
    """10 to 100 versions, 1.0 … 10.9, so the runs spread over several versions.

    >>> version_labels(1_000)[:3], len(version_labels(1_000)), len(version_labels(100_000))
    (['1.0', '1.1', '1.2'], 10, 100)
    """
    count = max(10, min(100, n_runs // 1_000))
    return [f"{1 + i // 10}.{i % 10}" for i in range(count)]


def _stage_of(index: int) -> str:
    # Three in five versions in Production, one in Staging, one left in None:
    # the policy has ineligible runs to skip, as a real registry would.
    return ("Production", "Production", "Production", "Staging", "None")[index % 5]


def _add_runs(
    db: Database,
    label: str,
    count: int,
    sha256: str,
    size: int,
    rng: random.Random,
    *,
    lock: bool,
) -> None:
    """``count`` runs of one version, each with its f1, in one unit of work."""
    with db.unit_of_work() as s:
        mv = registry.get_version(s, MODEL, label, lock_for_champions=lock)
        for _ in range(count):
            meta = runs.RunInput(
                params={"C": rng.choice([0.1, 1.0, 10.0]), "max_iter": 200},
                tags={"pipeline": "bench"},
                source={"git_commit": f"{rng.getrandbits(160):040x}"},
            )
            run = runs._insert(s, mv, sha256, size, "model.joblib", meta, ACTOR.name)
            evaluations.add(s, run, f"{DATASET}@1", {"f1": round(rng.uniform(0.6, 0.95), 6)})
        s.commit()


def _fill_versions(
    url: str, jobs: list[tuple[str, int]], sha256: str, size: int, seed: int, lock: bool
) -> None:
    """The runs of some versions, ``BATCH`` per unit of work. Runs in a worker process too.

    Each version draws from its own seeded generator, so the data (and the champion)
    do not depend on how the versions were shared out between processes.
    """
    db = Database(url)
    # The ORM allocates many small cyclic objects per run; collecting once per batch
    # instead of whenever the allocation counter says so nearly halves the fill time.
    gc_enabled = gc.isenabled()
    gc.disable()
    try:
        for label, count in jobs:
            rng = random.Random(f"{seed}/{label}")
            while count > 0:
                batch = min(count, BATCH)
                _add_runs(db, label, batch, sha256, size, rng, lock=lock)
                count -= batch
                gc.collect()
    finally:
        if gc_enabled:
            gc.enable()
        db.dispose()


def fill(
    url: str,
    artifact_root: Path,
    n_runs: int,
    *,
    seed: int = 1,
    analyze: bool = True,
    processes: int = os.cpu_count() or 1,
) -> Filled:
    """Fill the database at ``url``; see the module docstring.

    With ``analyze``, PostgreSQL gets an ``ANALYZE`` after the bulk of runs, as
    autovacuum would give it in service: without statistics its planner believes the
    fresh tables empty, and the champion upkeep's candidate query turns quadratic
    (minutes at 100,000 runs). Pass ``analyze=False`` to see that. On PostgreSQL the
    runs are written by ``processes`` worker processes.
    """
    started = time.perf_counter()
    db = Database(url)
    try:
        store = LocalArtifactStore(artifact_root)
        upload = store.begin_upload(1 << 20)
        upload.write(b"modelreg benchmark artifact\n" * 64)
        blob = store.commit(upload)

        labels = version_labels(n_runs)
        with db.unit_of_work() as s:
            registry.create_model(s, MODEL, "benchmark model", caller=ACTOR)
        for i, label in enumerate(labels):
            with db.unit_of_work() as s:
                registry.create_version(s, MODEL, label, caller=ACTOR)
            target = _stage_of(i)
            path = {"Production": ["Staging", "Production"], "Staging": ["Staging"]}.get(target, [])
            for stage in path:
                with db.unit_of_work() as s:
                    registry.transition(
                        s, MODEL, label, stage=stage, reason="bench", force=True, caller=ACTOR
                    )
        with db.unit_of_work() as s:
            datasets.register_revision(
                s,
                DATASET,
                hashlib.sha256(b"wine-holdout v1").hexdigest(),
                "bench test set",
                caller=ACTOR,
            )
        for env in (ENV, OTHER_ENV):
            with db.unit_of_work() as s:
                environments.put_environment(s, env, f"{env} (benchmark)", caller=ACTOR)

        per_version, extra = divmod(n_runs, len(labels))
        jobs = [(label, per_version + (1 if i < extra else 0)) for i, label in enumerate(labels)]
        if db.is_sqlite or processes <= 1:
            # One writer at a time on SQLite anyway (BEGIN IMMEDIATE).
            _fill_versions(url, jobs, blob.sha256, blob.size, seed, lock=True)
        else:
            # PostgreSQL takes writers side by side, each on its own versions. They skip
            # the model lock that serializes champion upkeep: no policy exists yet, so
            # there is no champion to keep, and the rows are the same either way.
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(processes, mp_context=spawn) as pool:
                args = (blob.sha256, blob.size, seed, False)
                parts = [
                    pool.submit(_fill_versions, url, jobs[k::processes], *args)
                    for k in range(processes)
                ]
                for part in parts:
                    part.result()

        analyzed = analyze and not db.is_sqlite
        if analyzed:
            with db.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")

        policies = {
            ENV: environments.PolicyInput(
                versions="<=5.0",
                stages=("Production",),
                metric="f1",
                dataset=DATASET,
                reason="bench",
            ),
            OTHER_ENV: environments.PolicyInput(
                versions="<=10.0",
                stages=("Staging", "Production"),
                metric="f1",
                dataset=DATASET,
                reason="bench",
            ),
        }
        policy_started = time.perf_counter()
        for env, body in policies.items():
            with db.unit_of_work() as s:
                environments.put_policy(s, env, MODEL, body, if_match=None, caller=ACTOR)
        policy_seconds = time.perf_counter() - policy_started

        with db.unit_of_work(write=False) as s:
            stored_runs = s.scalar(select(func.count()).select_from(Run))
            stored_evals = s.scalar(select(func.count()).select_from(Evaluation))
        if stored_runs != n_runs or stored_evals != n_runs:
            raise RuntimeError(f"expected {n_runs} runs, stored {stored_runs}/{stored_evals}")
        doc, _ = reads.read_champion(db, ENV, MODEL)
        return Filled(
            runs=n_runs,
            versions=len(labels),
            seconds=time.perf_counter() - started,
            policy_seconds=policy_seconds,
            analyzed=analyzed,
            champion_run_id=doc["run_id"],
            champion_version=doc["version"],
        )
    finally:
        db.dispose()
