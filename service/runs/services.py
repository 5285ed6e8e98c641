"""Runs: trained instances of a version, each with a complete artifact.

A run row is written only after its artifact is complete and in place; if the
row cannot be written, an artifact that this request stored and that nothing
references (no run, no dataset revision's content) is removed again, so a failed
upload leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelreg.access import quotas
from modelreg.changes import audit, champions
from modelreg.changes.unit import Change, record_repair
from modelreg.db.models import ModelVersion, Run
from modelreg.db.pagination import Page, decode_token, encode_token
from modelreg.db.session import Database
from modelreg.errors import Conflict, Unavailable
from modelreg.evaluation import datasets
from modelreg.evaluation import queue as jobs
from modelreg.evaluation import services as evaluations
from modelreg.registry.services import get_version, version_target
from modelreg.roles import Caller
from modelreg.storage import blobs
from modelreg.storage.artifacts import ArtifactStore, IncomingFile

_FORMATS = {
    ".joblib": "joblib",
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".skops": "skops",
    ".onnx": "onnx",
    ".pt": "torch",
    ".safetensors": "safetensors",
}


@dataclass(frozen=True)
class RunInput:
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    expected_sha256: str | None = None
    format: str | None = None
    evaluations: Sequence[Mapping[str, Any]] = ()


def artifact_format(filename: str, declared: str | None) -> str:
    """The declared format, else one guessed from the file name's extension.

    >>> artifact_format("model.joblib", None), artifact_format("m.bin", None)
    ('joblib', 'binary')
    >>> artifact_format("../../etc/passwd", "onnx")
    'onnx'
    """
    if declared:
        return declared
    return _FORMATS.get(PurePath(filename).suffix.lower(), "binary")


def safe_filename(filename: str | None) -> str:
    """The client's file name, kept as metadata only: its last component, printable.

    >>> safe_filename("../../etc/passwd"), safe_filename("C:\\\\x\\\\m.pkl"), safe_filename(None)
    ('passwd', 'm.pkl', '')
    >>> safe_filename(".."), safe_filename("x/."), safe_filename("\\u202egpj.exe")
    ('', '', 'gpj.exe')
    """
    if not filename:
        return ""
    last = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in last if ch.isprintable())[:255]
    return "" if name in (".", "..") else name


def create_run(
    db: Database,
    store: ArtifactStore,
    model: str,
    version: str,
    upload: IncomingFile,
    filename: str | None,
    meta: RunInput,
    *,
    caller: Caller,
    job_attempts: int = 3,
    limits: UsageLimits | None = None,
) -> Run:
    """Store the artifact, then the run with its reported evaluations, in one transaction.

    The same transaction schedules the server-side evaluations of the run on every
    dataset revision (with content) that a policy of its model names.
    """
    # Fail fast on a wrong path, dataset or usage before the artifact is moved into place.
    with db.unit_of_work(write=False) as session:
        get_version(session, model, version)
        for i, ev in enumerate(meta.evaluations):
            datasets.resolve(session, ev["dataset"], f"evaluations.{i}.dataset")
        _check_usage(session, caller, limits, upload.size)

    blob = store.commit(upload, meta.expected_sha256)
    try:
        with db.unit_of_work() as session, Change(session, caller, "run.create") as change:
            quotas.lock_token(session, caller.name)
            _check_usage(session, caller, limits, blob.size)
            mv = get_version(session, model, version, lock_for_champions=True)
            blobs.lock_artifact(session, blob.sha256)
            if not store.exists(blob.sha256):
                # Identical content was stored before us and its last run was removed
                # (with the blob) while this upload was on its way. Nothing is kept.
                raise Unavailable(
                    "the stored copy of this artifact was removed concurrently; upload again",
                    {"sha256": blob.sha256},
                )
            run = _insert(session, mv, blob.sha256, blob.size, filename, meta, caller.name)
            record_repair(change, blob)
            for i, ev in enumerate(meta.evaluations):
                evaluations.add(
                    session, run, ev["dataset"], ev["metrics"], field=f"evaluations.{i}.dataset"
                )
            scheduled = jobs.schedule_for_run(
                session,
                run,
                trigger="run_registered",
                actor=caller.name,
                max_attempts=job_attempts,
            )
            # Its values can move a champion; its jobs make champions wait for them.
            if meta.evaluations or scheduled:
                change.recompute(
                    mv.model,
                    trigger="evaluation",
                    detail=f"run {run.id} registered",
                    changed_run=run.id,
                )
            change.record(
                target=run_target(run),
                before=None,
                after={
                    **run_document(run),
                    "evaluations": [
                        {"dataset": ev["dataset"], "metrics": dict(ev["metrics"])}
                        for ev in meta.evaluations
                    ],
                    "jobs": [job.id for job in scheduled],
                    "champions": audit.champion_moves(change.outcomes),
                },
            )
            return run
    except BaseException:
        if blob.created:
            blobs.forget_if_unused(db, store, blob.sha256)
        raise


@dataclass(frozen=True)
class UsageLimits:
    """``max_pending_jobs_per_token`` and ``max_stored_bytes_per_token`` (0: none)."""

    pending_jobs: int = 0
    stored_bytes: int = 0


def check_usage_before_upload(db: Database, caller: Caller, limits: UsageLimits) -> None:
    """Refuse (429) a registration by a token already at a limit, before its body is read
    (in a read of its own: the request's read session must not predate the run)."""
    if limits.pending_jobs <= 0 and limits.stored_bytes <= 0:
        return
    with db.unit_of_work(write=False) as session:
        quotas.check_pending_jobs(session, caller.name, limits.pending_jobs)
        quotas.check_stored_bytes(session, caller.name, limits.stored_bytes, 1)


def _check_usage(session: Session, caller: Caller, limits: UsageLimits | None, size: int) -> None:
    if limits is not None:
        quotas.check_pending_jobs(session, caller.name, limits.pending_jobs)
        quotas.check_stored_bytes(session, caller.name, limits.stored_bytes, size)


def run_target(run: Run) -> str:
    return f"runs/{run.id}"


def run_document(run: Run) -> dict[str, Any]:
    """A run as the audit trail keeps it."""
    return {
        "id": run.id,
        "model": run.model_version.model.name,
        "version": run.model_version.version,
        "number": run.number,
        "artifact": {
            "sha256": run.artifact_sha256,
            "size": run.artifact_size,
            "format": run.artifact_format,
        },
    }


def _insert(
    session: Session,
    mv: ModelVersion,
    sha256: str,
    size: int,
    filename: str | None,
    meta: RunInput,
    registered_by: str,
) -> Run:
    number = mv.next_run_number
    mv.next_run_number = number + 1
    name = safe_filename(filename)
    run = Run(
        model_version=mv,
        number=number,
        artifact_sha256=sha256,
        artifact_size=size,
        artifact_format=artifact_format(name, meta.format),
        artifact_filename=name,
        params=meta.params,
        tags=meta.tags,
        source=meta.source,
        registered_by=registered_by,
    )
    session.add(run)
    session.flush()
    return run


def delete_run(
    db: Database,
    store: ArtifactStore,
    run_id: int,
    *,
    reason: str,
    force: bool,
    caller: Caller,
) -> list[champions.Outcome]:
    """Remove a run, its evaluations and any pin on it; move the champions it held.

    Refused with ``would_leave_no_model`` when an environment would be left
    without a champion, unless ``force``. The artifact is deleted when no other
    run, and no dataset revision's content, shares its bytes.
    """
    with (
        db.unit_of_work() as session,
        Change(session, caller, "run.delete", f"runs/{run_id}", reason=reason) as change,
    ):
        run = get_run(session, run_id)
        model = run.model_version.model
        change.lock(model)
        run = get_run(session, run_id)
        sha256 = run.artifact_sha256
        removed = run_document(run)
        outcomes = change.recompute(
            model,
            trigger="run_removed",
            detail=f"run {run_id} removed" + (f" ({reason})" if reason else ""),
            force=force,
            removing=run_id,
        )
        jobs.cancel_for_run(session, run_id, "run removed")
        session.delete(run)
        change.record(before=removed, after={})
    blobs.forget_if_unused(db, store, sha256)
    return outcomes


@dataclass(frozen=True)
class VersionRemoval:
    """What removing a version did: the runs removed with it, the champions moved."""

    model: str
    version: str
    run_ids: list[int]
    champions: list[champions.Outcome]


def delete_version(
    db: Database,
    store: ArtifactStore,
    model: str,
    version: str,
    *,
    reason: str,
    force: bool,
    caller: Caller,
) -> VersionRemoval:
    """Remove a version. One with runs is refused (``conflict``) unless ``force``,
    which removes its runs too, as :func:`delete_run` with ``force`` removes each: the
    champions they held move to their successors (or to none), pins on them go, their
    jobs are cancelled, and artifacts no other run or dataset shares are deleted.
    """
    with (
        db.unit_of_work() as session,
        Change(session, caller, "version.delete", reason=reason) as change,
    ):
        mv = get_version(session, model, version, lock_for_champions=True)
        rows = list(session.scalars(select(Run).where(Run.version_id == mv.id).order_by(Run.id)))
        ids = [r.id for r in rows]
        shas = sorted({r.artifact_sha256 for r in rows})
        if rows and not force:
            raise Conflict(
                f"{mv.model.name} {mv.version} has {len(rows)} run(s); send force: true to "
                "remove them with it (the champions they hold move)",
                {"model": mv.model.name, "version": mv.version, "runs": ids},
            )
        before = {
            "model": mv.model.name,
            "version": mv.version,
            "stage": mv.stage,
            "runs": [run_document(r) for r in rows],
        }
        target = version_target(mv)
        names = (mv.model.name, mv.version)
        outcomes: list[champions.Outcome] = []
        if rows:
            outcomes = change.recompute(
                mv.model,
                trigger="version_removed",
                detail=f"version {mv.version} removed with its runs"
                + (f" ({reason})" if reason else ""),
                removing=ids,
            )
        for run in rows:
            jobs.cancel_for_run(session, run.id, "version removed")
            session.delete(run)
        session.delete(mv)
        # Recorded with the champions it moved (none when the version had no runs).
        change.record(
            target=target, before=before, after={"champions": audit.champion_moves(outcomes)}
        )
    for sha256 in shas:
        blobs.forget_if_unused(db, store, sha256)
    return VersionRemoval(*names, ids, outcomes)


def get_run(session: Session, run_id: int) -> Run:
    return evaluations.get_run(session, run_id)


def list_runs(
    session: Session, model: str, version: str, page_token: str | None, page_size: int
) -> Page[Run]:
    """Runs of a version by number, paged by number: a page costs the same at any depth."""
    mv = get_version(session, model, version)
    after = decode_token(page_token, "k") or 0
    rows = list(
        session.scalars(
            select(Run)
            .where(Run.version_id == mv.id, Run.number > after)
            .order_by(Run.number)
            .limit(page_size + 1)
        )
    )
    more = len(rows) > page_size
    rows = rows[:page_size]
    return Page(rows, encode_token(k=rows[-1].number) if more else None)
