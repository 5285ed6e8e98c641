"""Background jobs: evaluations persisted in the database and claimed by workers.

A job is ``pending`` until a worker claims it, ``running`` while a worker holds
its lease, then ``succeeded``, ``failed`` or ``cancelled`` (its run was removed).
Claims use row locks (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's write
transactions are serialized anyway), so two workers never take the same job. A
claim hands out a fresh token and a lease that the worker renews; when a worker
dies its lease runs out and the job is claimable again, up to ``max_attempts``
claims in all. Whatever finishes a job must still hold its token, so a worker
that lost its lease cannot finish a job that another one has taken over.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    and_,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, selectinload

from modelreg.access.roles import Caller
from modelreg.changes import audit, champions
from modelreg.db.models import (
    JOB_ACTIVE_STATES,
    DatasetRevision,
    Evaluation,
    Job,
    ModelVersion,
    PolicyRow,
    Run,
    utcnow,
)
from modelreg.db.pagination import Page, decode_token, encode_token
from modelreg.db.session import Database
from modelreg.errors import NotFound, ValidationFailed
from modelreg.evaluation import datasets

PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "pending",
    "running",
    "succeeded",
    "failed",
    "cancelled",
)
STATES = (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED)
ACTIVE = JOB_ACTIVE_STATES
# The columns of a job that bulk scheduling writes from a SELECT (the rest default).
_INSERTED_COLUMNS = [
    "kind",
    "run_id",
    "dataset_revision_id",
    "state",
    "trigger",
    "actor",
    "attempts",
    "max_attempts",
    "available_at",
    "created_at",
]


@dataclass(frozen=True)
class Claim:
    """A job a worker holds: ``token`` proves it still does."""

    job_id: int
    token: str
    run_id: int
    dataset_revision_id: int
    attempt: int


def _scored_or_queued(run_id: Any, revision_id: Any, states: Sequence[str]) -> ColumnElement[bool]:
    """SQL: the run has verified values on the revision, or a job in one of ``states``."""
    verified = exists().where(
        Evaluation.run_id == run_id,
        Evaluation.dataset_revision_id == revision_id,
        Evaluation.source == "verified",
    )
    queued = exists().where(
        Job.run_id == run_id,
        Job.dataset_revision_id == revision_id,
        Job.state.in_(list(states)),
    )
    return or_(verified, queued)


# Automatic scheduling never repeats a failed job: a model that hangs or crashes
# would be run again on every policy change. A request (``request_evaluation``)
# retries explicitly.
_AUTO_SKIP = (PENDING, RUNNING, SUCCEEDED, FAILED)


def schedule_for_run(
    session: Session, run: Run, *, trigger: str, actor: str, max_attempts: int
) -> list[Job]:
    """Jobs for a new run: one per content-bearing dataset revision its model's policies name."""
    revision_ids = session.scalars(
        select(PolicyRow.dataset_revision_id)
        .join(DatasetRevision, PolicyRow.dataset_revision_id == DatasetRevision.id)
        .where(
            PolicyRow.model_id == run.model_version.model_id,
            DatasetRevision.has_content.is_(True),
        )
        .distinct()
        .order_by(PolicyRow.dataset_revision_id)
    ).all()
    jobs = []
    for revision_id in revision_ids:
        if session.scalar(select(_scored_or_queued(run.id, revision_id, _AUTO_SKIP))):
            continue
        job = Job(
            run_id=run.id,
            dataset_revision_id=revision_id,
            trigger=trigger,
            actor=actor,
            max_attempts=max_attempts,
        )
        session.add(job)
        jobs.append(job)
    session.flush()
    return jobs


def schedule_for_revision(
    session: Session,
    model_id: int,
    revision: DatasetRevision,
    *,
    trigger: str,
    actor: str,
    max_attempts: int,
) -> int:
    """Jobs for every run of a model not yet scored on (or queued for) ``revision``.

    One ``INSERT … SELECT``, whatever the number of runs. Returns how many.
    """
    if not revision.has_content:
        return 0
    now = utcnow()
    candidates = (
        select(
            literal("evaluate"),
            Run.id,
            literal(revision.id),
            literal(PENDING),
            literal(trigger),
            literal(actor),
            literal(0),
            literal(max_attempts),
            literal(now),
            literal(now),
        )
        .join(ModelVersion, Run.version_id == ModelVersion.id)
        .where(
            ModelVersion.model_id == model_id,
            ~_scored_or_queued(Run.id, revision.id, _AUTO_SKIP),
        )
        .order_by(Run.id)
    )
    result = session.execute(
        insert(Job).from_select(
            _INSERTED_COLUMNS,
            candidates,
        )
    )
    return int(cast(CursorResult[Any], result).rowcount or 0)


def request_evaluation(
    session: Session, run: Run, dataset: str, *, actor: str, max_attempts: int
) -> tuple[Job, bool]:
    """Evaluate ``run`` on a dataset revision on request. Returns ``(job, created)``.

    A job already pending or running for the pair is returned as it is; so is the
    job that already scored it. A failed one is tried anew.
    """
    revision = datasets.resolve(session, dataset)
    if not revision.has_content:
        raise ValidationFailed.field(
            "dataset",
            f"{revision.label} was registered by digest only; upload its content "
            "(POST /datasets as multipart) to evaluate on it",
        )
    existing = session.scalar(
        select(Job)
        .where(
            Job.run_id == run.id,
            Job.dataset_revision_id == revision.id,
            Job.state.in_([PENDING, RUNNING, SUCCEEDED]),
        )
        .order_by(Job.id.desc())
        .limit(1)
    )
    if existing is not None:
        return existing, False
    job = Job(
        run_id=run.id,
        dataset_revision=revision,
        trigger="request",
        actor=actor,
        max_attempts=max_attempts,
    )
    session.add(job)
    session.flush()
    return job, True


def evaluate_on_request(
    session: Session, run_id: int, dataset: str, *, caller: Caller, max_attempts: int
) -> tuple[Job, bool]:
    """``POST /runs/{id}/evaluate``: serialized per model, so a pair gets one job.

    Audited also when it returns an existing job (``created: false``).
    """
    from modelreg.evaluation.services import get_run, target
    from modelreg.registry.services import lock_model

    lock_model(session, get_run(session, run_id).model_version.model)
    run = get_run(session, run_id)  # removed while we waited: 404
    job, created = request_evaluation(
        session, run, dataset, actor=caller.name, max_attempts=max_attempts
    )
    if created:  # the champions now wait for it (``pending_evaluations``)
        champions.recompute(
            session,
            run.model_version.model,
            trigger="evaluation_requested",
            detail=f"run {run.id} to be scored (job {job.id})",
            actor=caller.name,
            changed_run=run.id,
        )
    label = job.dataset_revision.label
    audit.record(
        session,
        caller,
        "evaluation.request",
        target(run.id, label),
        before=None,
        after={
            "run_id": run.id,
            "dataset": label,
            "job_id": job.id,
            "state": job.state,
            "created": created,
        },
    )
    session.commit()
    return job, created


@dataclass(frozen=True)
class ModelEvaluation:
    """What ``POST /models/{model}/evaluate`` did: jobs queued, and runs already scored.

    ``already_scored`` counts runs verified on the revision or with a job pending,
    running or succeeded there; ``pending_job_ids`` are the pending and running ones.
    """

    model: str
    dataset: str
    versions: str
    job_ids: list[int]
    already_scored: int
    pending_job_ids: list[int]

    @property
    def jobs(self) -> int:
        return len(self.job_ids)


def evaluate_model(
    session: Session,
    model: str,
    dataset: str,
    versions: str | None,
    *,
    caller: Caller,
    max_attempts: int,
) -> ModelEvaluation:
    """Score every run of ``model`` (of the versions in ``versions``) on a revision.

    For a new test set revision: each run not yet scored on it (nor queued) gets a
    job; a run whose job failed gets a new one, as on request for one run. Serialized
    per model, so two requests never queue the same pair twice. Audited.
    """
    from modelreg.policies.versions import InvalidVersionError, in_tolerance, parse_specifier
    from modelreg.registry.services import get_model

    mdl = get_model(session, model, lock=True)
    revision = datasets.resolve(session, dataset, missing_is_404=True)
    if not revision.has_content:
        raise ValidationFailed.field(
            "dataset",
            f"{revision.label} was registered by digest only; upload its content "
            "(POST /datasets as multipart) to evaluate on it",
        )
    spec_text = (versions or "").strip()
    try:
        spec = parse_specifier(spec_text)
    except InvalidVersionError as exc:
        raise ValidationFailed.field("versions", str(exc)) from None
    # Pre-releases are scored too: a policy may allow them, and scoring harms nothing.
    version_ids = [
        v.id for v in mdl.versions if in_tolerance(spec, v.version, allow_prereleases=True)
    ]
    runs_of = select(Run.id).where(Run.version_id.in_(version_ids))
    done = _scored_or_queued(Run.id, revision.id, (PENDING, RUNNING, SUCCEEDED))
    already = int(
        session.scalar(select(func.count()).select_from(runs_of.where(done).subquery())) or 0
    )
    pending = list(
        session.scalars(
            select(Job.id)
            .where(
                Job.run_id.in_(runs_of),
                Job.dataset_revision_id == revision.id,
                Job.state.in_(list(ACTIVE)),
            )
            .order_by(Job.id)
        )
    )
    now = utcnow()
    queued = list(
        session.scalars(
            insert(Job)
            .from_select(
                _INSERTED_COLUMNS,
                select(
                    literal("evaluate"),
                    Run.id,
                    literal(revision.id),
                    literal(PENDING),
                    literal("request"),
                    literal(caller.name),
                    literal(0),
                    literal(max_attempts),
                    literal(now),
                    literal(now),
                )
                .where(Run.version_id.in_(version_ids), ~done)
                .order_by(Run.id),
            )
            .returning(Job.id)
        )
    )
    if queued:  # the champions now wait for them (``pending_evaluations``)
        champions.recompute(
            session,
            mdl,
            trigger="evaluation_requested",
            detail=f"{len(queued)} run(s) to be scored on {revision.label}",
            actor=caller.name,
        )
    result = ModelEvaluation(mdl.name, revision.label, str(spec), queued, already, pending)
    audit.record(
        session,
        caller,
        "evaluation.request",
        f"models/{mdl.name}/evaluations/{revision.label}",
        before=None,
        after={
            "model": mdl.name,
            "dataset": revision.label,
            "versions": result.versions,
            "jobs": result.jobs,
            "already_scored": already,
        },
    )
    session.commit()
    return result


def cancel_for_run(session: Session, run_id: int, reason: str) -> None:
    """Jobs of a removed run will never run; a running one is stopped at its next renewal."""
    session.execute(
        update(Job)
        .where(Job.run_id == run_id, Job.state.in_(ACTIVE))
        .values(state=CANCELLED, error=reason, finished_at=utcnow(), claim_token=None)
    )


def settle_failure(session: Session, job: Job) -> list[champions.Outcome]:
    """A job has just failed: recompute the champions of its run's model.

    A run whose evaluation failed is excluded (``evaluation_failed``), so a failure
    can move a champion like a verified value can. The caller holds the model's
    lock (``registry.lock_model``), taken before the job's row lock.
    """
    run = session.get(Run, job.run_id)
    if run is None:
        return []
    label = job.dataset_revision.label
    return champions.recompute(
        session,
        run.model_version.model,
        trigger="evaluation_failed",
        detail=f"run {run.id} on {label}: job {job.id} failed",
        actor=job.actor or "worker",
        changed_run=run.id,
    )


def _abandon(db: Database, job_id: int, run_id: int, now: Any) -> None:
    """Fail a job that has used up its attempts, and move the champions it excludes.

    The model is locked before the job, in the order every other writer takes them.
    """
    from modelreg.registry.services import lock_model

    with db.unit_of_work() as session:
        run = session.get(Run, run_id)
        if run is not None:
            lock_model(session, run.model_version.model)
        job = session.scalar(
            select(Job).where(Job.id == job_id, _claimable(now)).with_for_update(skip_locked=True)
        )
        if job is None or job.attempts < job.max_attempts:
            return  # taken or changed meanwhile: the next claim looks again
        job.state = FAILED
        job.error = (
            f"abandoned after {job.attempts} attempt(s): the worker holding it "
            f"({job.worker}) stopped renewing its lease"
        )
        job.finished_at = now
        job.claim_token = None
        settle_failure(session, job)
        session.commit()


def _claimable(now: Any) -> ColumnElement[bool]:
    """Pending and due, or running with a lease that ran out (its worker died)."""
    return or_(
        and_(Job.state == PENDING, Job.available_at <= now),
        and_(Job.state == RUNNING, Job.lease_expires_at < now),
    )


def claim(db: Database, worker: str, lease_seconds: int) -> Claim | None:
    """Take the oldest claimable job, or ``None``.

    A job that has used up its attempts fails instead of being taken. An idle
    worker's poll is one read on the reading engine: no write lock (SQLite) and
    no row locks (PostgreSQL) while there is nothing to do.
    """
    with db.unit_of_work(write=False) as session:
        if session.scalar(select(Job.id).where(_claimable(utcnow())).limit(1)) is None:
            return None
    while True:
        abandoned: tuple[int, int] | None = None
        with db.unit_of_work() as session:
            now = utcnow()
            job = session.scalar(
                select(Job)
                .where(_claimable(now))
                .order_by(Job.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if job is None:
                return None
            if job.attempts >= job.max_attempts:
                abandoned = (job.id, job.run_id)
                session.rollback()
            else:
                job.state = RUNNING
                job.attempts += 1
                job.claim_token = uuid.uuid4().hex
                job.worker = worker[:255]
                job.started_at = now
                job.lease_expires_at = now + timedelta(seconds=lease_seconds)
                claimed = Claim(
                    job.id, job.claim_token, job.run_id, job.dataset_revision_id, job.attempts
                )
                session.commit()
                return claimed
        if abandoned is not None:
            _abandon(db, *abandoned, now)


def renew(db: Database, claimed: Claim, lease_seconds: int) -> bool:
    """Extend the lease; ``False`` when the job is no longer ours (taken over or cancelled)."""
    with db.unit_of_work() as session:
        result = session.execute(
            update(Job)
            .where(Job.id == claimed.job_id, Job.claim_token == claimed.token)
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        )
        session.commit()
        return bool(cast(CursorResult[Any], result).rowcount)


def held(session: Session, claimed: Claim) -> Job | None:
    """The job, locked, if this claim still holds it; ``None`` otherwise."""
    job = session.scalar(select(Job).where(Job.id == claimed.job_id).with_for_update())
    if job is None or job.state != RUNNING or job.claim_token != claimed.token:
        return None
    return job


def get_job(session: Session, job_id: int) -> Job:
    job = session.scalar(
        select(Job)
        .where(Job.id == job_id)
        .options(selectinload(Job.dataset_revision).selectinload(DatasetRevision.dataset))
    )
    if job is None:
        raise NotFound(f"job {job_id} not found", {"job_id": job_id})
    return job


def active_of_run(session: Session, run_id: int) -> list[Job]:
    return list(
        session.scalars(
            select(Job).where(Job.run_id == run_id, Job.state.in_(ACTIVE)).order_by(Job.id)
        )
    )


def list_jobs(
    session: Session,
    *,
    state: str | None,
    run_id: int | None,
    page_token: str | None,
    page_size: int,
) -> Page[Job]:
    """Jobs, newest first, paged by id so new jobs never shift a page."""
    before = decode_token(page_token, "k")
    query = select(Job).options(
        selectinload(Job.dataset_revision).selectinload(DatasetRevision.dataset)
    )
    if state is not None:
        query = query.where(Job.state == state)
    if run_id is not None:
        query = query.where(Job.run_id == run_id)
    if before is not None:
        query = query.where(Job.id < before)
    rows = list(session.scalars(query.order_by(Job.id.desc()).limit(page_size + 1)))
    more = len(rows) > page_size
    rows = rows[:page_size]
    return Page(rows, encode_token(k=rows[-1].id) if more else None)
