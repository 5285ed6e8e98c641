"""The evaluation worker: claim a job, evaluate in the sandbox, store the result.

Any number of workers, on any number of machines sharing the database and the
artifact store, may run at once (``modelreg worker``). For each job the worker
copies the run's artifact and the test set out of the store into a private
directory while hashing them, refuses a copy whose sha256 differs from the
recorded one, splits the test set into features and labels, and only then lets
the sandbox's child load the model, with the features only. The child answers
with predictions; the worker checks them and computes the metrics against the
labels it kept. The verified values, the job's new state and the champions they
move are written in one transaction.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from modelreg.changes import settling
from modelreg.changes.unit import Change
from modelreg.config import Settings
from modelreg.db.models import DatasetRevision, Evaluation, Job, Run, utcnow
from modelreg.db.session import Database
from modelreg.evaluation import queue as jobs
from modelreg.evaluation import services as evaluations
from modelreg.evaluation.child import Limits, Spec
from modelreg.evaluation.confined import confined_for
from modelreg.evaluation.content import load_xy
from modelreg.evaluation.sandbox import Executor, Outcome, Sandbox, score_answer
from modelreg.roles import Caller
from modelreg.runtime import logs
from modelreg.runtime import prometheus as metrics
from modelreg.storage.artifacts import ArtifactStore

log = logging.getLogger("modelreg.worker")

_CHUNK = 1024 * 1024


class _Corrupt(Exception):
    """A stored file whose bytes no longer match its recorded digest, or that is gone."""


@dataclass(frozen=True)
class Processed:
    """What became of one claimed job."""

    job_id: int
    state: str  # succeeded, failed, cancelled, pending (released for a retry), lost
    error: str = ""


def default_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def sandbox_for(settings: Settings) -> Executor:
    """The executor of ``evaluation_isolation``: strict (bubblewrap) or process.

    Strict is refused (:class:`~modelreg.evaluation.cgroups.StrictUnavailable`) when
    this machine cannot provide it; the worker does not fall back by itself.
    """
    if settings.evaluation_isolation == "process":
        return process_sandbox_for(settings)
    return confined_for(settings)


def process_sandbox_for(settings: Settings) -> Sandbox:
    return Sandbox(
        timeout=settings.evaluation_timeout,
        cpu_seconds=settings.evaluation_cpu_seconds,
        memory_mb=settings.evaluation_memory_mb,
        renew_every=max(settings.job_lease_seconds / 3, 0.2),
        open_files=settings.evaluation_open_files,
    )


class Worker:
    def __init__(
        self,
        db: Database,
        store: ArtifactStore,
        settings: Settings,
        *,
        executor: Executor | None = None,
        name: str | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.settings = settings
        self.executor = executor or sandbox_for(settings)
        self.name = name or default_name()
        self.caller = Caller(f"worker:{self.name}", "worker")
        self._next_settle_check = 0.0
        # What the job record says ran it; a test double is neither level.
        self.isolation: str | None = getattr(self.executor, "isolation", None)

    def run_once(self) -> Processed | None:
        """Claim and process one job; ``None`` when there is nothing to do."""
        claim = jobs.claim(self.db, self.name, self.settings.job_lease_seconds)
        if claim is None:
            return None
        return self.process(claim)

    def run(
        self,
        stop: threading.Event | None = None,
        *,
        max_jobs: int | None = None,
        until_idle: bool = False,
        parent_pid: int | None = None,
        ready: Callable[[], None] | None = None,
    ) -> int:
        """Process jobs until ``stop`` is set (or the queue is empty, or ``max_jobs``).

        A database that cannot be reached is waited for, not fatal. Returns the
        number of jobs processed.
        """
        stop = stop or threading.Event()
        poll = self.settings.worker_poll_ms / 1000
        warm = getattr(self.executor, "warm", None)
        if warm is not None:
            warm()
        if ready is not None:
            ready()
        done = 0
        while not stop.is_set() and (max_jobs is None or done < max_jobs):
            if parent_pid is not None and os.getppid() != parent_pid:
                log.info("worker %s: parent %s is gone; stopping", self.name, parent_pid)
                break
            try:
                self._release_expired_holds()
                processed = self.run_once()
            except SQLAlchemyError as exc:
                log.warning("worker %s: database unavailable (%s); retrying", self.name, exc)
                stop.wait(max(poll, 1.0))
                continue
            if processed is None:
                if until_idle:
                    break
                stop.wait(poll)
                continue
            done += 1
        return done

    def _release_expired_holds(self) -> None:
        """Champions held past the settle limit, decided now (at most once a second)."""
        now = time.monotonic()
        if now < self._next_settle_check:
            return
        self._next_settle_check = now + 1.0
        settling.release_expired_holds(self.db, actor=f"worker:{self.name}")

    # -- one job -----------------------------------------------------------------

    def process(self, claim: jobs.Claim) -> Processed:
        """Evaluate one claimed job and store its result; its log records carry its id."""
        started = time.monotonic()
        with logs.context(job_id=claim.job_id):
            result = self._process(claim, started)
        metrics.EVALUATION_DURATION.labels(result.state).observe(time.monotonic() - started)
        return result

    def _process(self, claim: jobs.Claim, started: float) -> Processed:
        try:
            prepared = self._read(claim)
            if isinstance(prepared, Processed):
                return prepared
            run_row, revision = prepared
            workdir = Path(tempfile.mkdtemp(prefix=f"modelreg-job-{claim.job_id}-"))
            try:
                outcome = self._evaluate(claim, run_row, revision, workdir)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
        except Exception as exc:  # our own failure, not the model's: try again later
            log.exception("worker %s: job %s failed unexpectedly", self.name, claim.job_id)
            return self._release(claim, f"{type(exc).__name__}: {exc}")
        if outcome.lost:
            log.warning("worker %s: lost job %s (cancelled or taken over)", self.name, claim.job_id)
            return Processed(claim.job_id, "lost", outcome.error)
        result = self._store(claim, outcome, time.monotonic() - started)
        log.info(
            "worker %s: job %s %s in %.2fs%s",
            self.name,
            claim.job_id,
            result.state,
            time.monotonic() - started,
            f": {result.error}" if result.error else "",
        )
        return result

    def _read(self, claim: jobs.Claim) -> tuple[dict[str, Any], dict[str, Any]] | Processed:
        with self.db.unit_of_work(write=False) as session:
            run = session.get(Run, claim.run_id)
            revision = session.get(DatasetRevision, claim.dataset_revision_id)
            found = None
            if run is not None and revision is not None:
                found = (
                    {"sha256": run.artifact_sha256, "format": run.artifact_format},
                    {
                        "sha256": revision.sha256,
                        "has_content": revision.has_content,
                        "format": revision.content_format,
                        "target": revision.target,
                        "task": revision.task,
                        "label": revision.label,
                    },
                )
        return found if found is not None else self._finish_without_run(claim)

    def _evaluate(
        self, claim: jobs.Claim, run: dict[str, Any], revision: dict[str, Any], workdir: Path
    ) -> Outcome:
        if not revision["has_content"]:
            return Outcome(ok=False, error=f"{revision['label']} has no content to evaluate on")
        try:
            artifact = self._copy_verified(run["sha256"], workdir / "artifact")
            dataset = self._copy_verified(revision["sha256"], workdir / "dataset")
        except _Corrupt as exc:
            return Outcome(ok=False, error=str(exc))
        # The labels stay here: the child gets the feature columns only.
        X, y = load_xy(dataset, revision["format"], revision["target"])
        dataset.unlink()
        features = workdir / "features.pkl"
        features.write_bytes(pickle.dumps(X, protocol=pickle.HIGHEST_PROTOCOL))
        del X
        lease = self.settings.job_lease_seconds
        if not jobs.renew(self.db, claim, lease):  # the copies may have taken a while
            return Outcome(ok=False, lost=True, error="the worker lost its claim")
        spec = Spec(
            artifact=str(artifact),
            artifact_format=run["format"],
            features=str(features),
            task=revision["task"],
            skops_trusted=self.settings.skops_trusted,
        )
        outcome = self.executor.run(spec, workdir, lambda: jobs.renew(self.db, claim, lease))
        limits = getattr(self.executor, "limits", None) or Limits(
            memory_mb=self.settings.evaluation_memory_mb,
            cpu_seconds=self.settings.evaluation_cpu_seconds,
        )
        return score_answer(outcome, revision["task"], y, limits)

    def _copy_verified(self, sha256: str, target: Path) -> Path:
        """Copy a stored blob into the job's directory, hashing it on the way."""
        digest = hashlib.sha256()
        try:
            with self.store.open(sha256) as src, target.open("wb") as dst:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
        except FileNotFoundError:
            raise _Corrupt(f"the stored file {sha256} is missing from the artifact store") from None
        if digest.hexdigest() != sha256:
            raise _Corrupt(
                f"the stored file {sha256} does not match its sha256 (got {digest.hexdigest()}); "
                "it was not loaded"
            )
        return target

    # -- results -----------------------------------------------------------------

    def _store(self, claim: jobs.Claim, outcome: Outcome, elapsed: float) -> Processed:
        with self.db.unit_of_work() as session:
            run = session.get(Run, claim.run_id)
            if run is None:
                return self._finish_without_run(claim)
            model = run.model_version.model
            with Change(session, self.caller, "evaluation.verify") as change:
                change.lock(model)
                job = jobs.held(session, claim)
                if job is None:
                    change.discard()
                    return Processed(claim.job_id, "lost", "the job was cancelled or taken over")
                run = session.get(Run, claim.run_id)
                if run is None:  # removed while we evaluated (its removal cancels the job too)
                    change.discard()
                    return Processed(claim.job_id, "cancelled", "run removed")
                result: dict[str, Any] = {
                    "metrics": outcome.metrics,
                    "skipped": outcome.skipped,
                    "seconds": round(elapsed, 3),
                    **{k: v for k, v in outcome.details.items() if k != "seconds"},
                }
                job.result = result
                job.isolation = self.isolation
                job.finished_at = utcnow()
                job.claim_token = None
                job.lease_expires_at = None
                if not outcome.ok:
                    job.state = jobs.FAILED
                    job.error = outcome.error
                    change.action = "evaluation.fail"
                    jobs.settle_failure(change, job)
                    return Processed(claim.job_id, jobs.FAILED, outcome.error)
                stored = self._add_verified(session, job, outcome.metrics)
                job.state = jobs.SUCCEEDED
                if not outcome.metrics:
                    job.error = "no metric could be computed: " + "; ".join(
                        f"{k}: {v}" for k, v in sorted(outcome.skipped.items())
                    )
                if not stored:
                    change.bookkeeping()  # every value was known already: nothing moves
                    return Processed(claim.job_id, jobs.SUCCEEDED)
                label = job.dataset_revision.label
                change.recompute(
                    model,
                    trigger="verified_evaluation",
                    detail=f"run {run.id} verified on {label} (job {job.id})",
                    changed_run=run.id,
                    actor=job.actor or "worker",
                )
                # Not a request, but a change of what champions are chosen from.
                change.record(
                    target=evaluations.target(run.id, label),
                    before=None,
                    after={
                        "run_id": run.id,
                        "dataset": label,
                        "source": "verified",
                        "metrics": stored,
                        "job_id": job.id,
                    },
                )
            return Processed(claim.job_id, jobs.SUCCEEDED)

    @staticmethod
    def _add_verified(session: Any, job: Job, metrics: dict[str, float]) -> dict[str, float]:
        """Store the values this job computed; returns those stored."""
        # Verified values are immutable: a value stored by an earlier job stays.
        have = set(
            session.scalars(
                select(Evaluation.metric).where(
                    Evaluation.run_id == job.run_id,
                    Evaluation.dataset_revision_id == job.dataset_revision_id,
                    Evaluation.source == "verified",
                )
            )
        )
        rows = [
            Evaluation(
                run_id=job.run_id,
                dataset_revision_id=job.dataset_revision_id,
                metric=name,
                value=value,
                source="verified",
            )
            for name, value in sorted(metrics.items())
            if name not in have
        ]
        session.add_all(rows)
        session.flush()
        return {row.metric: row.value for row in rows}

    def _finish_without_run(self, claim: jobs.Claim) -> Processed:
        with self.db.unit_of_work() as session:
            job = jobs.held(session, claim)
            if job is not None:
                job.state = jobs.CANCELLED
                job.error = "run removed"
                job.finished_at = utcnow()
                job.claim_token = None
                session.commit()
        return Processed(claim.job_id, jobs.CANCELLED, "run removed")

    def _release(self, claim: jobs.Claim, error: str) -> Processed:
        """Give a job back after our own failure: retried later, or failed when out of tries."""
        try:
            with (
                self.db.unit_of_work() as session,
                Change(session, self.caller, "evaluation.fail") as change,
            ):
                run = session.get(Run, claim.run_id)
                if run is not None:  # a failure below moves champions: model lock first
                    change.lock(run.model_version.model)
                job = jobs.held(session, claim)
                if job is None:
                    change.discard()
                    return Processed(claim.job_id, "lost", error)
                job.claim_token = None
                job.lease_expires_at = None
                job.error = error
                if job.attempts >= job.max_attempts:
                    job.state = jobs.FAILED
                    job.finished_at = utcnow()
                    jobs.settle_failure(change, job)
                else:
                    job.state = jobs.PENDING
                    job.available_at = utcnow() + timedelta(seconds=2**job.attempts)
                    change.bookkeeping()  # retried later; nothing moves yet
                return Processed(claim.job_id, job.state, error)
        except SQLAlchemyError:
            # The lease runs out by itself and another claim will retry the job.
            return Processed(claim.job_id, "lost", error)
