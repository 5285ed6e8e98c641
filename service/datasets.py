"""External test sets: named datasets with numbered, immutable revisions."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from service.artifacts import SHA256_RE
from service.db.models import Dataset, DatasetRevision
from service.errors import NotFound, ValidationFailed
from service.names import check_name, name_key
from service.pagination import Page, offset_page

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


def list_datasets(session: Session, page_token: str | None, page_size: int) -> Page[Dataset]:
    rows = session.scalars(
        select(Dataset).order_by(Dataset.name_key).options(selectinload(Dataset.revisions))
    ).all()
    return offset_page(rows, page_token, page_size)


def register_revision(
    session: Session, name: str, sha256: str, description: str = ""
) -> tuple[DatasetRevision, bool]:
    """Register content by digest; the same digest again returns the existing revision.

    Returns ``(revision, created)``.
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
        return existing, False
    latest = session.scalar(
        select(func.max(DatasetRevision.revision)).where(DatasetRevision.dataset_id == ds.id)
    )
    rev = DatasetRevision(
        dataset=ds, revision=(latest or 0) + 1, sha256=digest, description=description
    )
    session.add(rev)
    session.flush()  # the dataset row's lock makes this revision number ours
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


def resolve(session: Session, label: str, field: str = "dataset") -> DatasetRevision:
    """``name@rev`` names one revision; a bare ``name`` means its latest revision.

    An unknown dataset or revision is a 422 naming ``field``: the label is part
    of the request body, not of the path.
    """
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
