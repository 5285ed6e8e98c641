"""Blobs in the artifact store that rows share: run artifacts and dataset contents.

The store is content-addressed, so a run's artifact and a dataset revision's
content with identical bytes are one blob. A blob is removed only when no row of
either kind references it, and a new reference and a removal never interleave
(:func:`lock_artifact`).
"""

from __future__ import annotations

import contextlib

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from modelreg.access.roles import Caller
from modelreg.changes import audit
from modelreg.db.models import DatasetRevision, Run
from modelreg.db.session import Database
from modelreg.storage.artifacts import ArtifactStore, StoredBlob


def lock_artifact(session: Session, sha256: str) -> None:
    """Serialize, per digest, new references to a blob and the blob's deletion.

    A row that will reference a blob and the removal of an unreferenced blob
    must not interleave, or a row could end up pointing at nothing. PostgreSQL:
    a transaction-scoped advisory lock keyed by the digest. SQLite: write
    transactions (``BEGIN IMMEDIATE``) are already serialized.
    """
    if session.get_bind().dialect.name == "postgresql":
        key = int(sha256[:15], 16)  # 60 bits: fits PostgreSQL's bigint key
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def is_referenced(session: Session, sha256: str) -> bool:
    """Whether a run's artifact or a dataset revision's content is this blob."""
    by_run = select(Run.id).where(Run.artifact_sha256 == sha256).limit(1)
    if session.scalar(by_run) is not None:
        return True
    by_dataset = (
        select(DatasetRevision.id)
        .where(DatasetRevision.sha256 == sha256, DatasetRevision.has_content.is_(True))
        .limit(1)
    )
    return session.scalar(by_dataset) is not None


def forget_if_unused(db: Database, store: ArtifactStore, sha256: str) -> None:
    """Delete a blob nothing references; a failure here only leaves an orphan file."""
    with contextlib.suppress(Exception), db.unit_of_work() as session:
        lock_artifact(session, sha256)
        if not is_referenced(session, sha256):
            store.delete(sha256)
        session.commit()


def record_repair(session: Session, caller: Caller, blob: StoredBlob) -> None:
    """Audit an upload that put verified bytes back in place of a changed or
    quarantined copy (``artifact.repair``), in the registration's transaction."""
    if blob.repaired:
        audit.record(
            session,
            caller,
            "artifact.repair",
            f"blobs/{blob.sha256}",
            before=None,
            after={"sha256": blob.sha256, "size": blob.size},
        )
