"""One way to change the registry: lock, change, move champions, audit, commit.

Every state-changing service function runs inside a :class:`Change`::

    with Change(session, caller, "version.transition", version_target(mv)) as change:
        change.lock(mv.model)
        mv.stage = stage
        change.recompute(mv.model, trigger="transition", detail="1.0: None -> Staging")
        change.record(before={"stage": "None"}, after={"stage": stage})

Leaving the block normally commits once, with the audit row in the same
transaction as the change; an exception (a refusal, a conflict, a lost database)
rolls everything back, audit row included. The champions a change moved are
recorded with it (``after.champions``) by :meth:`Change.record`, so "every change
is audited with the champions it moved" holds in this one place.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelreg.changes import audit, champions
from modelreg.db.models import AuditEntry, RegisteredModel
from modelreg.roles import Caller
from modelreg.storage.artifacts import StoredBlob


def lock_model(session: Session, model: RegisteredModel) -> None:
    """Serialize every change that can move this model's champions.

    On PostgreSQL this is a row lock held to the end of the transaction; on
    SQLite the write transaction (``BEGIN IMMEDIATE``) already holds the lock.
    """
    session.execute(
        select(RegisteredModel.id).where(RegisteredModel.id == model.id).with_for_update()
    )
    # Rows loaded before the lock may have changed while we waited for it; the
    # identity map would keep serving the old values (a stale run counter would
    # hand out a number twice). Callers lock before they modify anything, so
    # expiring loses no pending change.
    session.expire_all()


class Change:
    """A unit of work: the change, the champions it moved and its audit row, or none of it."""

    def __init__(
        self, session: Session, caller: Caller, action: str, target: str = "", *, reason: str = ""
    ) -> None:
        self.session = session
        self.caller = caller
        self.action = action
        self.target = target
        self.reason = reason
        self.outcomes: list[champions.Outcome] = []
        self._recomputed = False
        self._recorded = False
        self._discarded = False

    def __enter__(self) -> Change:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.session.rollback()
            return
        if self._discarded:
            return  # uncommitted: the session's owner rolls it back when it closes
        if not self._recorded:
            self.session.rollback()
            raise RuntimeError(f"{self.action}: a change must be recorded before it commits")
        self.session.commit()

    def bookkeeping(self) -> None:
        """Commit without an audit row: only the service's own bookkeeping changed
        (a job's state), nothing a user registered and no champion."""
        if self._recomputed:
            raise RuntimeError(f"{self.action}: a change that recomputed champions is audited")
        self._recorded = True

    def discard(self) -> None:
        """Commit nothing (another process got there first, or a plan only shows what
        would happen); what the session holds stays readable until its owner closes it."""
        self._discarded = True

    def lock(self, model: RegisteredModel) -> None:
        lock_model(self.session, model)

    def recompute(
        self,
        model: RegisteredModel,
        *,
        trigger: str,
        detail: str = "",
        force: bool = True,
        environment_id: int | None = None,
        removing: champions.Removing = None,
        changed_run: int | None = None,
        actor: str | None = None,
    ) -> list[champions.Outcome]:
        """Recompute ``model``'s champions after the change so far (see ``champions.recompute``).

        ``actor`` names who the champions' history credits, when not the caller (a
        verified value is credited to whoever asked for the evaluation).
        """
        self.session.flush()
        outcomes = champions.recompute(
            self.session,
            model,
            trigger=trigger,
            detail=detail,
            actor=actor or self.caller.name,
            force=force,
            environment_id=environment_id,
            removing=removing,
            changed_run=changed_run,
        )
        self.outcomes.extend(outcomes)
        self._recomputed = True
        return outcomes

    def note(
        self,
        action: str,
        target: str,
        *,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
    ) -> AuditEntry:
        """A further audit row in this change's transaction, for something it did on
        the way (an upload that repaired a stored copy)."""
        return audit.record(self.session, self.caller, action, target, before=before, after=after)

    def record(
        self,
        *,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        target: str | None = None,
    ) -> AuditEntry:
        """Add the audit row; the champions recomputed so far go into ``after.champions``."""
        if self._recomputed and after is not None and "champions" not in after:
            after = {**after, "champions": audit.champion_moves(self.outcomes)}
        self._recorded = True
        return audit.record(
            self.session,
            self.caller,
            self.action,
            target or self.target,
            before=before,
            after=after,
            reason=self.reason,
        )


def record_repair(change: Change, blob: StoredBlob) -> None:
    """Audit an upload that put verified bytes back in place of a changed or
    quarantined copy (``artifact.repair``), in the registration's transaction."""
    if blob.repaired:
        change.note(
            "artifact.repair",
            f"blobs/{blob.sha256}",
            before=None,
            after={"sha256": blob.sha256, "size": blob.size},
        )
