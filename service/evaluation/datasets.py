"""External test sets: named datasets with numbered, immutable revisions.

A revision is registered by the digest of its content alone (it then serves
reported metrics), or with the content itself: a CSV file validated by
``modelreg.evaluation.content`` and kept in the artifact store under its sha256, so
that the service can evaluate runs on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from modelreg.access.roles import Caller
from modelreg.changes import audit
from modelreg.db.models import Dataset, DatasetRevision, PolicyRow, RegisteredModel
from modelreg.db.pagination import Page, offset_page
from modelreg.db.session import Database
from modelreg.errors import AlreadyExists, NotFound, Unavailable, ValidationFailed
from modelreg.evaluation import content as dataset_content
from modelreg.names import check_name, name_key
from modelreg.storage import blobs
from modelreg.storage.artifacts import SHA256_RE, ArtifactStore, IncomingFile

# At most 18 digits: every such revision fits a 64-bit column (SQLite cannot bind more).
_LABEL_RE = re.compile(r"^(?P<name>[^@]+?)(?:@(?P<rev>[0-9]{1,18}))?$")


def get_dataset(session: Session, name: str) -> Dataset:
    ds = session.scalar(
        select(Dataset)
        .where(Dataset.name_key == name_key(name))
        .options(selectinload(Dataset.revisions))
    )
    if ds is None:
        raise NotFound(f"dataset {name!r} not found", {"dataset": name})
    return ds


def get_revision(session: Session, name: str, revision: int) -> DatasetRevision:
    """One revision of a dataset (404 for an unknown dataset or revision)."""
    ds = session.scalar(select(Dataset).where(Dataset.name_key == name_key(name)))
    if ds is None:
        raise NotFound(f"dataset {name!r} not found", {"dataset": name})
    found = session.scalar(
        select(DatasetRevision).where(
            DatasetRevision.dataset_id == ds.id, DatasetRevision.revision == revision
        )
    )
    if found is None:
        raise NotFound(
            f"dataset {ds.name!r} has no revision {revision}",
            {"dataset": ds.name, "revision": revision},
        )
    return found


def get_content(session: Session, name: str, revision: int) -> DatasetRevision:
    """A revision whose content the store holds (404 when it was registered by digest)."""
    found = get_revision(session, name, revision)
    if not found.has_content:
        raise NotFound(
            f"dataset revision {found.label} was registered by its sha256 only; "
            "it has no content to download",
            {"dataset": found.dataset.name, "revision": revision, "has_content": False},
        )
    return found


def list_datasets(session: Session, page_token: str | None, page_size: int) -> Page[Dataset]:
    rows = session.scalars(
        select(Dataset).order_by(Dataset.name_key).options(selectinload(Dataset.revisions))
    ).all()
    return offset_page(rows, page_token, page_size)


def revision_document(rev: DatasetRevision) -> dict[str, Any]:
    """A revision as the audit trail keeps it."""
    return {
        "dataset": rev.dataset.name,
        "revision": rev.revision,
        "sha256": rev.sha256,
        "description": rev.description,
        "has_content": rev.has_content,
        "target": rev.target,
        "task": rev.task,
    }


def _audit_registration(
    session: Session,
    caller: Caller,
    rev: DatasetRevision,
    *,
    before: dict[str, Any] | None,
    created: bool,
) -> None:
    audit.record(
        session,
        caller,
        "dataset.register",
        f"datasets/{rev.label}",
        before=before,
        after={**revision_document(rev), "created": created},
    )


def register_revision(
    session: Session, name: str, sha256: str, description: str = "", *, caller: Caller
) -> tuple[DatasetRevision, bool]:
    """Register content by digest; the same digest again returns the existing revision.

    Returns ``(revision, created)``. Both outcomes are audited.
    """
    check_name("name", name)
    digest = sha256.strip().lower()
    if not SHA256_RE.match(digest):
        raise ValidationFailed.field("sha256", "must be 64 hexadecimal characters")
    ds = _locked_dataset(session, name)
    existing = session.scalar(
        select(DatasetRevision).where(
            DatasetRevision.dataset_id == ds.id, DatasetRevision.sha256 == digest
        )
    )
    if existing is not None:
        _audit_registration(
            session, caller, existing, before=revision_document(existing), created=False
        )
        session.commit()
        return existing, False
    latest = session.scalar(
        select(func.max(DatasetRevision.revision)).where(DatasetRevision.dataset_id == ds.id)
    )
    rev = DatasetRevision(
        dataset=ds, revision=(latest or 0) + 1, sha256=digest, description=description
    )
    session.add(rev)
    session.flush()  # the dataset row's lock makes this revision number ours
    _audit_registration(session, caller, rev, before=None, created=True)
    session.commit()
    return rev, True


def _locked_dataset(session: Session, name: str) -> Dataset:
    """The dataset row, created if needed, locked until the end of the transaction.

    Two first registrations of one name race to insert it; the loser's insert
    fails inside a savepoint and it locks the winner's row instead.
    """
    query = select(Dataset).where(Dataset.name_key == name_key(name)).with_for_update()
    ds = session.scalar(query)
    if ds is not None:
        return ds
    try:
        with session.begin_nested():
            ds = Dataset(name=name, name_key=name_key(name))
            session.add(ds)
    except IntegrityError:
        ds = session.scalar(query)
        if ds is None:  # pragma: no cover - the winner's row cannot vanish
            raise
    return ds


def resolve(
    session: Session, label: str, field: str = "dataset", *, missing_is_404: bool = False
) -> DatasetRevision:
    """``name@rev`` names one revision; a bare ``name`` means its latest revision.

    An unknown dataset or revision is a 422 naming ``field``: the label is part
    of the request body, not of the path. With ``missing_is_404`` it is a 404: for
    requests whose subject is the dataset itself (score a model on it).
    """
    try:
        return _resolve(session, label, field)
    except ValidationFailed as exc:
        if missing_is_404 and isinstance(label, str) and _LABEL_RE.match(label.strip()):
            raise NotFound(exc.message, {field: label}) from None
        raise


def _resolve(session: Session, label: str, field: str) -> DatasetRevision:
    match = _LABEL_RE.match(label.strip()) if isinstance(label, str) else None
    if match is None:
        raise ValidationFailed.field(field, f"expected 'name' or 'name@revision', got {label!r}")
    name, rev = match.group("name"), match.group("rev")
    ds = session.scalar(select(Dataset).where(Dataset.name_key == name_key(name)))
    if ds is None:
        raise ValidationFailed.field(field, f"dataset {name!r} is not registered")
    query = select(DatasetRevision).where(DatasetRevision.dataset_id == ds.id)
    if rev is None:
        query = query.order_by(DatasetRevision.revision.desc()).limit(1)
    else:
        query = query.where(DatasetRevision.revision == int(rev))
    found = session.scalar(query)
    if found is None:
        raise ValidationFailed.field(
            field,
            f"dataset {ds.name!r} has no revision {rev}" if rev else f"{ds.name!r} has no revision",
        )
    return found


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
        with db.unit_of_work() as session:
            found = session.get(DatasetRevision, known_id)
            if found is not None:  # revisions are never removed; this is for mypy
                doc = revision_document(found)
                blobs.record_repair(session, caller, known_blob)
                _audit_registration(session, caller, found, before=doc, created=False)
                number = found.revision
                session.commit()
                return number, False
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
        with db.unit_of_work() as session:
            ds = _locked_dataset(session, meta.name)
            blobs.lock_artifact(session, blob.sha256)
            blobs.record_repair(session, caller, blob)
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
            old = revision_document(rev) if rev is not None else None
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
            audit.record(
                session,
                caller,
                "dataset.register",
                f"datasets/{rev.label}",
                before=old,
                after={
                    **revision_document(rev),
                    "created": created,
                    "evaluations_scheduled": scheduled,
                },
            )
            number = rev.revision
            session.commit()
            return number, created
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
    from modelreg.evaluation import (
        queue as jobs,  # jobs resolves dataset labels through this module
    )
    from modelreg.registry.services import lock_model

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
