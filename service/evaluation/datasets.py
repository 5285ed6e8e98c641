"""External test sets: named datasets with numbered, immutable revisions.

A revision is registered by the digest of its content alone (it then serves
reported metrics), or with the content itself: a CSV file validated by
``modelreg.evaluation.content`` and kept in the artifact store under its sha256, so
that the service can evaluate runs on it.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from modelreg.changes.unit import Change
from modelreg.db.models import Dataset, DatasetRevision
from modelreg.db.pagination import Page, offset_page
from modelreg.errors import NotFound, ValidationFailed
from modelreg.names import check_name, name_key
from modelreg.roles import Caller
from modelreg.storage.artifacts import SHA256_RE

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


def audit_registration(
    change: Change, rev: DatasetRevision, *, before: dict[str, Any] | None, created: bool
) -> None:
    change.record(
        target=f"datasets/{rev.label}",
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
    with Change(session, caller, "dataset.register") as change:
        ds = locked_dataset(session, name)
        existing = session.scalar(
            select(DatasetRevision).where(
                DatasetRevision.dataset_id == ds.id, DatasetRevision.sha256 == digest
            )
        )
        if existing is not None:
            audit_registration(change, existing, before=revision_document(existing), created=False)
            return existing, False
        latest = session.scalar(
            select(func.max(DatasetRevision.revision)).where(DatasetRevision.dataset_id == ds.id)
        )
        rev = DatasetRevision(
            dataset=ds, revision=(latest or 0) + 1, sha256=digest, description=description
        )
        session.add(rev)
        session.flush()  # the dataset row's lock makes this revision number ours
        audit_registration(change, rev, before=None, created=True)
    return rev, True


def locked_dataset(session: Session, name: str) -> Dataset:
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
