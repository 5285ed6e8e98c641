"""A test set registered with its content: validated, stored, attached, and scored.

Uploading the content of a revision that policies already name schedules the
evaluations of their runs on it, in the same transaction as the registration.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelreg.changes.unit import Change, lock_model, record_repair
from modelreg.db.models import Dataset, DatasetRevision, PolicyRow, RegisteredModel
from modelreg.db.session import Database
from modelreg.errors import AlreadyExists, Unavailable, ValidationFailed
from modelreg.evaluation import content as dataset_content
from modelreg.evaluation import datasets
from modelreg.evaluation import queue as jobs
from modelreg.names import check_name, name_key
from modelreg.roles import Caller
from modelreg.storage import blobs
from modelreg.storage.artifacts import ArtifactStore, IncomingFile


@dataclass(frozen=True)
class ContentInput:
    """What a content upload says about its file."""

    name: str
    target: str
    task: str
    description: str = ""


def upload_revision(
    db: Database,
    store: ArtifactStore,
    upload: IncomingFile,
    meta: ContentInput,
    *,
    max_rows: int,
    max_columns: int,
    max_bytes: int | None = None,
    caller: Caller,
    job_attempts: int = 3,
) -> tuple[int, bool]:
    """Register a revision with its content. Returns ``(revision number, created)``.

    The same bytes again return their revision (a 409 when they were uploaded with
    another target or task); bytes registered by digest alone gain their content.
    The file is validated before it is moved into the store, and the row is written
    after; a blob stored for a row that could not be written is removed again
    unless something else references it.
    """
    check_name("name", meta.name)
    if meta.task not in dataset_content.TASKS:
        raise ValidationFailed.field("task", f"must be one of {', '.join(dataset_content.TASKS)}")
    upload.flush()
    digest = upload.sha256
    with db.unit_of_work(write=False) as session:
        # Content is immutable once attached: the same bytes need no second look.
        known = _revision_by_digest(session, meta.name, digest)
        if known is not None and known.has_content:
            _check_same_use(known, meta)
            known_id = known.id
        else:
            known_id = None
    if known_id is not None:
        # The stored copy is checked against the upload, and replaced when it was
        # changed on disk or quarantined: uploading the content again repairs it.
        known_blob = store.commit(upload)
        with db.unit_of_work() as session, Change(session, caller, "dataset.register") as change:
            found = session.get(DatasetRevision, known_id)
            if found is not None:  # revisions are never removed; this is for mypy
                doc = datasets.revision_document(found)
                record_repair(change, known_blob)
                datasets.audit_registration(change, found, before=doc, created=False)
                return found.revision, False
            change.discard()
    info = dataset_content.inspect(
        upload.path,
        meta.target,
        meta.task,
        max_rows=max_rows,
        max_columns=max_columns,
        max_bytes=max_bytes,
    )
    blob = store.commit(upload)
    try:
        with db.unit_of_work() as session, Change(session, caller, "dataset.register") as change:
            ds = datasets.locked_dataset(session, meta.name)
            blobs.lock_artifact(session, blob.sha256)
            record_repair(change, blob)
            if not store.exists(blob.sha256):
                # Identical bytes were stored before us and their last user was removed
                # (with the blob) while this upload was on its way. Nothing is kept.
                raise Unavailable(
                    "the stored copy of this content was removed concurrently; upload again",
                    {"sha256": blob.sha256},
                )
            rev = session.scalar(
                select(DatasetRevision).where(
                    DatasetRevision.dataset_id == ds.id, DatasetRevision.sha256 == blob.sha256
                )
            )
            created = rev is None
            old = datasets.revision_document(rev) if rev is not None else None
            if rev is None:
                latest = session.scalar(
                    select(func.max(DatasetRevision.revision)).where(
                        DatasetRevision.dataset_id == ds.id
                    )
                )
                rev = DatasetRevision(
                    dataset=ds,
                    revision=(latest or 0) + 1,
                    sha256=blob.sha256,
                    description=meta.description,
                )
                session.add(rev)
            elif rev.has_content:
                _check_same_use(rev, meta)  # a concurrent upload of the same bytes won
            elif meta.description and not rev.description:
                rev.description = meta.description
            attached = not created and not rev.has_content
            if not rev.has_content:
                rev.has_content = True
                rev.target = meta.target
                rev.task = meta.task
                rev.content_format = info.format
                rev.size = blob.size
                rev.row_count = info.row_count
                rev.columns = info.columns
            session.flush()
            scheduled = 0
            if attached:
                scheduled = _schedule_named(
                    session, rev, actor=caller.name, job_attempts=job_attempts
                )
            change.record(
                target=f"datasets/{rev.label}",
                before=old,
                after={
                    **datasets.revision_document(rev),
                    "created": created,
                    "evaluations_scheduled": scheduled,
                },
            )
            return rev.revision, created
    except BaseException:
        if blob.created:
            blobs.forget_if_unused(db, store, blob.sha256)
        raise


def _revision_by_digest(session: Session, name: str, digest: str) -> DatasetRevision | None:
    return session.scalar(
        select(DatasetRevision)
        .join(Dataset)
        .where(Dataset.name_key == name_key(name), DatasetRevision.sha256 == digest)
    )


def _check_same_use(rev: DatasetRevision, meta: ContentInput) -> None:
    """Identical bytes are one revision: they cannot come back with another target or task."""
    if (rev.target, rev.task) != (meta.target, meta.task):
        raise AlreadyExists(
            f"dataset revision {rev.label} holds this content with target {rev.target!r} "
            f"({rev.task}); it cannot be registered again with target {meta.target!r} "
            f"({meta.task})",
            {
                "revision": rev.label,
                "target": rev.target,
                "task": rev.task,
                "sha256": rev.sha256,
            },
        )


def _schedule_named(
    session: Session, revision: DatasetRevision, *, actor: str, job_attempts: int
) -> int:
    """Content arrived for a revision that policies may already name: score their runs.

    Each model's lock keeps a run registered meanwhile from slipping between its own
    trigger (which saw no content yet) and this one.
    """
    naming = select(PolicyRow.model_id).where(PolicyRow.dataset_revision_id == revision.id)
    models = session.scalars(
        select(RegisteredModel).where(RegisteredModel.id.in_(naming)).order_by(RegisteredModel.id)
    ).all()
    scheduled = 0
    for model in models:
        lock_model(session, model)
        scheduled += jobs.schedule_for_revision(
            session,
            model.id,
            revision,
            trigger="dataset_content",
            actor=actor,
            max_attempts=job_attempts,
        )
    return scheduled
